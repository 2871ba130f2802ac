// fileio and block through io_uring (backstores/ring-io.ts) and, with
// TSIO_IO_URING=off, through the thread pool as before: the ring carries
// reads, writes, syncs and fallocate and batches a pass's operations into one
// io_uring_enter; its failures reach the store as fs-style errnos; the
// fallback is said once; the stores' own suites pass on the fallback path too
// (they run on the ring in their own files).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { createFileio } from '../backstores/fileio';
import { threadRing } from '../backstores/ring-io';
import { Ring, allocAligned } from '../native';

let dir: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-uring-'));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function ring() {
  const r = threadRing();
  assert.ok(r, 'io_uring must be usable on the project machines (kernel.io_uring_disabled = 0, Linux >= 5.18)');
  return r;
}

for (const direct of [false, true]) {
  test(`fileio ${direct ? 'O_DIRECT' : 'buffered'}: ${direct ? 'reads, ' : ''}writes, FUA, flush and UNMAP go through the ring${direct ? ', a pass\'s reads in one io_uring_enter' : ''}`, async () => {
    const r = ring();
    const store = await createFileio({ name: 'u', dev: path.join(dir, `d${direct}.img`), size: 8 << 20, direct, blockSize: 4096 });
    try {
      const ops0 = r.ops;
      const data = Buffer.alloc(64 << 10);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
      await store.write(0, data.length, [data.subarray(0, 4096), data.subarray(4096)], false);
      await store.write(1 << 20, 4096, [data.subarray(0, 4096)], true);
      await store.flush();
      assert.ok(r.ops >= ops0 + 3, `write, FUA write and flush are ring operations (${r.ops - ops0})`);

      const enters0 = r.enters;
      const opsBefore = r.ops;
      const bufs = Array.from({ length: 16 }, () => Buffer.alloc(4096));
      await Promise.all(bufs.map((b, i) => store.read(i * 4096, 4096, [b])));
      if (direct) {
        assert.equal(r.ops - opsBefore, 16);
        assert.equal(r.enters - enters0, 1, 'the reads asked for in one pass go to the kernel in one io_uring_enter');
      } else {
        // Buffered reads take the page cache on the loop (RWF_NOWAIT) and leave the ring alone.
        assert.equal(r.ops - opsBefore, 0);
      }
      assert.deepEqual(Buffer.concat(bufs), data);

      const ops1 = r.ops;
      await store.unmap(0, 16 << 10);
      assert.ok(r.ops > ops1, 'UNMAP punches the hole through the ring');
      const back = Buffer.alloc(32 << 10, 0xee);
      await store.read(0, back.length, [back]);
      assert.deepEqual(back.subarray(0, 16 << 10), Buffer.alloc(16 << 10));
      assert.deepEqual(back.subarray(16 << 10), data.subarray(16 << 10, 32 << 10));
    } finally {
      await store.close();
    }
  });
}

test('a failed ring operation rejects with the errno and syscall, as the pool would', async () => {
  const r = ring();
  const p = path.join(dir, 'wo.img');
  fs.writeFileSync(p, Buffer.alloc(4096));
  const fd = fs.openSync(p, 'w');
  try {
    await assert.rejects(r.readv(fd, [Buffer.alloc(4096)], 0), { code: 'EBADF', errno: -os.constants.errno.EBADF, syscall: 'preadv' });
    await assert.rejects(r.fallocate(fd, 0x7f, 0, 4096), (e: NodeJS.ErrnoException) => e.syscall === 'fallocate' && typeof e.code === 'string');
  } finally {
    fs.closeSync(fd);
  }
});

test('more operations than the ring holds queue up and all complete', async () => {
  const r = ring();
  const store = await createFileio({ name: 'q', dev: path.join(dir, 'q.img'), size: 8 << 20 });
  try {
    const ops0 = r.ops;
    const n = 1500; // more than the completion queue's 512
    const w = Array.from({ length: n }, (_, i) => Buffer.alloc(512, i & 0xff));
    await Promise.all(w.map((b, i) => store.write(i * 512, 512, [b], false)));
    const rd = Array.from({ length: n }, () => Buffer.alloc(512));
    await Promise.all(rd.map((b, i) => store.read(i * 512, 512, [b])));
    for (let i = 0; i < n; i++) assert.equal(rd[i][0], i & 0xff, `block ${i}`);
    assert.ok(r.ops - ops0 >= n, `${r.ops - ops0} ring operations for ${n} writes`);
  } finally {
    await store.close();
  }
});

