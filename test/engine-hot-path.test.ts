// The engine's fast paths keep their guarantees: a write that finishes at once
// takes no range hold, one that goes asynchronous holds its range shared until
// it ends; caller-owned buffers are used in place; the core's modules keep
// exports the engine can read fast.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { rig } from './util/loopback-setup';
import { gated } from './util/gated';
import { Status } from '../src/core/sense';
import { diskTable } from '../src/scsi/disk';
import { LATENCY_SAMPLE_EVERY } from '../src/core/stats';

const WRITE10 = (lba: number, n: number) => [0x2a, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, n, 0];
const READ10 = (lba: number, n: number) => [0x28, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, n, 0];

test('an asynchronous write holds its LBA range against an exclusive hold until it completes', async () => {
  const r = await rig([{ plugin: 'gated', size: 1 << 20 }]);
  const store = gated[gated.length - 1];
  const lock = r.sos[0].lu.rangeLock;
  const a = await r.nexus();
  const w = a.command(0, WRITE10(8, 2), { dataOut: Buffer.alloc(1024, 0x5a) });
  await new Promise((res) => setImmediate(res));
  assert.equal(store.started, 1);
  const outside = lock.acquire(10, 4, true);
  assert.ok(!(outside instanceof Promise), 'a disjoint range is free');
  lock.release(outside);
  const inside = lock.acquire(9, 1, true);
  assert.ok(inside instanceof Promise, 'overlapping exclusive hold must wait for the write');
  let granted = false;
  void inside.then((h) => {
    granted = true;
    lock.release(h);
  });
  store.open();
  assert.equal((await w).status, Status.GOOD);
  await new Promise((res) => setImmediate(res));
  assert.ok(granted);
  assert.ok(lock.sharedFree);
  await r.close();
});

test('synchronous writes leave no hold behind, and reads land in the caller\'s buffer', async () => {
  const r = await rig([{}]);
  const lock = r.sos[0].lu.rangeLock;
  const a = await r.nexus();
  const res = await a.command(0, WRITE10(100, 8), { dataOut: Buffer.alloc(4096, 0xc3) });
  assert.equal(res.status, Status.GOOD);
  const h = lock.acquire(100, 8, true);
  assert.ok(!(h instanceof Promise));
  lock.release(h);
  const mine = Buffer.alloc(4096);
  const rd = await a.command(0, READ10(100, 8), { dataIn: [mine] });
  assert.equal(rd.status, Status.GOOD);
  assert.equal(rd.data.buffer, mine.buffer);
  assert.ok(mine.every((b) => b === 0xc3));
  await r.close();
});

test('statistics count every command exactly and time one in LATENCY_SAMPLE_EVERY', async () => {
  const r = await rig([{}]);
  const a = await r.nexus();
  const st = r.sos[0].lu.stats;
  const before = { commands: st.commands, reads: st.reads, timed: st.latencySamples };
  const n = 4 * LATENCY_SAMPLE_EVERY;
  for (let i = 0; i < n; i++) assert.equal((await a.command(0, READ10(i, 1))).status, Status.GOOD);
  assert.equal(st.commands - before.commands, n);
  assert.equal(st.reads - before.reads, n);
  assert.equal(st.latencySamples - before.timed, 4);
  const snap = st.snapshot();
  assert.equal(snap.latency_buckets_us.reduce((x, y) => x + y, 0), snap.latency_samples);
  assert.ok(snap.latency_us.p50 >= 0 && snap.latency_us.p99 >= snap.latency_us.p50);
  await r.close();
});

test('table entries share one key layout, and reserved CDB bits are still found in the restricted bytes', async () => {
  const keys = new Set(diskTable.all.map((d) => Object.keys(d).join(',')));
  assert.equal(keys.size, 1, [...keys].join('\n'));
  const r = await rig([{}]);
  const a = await r.nexus();
  const read16 = [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0];
  const bad16 = await a.command(0, read16);
  assert.equal(bad16.senseKey, 5);
  assert.deepEqual(bad16.field, { inCdb: true, byte: 14, bit: 7 });
  const bad10 = await a.command(0, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x04]);
  assert.deepEqual(bad10.field, { inCdb: true, byte: 9, bit: 2 });
  const badSa = await a.command(0, [0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
  assert.equal(badSa.senseKey, 5);
  assert.equal((await a.command(0, READ10(0, 1))).status, Status.GOOD);
  await r.close();
});

test("the core's modules keep fast exports: no re-export getter turns them into dictionaries", () => {
  // TypeScript compiles `export { x } from './y'` into a getter, and one getter puts the module's exports object in
  // dictionary mode: every `module.name` the engine reads per command (new ScsiCmd, F, readField) becomes a lookup.
  const dir = join(__dirname, '..', 'src', 'core');
  const files = readdirSync(dir).filter((f) => f.endsWith('.js')).map((f) => join(dir, f));
  const slow = execFileSync(process.execPath, ['--allow-natives-syntax', '-e', `
    const slow = [];
    for (const f of ${JSON.stringify(files)}) if (!%HasFastProperties(require(f))) slow.push(require('path').basename(f));
    process.stdout.write(JSON.stringify(slow));`], { encoding: 'utf8' });
  assert.ok(files.length > 10, `read the compiled core: ${files.join(', ')}`);
  assert.deepEqual(JSON.parse(slow), []);
});