test('a buffered read the page cache holds ends on the loop at once; a ring transfer settles from its completion', async () => {
  const r = ring();
  for (const direct of [false, true]) {
    const store = await createFileio({ name: 's', dev: path.join(dir, `s${direct}.img`), size: 1 << 20, direct, blockSize: 4096 });
    try {
      const data = Buffer.alloc(8192, direct ? 0x5d : 0x3c);
      await store.write(0, data.length, [data], false);
      const ops0 = r.ops;
      const b = Buffer.alloc(8192);
      const res = store.read(0, b.length, [b.subarray(0, 4096), b.subarray(4096)]);
      if (direct) {
        // Unaligned buffers (Buffer.alloc): bounced through an aligned one, copied back at completion.
        assert.ok(res instanceof Promise, 'an O_DIRECT read waits for the ring');
        assert.notDeepEqual(b, data, 'nothing is copied before the completion');
        await res;
        assert.equal(r.ops - ops0, 1, 'one ring operation for the command');
      } else {
        assert.equal(res, undefined, 'no promise, no microtask: the command can complete in the same call');
        assert.equal(r.ops, ops0);
      }
      assert.deepEqual(b, data);
      // A failure still rejects rather than throws, as it did when the stores' reads were async.
      await store.close();
      await assert.rejects(Promise.resolve(store.read(0, 4096, [b])), { code: 'EBADF' });
    } finally {
      await store.close();
    }
  }
});

test('a ring needs no eventfd: the loop watches its own descriptor, and an asynchronous completion wakes it', async () => {
  const eventfds = () => fs.readdirSync('/proc/self/fd').filter((f) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${f}`) === 'anon_inode:[eventfd]';
    } catch {
      return false; // the directory's own descriptor, gone by now
    }
  }).length;
  const before = eventfds();
  let woken = 0;
  const rg = new Ring(8, () => woken++);
  const p = path.join(dir, 'wake.img');
  fs.writeFileSync(p, Buffer.alloc(1 << 20, 7));
  // O_DIRECT: the read waits for the device, so it completes after submit() returned.
  const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  try {
    assert.equal(eventfds(), before, 'no eventfd made for the ring');
    rg.hold(true);
    const b = allocAligned(4096, 4096);
    let n = 0;
    for (let i = 0; i < 200 && n === 0; i++) {
      rg.readv(1, fd, [b], 8192);
      assert.equal(rg.submit(), 1);
      n = rg.reap();
      if (n === 0) {
        while (woken === 0) await new Promise((res) => setImmediate(res));
        n = rg.reap();
        assert.equal(n, 1, 'the wake-up found the completion');
      } else {
        n = 0; // finished inside submit(): try again for one the device makes wait
      }
    }
    assert.ok(woken > 0, 'the loop was woken by a completion');
    assert.equal(rg.results[0], 4096);
    assert.equal(b[0], 7);
  } finally {
    rg.hold(false);
    rg.close();
    fs.closeSync(fd);
  }
});

test('singlePollWaits: each sleep of the loop is one epoll_pwait, not two (Node\'s idle-time metrics off)', () => {
  // A child sleeps on a timer WAKES times; strace counts its loop's epoll_pwait. With libuv's idle-time
  // metrics on (Node's default) every sleep first polls with timeout 0, then waits: two per wake-up.
  const WAKES = 60;
  const count = (off: boolean): number => {
    const out = path.join(dir, `epoll-${off}.txt`);
    const script = `const n = require(${JSON.stringify(path.join(__dirname, '..', 'native'))});
      if (${off} && n.singlePollWaits() !== true) process.exit(3);
      let k = 0; const t = setInterval(() => { if (++k === ${WAKES}) clearInterval(t); }, 2);`;
    const r = spawnSync('strace', ['-f', '-c', '-e', 'trace=epoll_pwait', '-o', out, process.execPath, '-e', script], { encoding: 'utf8' });
    assert.ok(!r.error, `strace must be installed (scripts/install-deps --test): ${r.error?.message}`);
    assert.equal(r.status, 0, `child failed (3: the metrics were already off): ${r.stderr}`);
    // Rows: % time, seconds, usecs/call, calls, [errors,] syscall.
    const row = fs.readFileSync(out, 'utf8').split('\n').find((l) => /\sepoll_pwait$/.test(l));
    assert.ok(row, 'strace counted epoll_pwait');
    return Number(row.trim().split(/\s+/)[3]);
  };
  const before = count(false);
  const after = count(true);
  assert.ok(before >= 2 * WAKES, `metrics on: two polls per sleep (${before} for ${WAKES} sleeps)`);
  assert.ok(after <= WAKES + 10, `metrics off: one poll per sleep (${after} for ${WAKES} sleeps)`);
});

test('setPollNs: completions that come within the window are reaped by the busy-poll; 0 never polls', async () => {
  const r = ring();
  const store = await createFileio({ name: 'poll', dev: path.join(dir, 'poll.img'), size: 1 << 20, direct: true, blockSize: 4096 });
  try {
    const data = Buffer.alloc(4096, 0x77);
    await store.write(0, 4096, [data], false);
    const [hits0, misses0] = [r.pollHits, r.pollMisses];
    for (let i = 0; i < 4; i++) await store.read(0, 4096, [Buffer.alloc(4096)]);
    assert.deepEqual([r.pollHits, r.pollMisses], [hits0, misses0], 'off by default: no polling');
    r.setPollNs(200e6); // far longer than a 4 KiB read takes, so every poll finds its completion
    try {
      // Batches of 16 reads of 64 KiB: a lone 4 KiB read on a quiet machine may complete inside
      // io_uring_enter itself, leaving nothing in flight to poll for.
      for (let i = 0; i < 4 && r.pollHits === hits0; i++) {
        const bufs = Array.from({ length: 16 }, () => Buffer.alloc(65536));
        await Promise.all(bufs.map((b, k) => store.read(k * 65536, 65536, [b])));
        assert.deepEqual(bufs[0].subarray(0, 4096), data);
      }
      assert.ok(r.pollHits - hits0 >= 1, `the busy-poll reaped completions (${r.pollHits - hits0} hits, ${r.pollMisses - misses0} misses)`);
    } finally {
      r.setPollNs(0);
    }
  } finally {
    await store.close();
  }
});

// Without the runner's NODE_TEST_CONTEXT, a child `node --test` runs its files instead of refusing to nest.
const { NODE_TEST_CONTEXT: _ctx, ...parentEnv } = process.env;
const OFF = { ...parentEnv, TSIO_IO_URING: 'off' };

test('TSIO_IO_URING=off: the thread pool, said once in the log for every store', () => {
  const script = `
    const { createFileio } = require(${JSON.stringify(path.join(__dirname, '..', 'backstores', 'fileio'))});
    const { threadRing } = require(${JSON.stringify(path.join(__dirname, '..', 'backstores', 'ring-io'))});
    (async () => {
      for (const n of [1, 2]) {
        const s = await createFileio({ name: 'f' + n, dev: ${JSON.stringify(dir)} + '/off' + n + '.img', size: 1 << 20 });
        const b = Buffer.alloc(4096, n);
        await s.write(0, 4096, [b], true);
        const r = Buffer.alloc(4096);
        await s.read(0, 4096, [r]);
        if (!r.equals(b)) throw new Error('read back differs');
        await s.close();
      }
      console.log('ring=' + (threadRing() === undefined ? 'none' : 'yes'));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const res = spawnSync(process.execPath, ['-e', script], { env: OFF, encoding: 'utf8' });
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stdout, /ring=none/);
  const lines = res.stderr.split('\n').filter((l) => /io_uring/.test(l));
  assert.equal(lines.length, 1, res.stderr);
  assert.match(lines[0], /TSIO_IO_URING=off.*thread pool/);
});

test('the stores\' suites pass on the fallback path (TSIO_IO_URING=off)', () => {
  const suites = ['backstore-fileio', 'backstore-block', 'data-integrity', 'scsi-sbc-thin', 'engine-hot-path'];
  const res = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...suites.map((s) => path.join(__dirname, `${s}.test.js`))], {
    env: OFF,
    encoding: 'utf8',
    timeout: 600_000,
  });
  const out = res.stdout + res.stderr;
  assert.equal(res.status, 0, out.slice(-4000));
  assert.match(out, /# fail 0/);
  assert.doesNotMatch(out, /# pass 0\b/);
});
