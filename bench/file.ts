// fileio and block against their peers on the same storage: a file on the
// disk's ext4 (buffered and O_DIRECT) and a loop device over that file
// (buffered and O_DIRECT). Two pairs, each driven by one client:
//  - iSCSI on 127.0.0.1: tsiod against tgtd (bstype rdwr for buffered, aio for
//    O_DIRECT), iscsi-perf reads and qemu-img bench writes (bench/iscsi.ts);
//  - vhost-user: tsiod's vhost-user-blk against qemu-storage-daemon's
//    vhost-user-blk (aio=io_uring buffered, aio=native with cache.direct=on),
//    the project's front-end in this process (tools/vhost-frontend); tsiod's
//    vhost-user-scsi on the same store is an extra row (tsio-scsi).
// tsiod runs twice: on io_uring (tsio) and with TSIO_IO_URING=off, the thread
// pool path it had before (tsio-pool). Runs alternate within a round; each
// reports IOPS, mean latency (vhost: measured; iSCSI: queue depth / IOPS) and
// IOPS per CPU-second of the target process. With --strace, one extra run per
// tsiod and 4 KiB case counts its syscalls (strace -c -f) per I/O.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bench } from '../tools/vhost-frontend/cli';
import { startTsiod, freePort, type Daemon } from '../test/util/tsiod';
import { losetup } from '../test/util/losetup';
import { Scenario, caseFilter, k, machineLine, numOpt, stats, table } from './common';
import { requireTools, startTgtd, type Run } from './peers';
import { measure as iscsiMeasure, type Target as IscsiTarget } from './iscsi';
import { waitFor } from './vhost';

const GiB = 1 << 30;
const IQN = 'iqn.2026-12.org.tsio:bench-file';
const IQN_TGTD = 'iqn.2026-12.org.tsio:bench-file-tgtd';

interface Mode {
  name: string;
  block: boolean;
  direct: boolean;
  tgtdBstype: string;
  qsdAio: string;
}

const MODES: Mode[] = [
  { name: 'fileio-buffered', block: false, direct: false, tgtdBstype: 'rdwr', qsdAio: 'aio=io_uring,cache.direct=off' },
  { name: 'fileio-direct', block: false, direct: true, tgtdBstype: 'aio', qsdAio: 'aio=native,cache.direct=on' },
  { name: 'block-buffered', block: true, direct: false, tgtdBstype: 'rdwr', qsdAio: 'aio=io_uring,cache.direct=off' },
  { name: 'block-direct', block: true, direct: true, tgtdBstype: 'aio', qsdAio: 'aio=native,cache.direct=on' },
];

interface FileCase {
  name: string;
  write: boolean;
  bytes: number;
  random: boolean;
  qd: number;
}

const CASES: FileCase[] = [
  { name: 'read-4k-rand-qd1', write: false, bytes: 4096, random: true, qd: 1 },
  { name: 'read-4k-rand-qd32', write: false, bytes: 4096, random: true, qd: 32 },
  { name: 'write-4k-rand-qd1', write: true, bytes: 4096, random: true, qd: 1 },
  { name: 'write-4k-rand-qd32', write: true, bytes: 4096, random: true, qd: 32 },
  { name: 'read-1m-seq', write: false, bytes: 1 << 20, random: false, qd: 4 },
  { name: 'write-1m-seq', write: true, bytes: 1 << 20, random: false, qd: 4 },
];

interface Target {
  name: string;
  pid: number;
  /** The peer it is compared with ('' for tsio itself). */
  fabric: 'iscsi' | 'vhost';
  run(c: FileCase, seconds: number): Promise<Run & { latencyUs: number }>;
}

function iscsiTarget(name: string, pid: number, url: string): Target {
  const t: IscsiTarget = { name, url, pid, counts: new Map() };
  return {
    name,
    pid,
    fabric: 'iscsi',
    async run(c, seconds) {
      const r = await iscsiMeasure(t, { name: c.name, write: c.write, bytes: c.bytes, random: c.random, qd: c.qd }, seconds);
      return { ...r, latencyUs: (c.qd / (r.ops / r.seconds)) * 1e6 };
    },
  };
}

function vhostTarget(name: string, pid: number, socket: string, blk: boolean): Target {
  return {
    name,
    pid,
    fabric: 'vhost',
    async run(c, seconds) {
      const rw = c.random ? (c.write ? 'randwrite' : 'randread') : c.write ? 'write' : 'read';
      const r = await bench({ socket, blk, pid, qd: c.qd, bs: c.bytes, rw, seconds, queues: 1 });
      if (r.errors !== 0) throw new Error(`${name}: ${r.errors} requests failed`);
      return { ops: r.ios, seconds: r.seconds, targetCpu: r.backendCpuSeconds ?? 0, latencyUs: r.latencyUs };
    },
  };
}

function tsiodConfig(m: Mode, dev: string, sock: string, blkSock: string, mrdsl: number) {
  const so = m.block
    ? `{ name: d0, plugin: block, dev: ${dev}, direct: ${m.direct}, write_back: true }`
    : `{ name: d0, plugin: fileio, dev: ${dev}, direct: ${m.direct} }`;
  const plugin = m.block ? 'block' : 'fileio';
  return (port: number) => `storage_objects:
  - ${so}
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }${mrdsl > 0 ? `
        parameters: { MaxRecvDataSegmentLength: ${mrdsl} }` : ''}
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/${plugin}/d0 } ]
  - fabric: vhost
    wwn: naa.5001405000000f01
    tpgs:
      - { tag: 1, socket: ${sock}, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/${plugin}/d0 } ] }
  - fabric: vhost
    wwn: naa.5001405000000f02
    tpgs:
      - { tag: 1, socket: ${blkSock}, device: blk, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/${plugin}/d0 } ] }
`;
}

/** A tsiod's O_DIRECT writes so far, all and bounced, from its metrics (undefined: a tsiod that does not count them). */
async function directWrites(port: number): Promise<{ all: number; bounced: number } | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const n = (path: string) => Number(new RegExp(`^tsio_direct_io_commands_total\\{op="write",path="${path}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
  const direct = n('direct');
  const bounced = n('bounced');
  return Number.isNaN(direct) ? undefined : { all: direct + bounced, bounced };
}

/** Syscalls per I/O of one run of c against t, counted by strace -c -f attached to the target. */
async function syscallsPerIo(t: Target, c: FileCase, seconds: number, out: string): Promise<{ perIo: number; top: string }> {
  const st: ChildProcess = spawn('strace', ['-c', '-f', '-o', out, '-p', String(t.pid)], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1000)); // attached to every thread
  let r: Run;
  try {
    r = await t.run(c, seconds);
  } finally {
    st.kill('SIGINT');
    await new Promise((res) => st.once('exit', res));
  }
  const text = readFileSync(out, 'utf8');
  const lines = text.split('\n').filter((l) => /^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+/.test(l) && !/total/.test(l));
  const byCalls = lines
    .map((l) => l.trim().split(/\s+/))
    .map((f) => ({ name: f[f.length - 1], calls: Number(f[3]) }))
    .sort((a, b) => b.calls - a.calls)
    .slice(0, 5)
    .map((x) => `${x.name} ${(x.calls / r.ops).toFixed(2)}`)
    .join(', ');
  // Rows are: % time, seconds, usecs/call, calls, [errors,] syscall.
  const calls = lines.reduce((a, l) => a + Number(l.trim().split(/\s+/)[3]), 0);
  return { perIo: calls / r.ops, top: byCalls };
}

const HEADER = ['mode', 'case', 'fabric', 'target', 'IOPS', 'lat us', 'IOPS/cpu-s', 'vs peer /cpu-s', 'vs pool /cpu-s'];

export const fileScenario: Scenario = {
  name: 'file',
  description: 'fileio (ext4 file, buffered and O_DIRECT) and block (loop device) on io_uring vs the pool, tgtd (iSCSI) and qemu-storage-daemon (vhost-user)',
  byDefault: false,
  async run(args) {
    requireTools([['tgtd', 'tgt'], ['tgtadm', 'tgt'], ['iscsi-perf', 'libiscsi-bin'], ['qemu-img', 'qemu-utils'],
      ['qemu-storage-daemon', 'qemu-system-common (qemu-system-x86)'], ['strace', 'strace'], ['losetup', 'mount']]);
    const rounds = numOpt(args, '--rounds', 2);
    const seconds = numOpt(args, '--seconds', 3);
    const gib = numOpt(args, '--gib', 1);
    const doStrace = args.includes('--strace');
    // The ring's busy-poll window for the io_uring tsiod (ring-io setPollNs; 0, the default: off).
    const pollNs = numOpt(args, '--poll-ns', 0);
    // tsiod's iSCSI MaxRecvDataSegmentLength (0: its default, 8192): the size of the Data-Out PDUs it receives.
    const mrdsl = numOpt(args, '--mrdsl', 0);
    const want = caseFilter(args, 'file');
    const modeArg = args.indexOf('--modes');
    const modes = modeArg < 0 ? MODES : MODES.filter((m) => args[modeArg + 1].split(',').includes(m.name));
    const fabricArg = args.indexOf('--fabrics');
    const fabrics = fabricArg < 0 ? ['iscsi', 'vhost'] : args[fabricArg + 1].split(',');
    console.log(machineLine());
    console.log(`${rounds} rounds per case, each run ${seconds} s, targets alternating; a ${gib} GiB file on ext4 (/var/tmp), 512-byte blocks` +
      `${pollNs > 0 ? `; io_uring busy-poll up to ${pollNs} ns` : ''}${mrdsl > 0 ? `; tsiod's iSCSI MaxRecvDataSegmentLength ${mrdsl}` : ''}\n`);

    // /var/tmp: the disk's ext4, never tmpfs.
    const dir = mkdtempSync('/var/tmp/tsio-bench-file-');
    const file = join(dir, 'disk.img');
    const loops: string[] = [];
    const rows: string[][] = [];
    const straceRows: string[][] = [];
    try {
      // Real data everywhere: O_DIRECT reads of unwritten extents would cost no device I/O.
      const dd = spawnSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${gib * 1024}`, 'oflag=direct', 'conv=fsync', 'status=none']);
      if (dd.status !== 0) throw new Error(`dd: ${dd.stderr}`);
      const size = gib * GiB;
      for (const m of modes) {
        // Two loop devices over the one file: each tsiod claims its own exclusively.
        if (m.block && loops.length === 0) for (let i = 0; i < 2; i++) loops.push(losetup(['--find', '--show', file]));
        const devRing = m.block ? loops[0] : file;
        const devPool = m.block ? loops[1] : file;
        const started: { stop(): unknown }[] = [];
        try {
          const tsioSock = join(dir, `tsio-${m.name}.sock`);
          const poolSock = join(dir, `pool-${m.name}.sock`);
          const tsioBlkSock = join(dir, `tsio-blk-${m.name}.sock`);
          const poolBlkSock = join(dir, `pool-blk-${m.name}.sock`);
          for (const d of ['ring', 'pool']) mkdirSync(join(dir, m.name, d), { recursive: true });
          // Metrics: how many O_DIRECT writes bounced (tsio_direct_io_commands_total; absent before it existed).
          const metricPorts = [await freePort(), await freePort()];
          const ring: Daemon = await startTsiod(tsiodConfig(m, devRing, tsioSock, tsioBlkSock, mrdsl), { dir: join(dir, m.name, 'ring'), env: { TSIO_IO_URING: 'on' }, args: ['--poll-max-ns', String(pollNs), '--metrics', `127.0.0.1:${metricPorts[0]}`] });
          started.push(ring);
          const pool: Daemon = await startTsiod(tsiodConfig(m, devPool, poolSock, poolBlkSock, mrdsl), { dir: join(dir, m.name, 'pool'), env: { TSIO_IO_URING: 'off' }, args: ['--metrics', `127.0.0.1:${metricPorts[1]}`] });
          started.push(pool);
          if (!/io_uring off/.test(pool.log())) throw new Error(`tsiod with TSIO_IO_URING=off did not say it falls back:\n${pool.log()}`);
          if (/io_uring (off|unavailable)/.test(ring.log())) throw new Error(`tsiod has no io_uring:\n${ring.log()}`);

          const tgtPort = await freePort();
          const tgtd = await startTgtd(tgtPort, IQN_TGTD, devRing, ['--bstype', m.tgtdBstype]);
          started.push(tgtd);

          const qsdSock = join(dir, `qsd-${m.name}.sock`);
          let qlog = '';
          const qsd = spawn('qemu-storage-daemon', [
            '--blockdev', `driver=${m.block ? 'host_device' : 'file'},node-name=f0,filename=${devRing},${m.qsdAio},locking=off`,
            '--export', `type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=${qsdSock},writable=on,num-queues=1`,
          ], { stdio: ['ignore', 'pipe', 'pipe'] });
          started.push({ stop: () => qsd.exitCode === null && qsd.signalCode === null && qsd.kill('SIGKILL') });
          qsd.stdout!.on('data', (b) => (qlog += b));
          qsd.stderr!.on('data', (b) => (qlog += b));
          await waitFor(qsdSock, 'qemu-storage-daemon', () => qlog, () => qsd.exitCode !== null);

          // Buffered modes are served from the page cache, as a warm server's would be. Read once the targets
          // hold the devices open: the last close of a block device drops its page cache.
          if (!m.direct) for (const d of new Set([devRing, devPool])) spawnSync('dd', [`if=${d}`, 'of=/dev/null', 'bs=1M', 'status=none']);

          // Each list: tsio, tsio-pool, the peer (the ratios), then extra rows compared with the same peer.
          const pairs: Target[][] = [];
          if (fabrics.includes('iscsi')) {
            pairs.push([
              iscsiTarget('tsio', ring.proc.pid!, `iscsi://127.0.0.1:${ring.port}/${IQN}/0`),
              iscsiTarget('tsio-pool', pool.proc.pid!, `iscsi://127.0.0.1:${pool.port}/${IQN}/0`),
              iscsiTarget(`tgtd-${m.tgtdBstype}`, tgtd.pid, `iscsi://127.0.0.1:${tgtPort}/${IQN_TGTD}/1`),
            ]);
          }
          if (fabrics.includes('vhost')) {
            // Like for like: tsio's vhost-user-blk against qsd's; its vhost-user-scsi on the same store as an extra row.
            pairs.push([
              vhostTarget('tsio-blk', ring.proc.pid!, tsioBlkSock, true),
              vhostTarget('tsio-pool-blk', pool.proc.pid!, poolBlkSock, true),
              vhostTarget(`qsd-${m.qsdAio.split(',')[0].slice(4)}`, qsd.pid!, qsdSock, true),
              vhostTarget('tsio-scsi', ring.proc.pid!, tsioSock, false),
            ]);
          }
          for (const c of CASES) {
            if (!want(c.name) || c.bytes * c.qd > size) continue;
            for (const targets of pairs) {
              for (const t of targets) await t.run(c, 1); // warm-up (and qemu-img's count calibration)
              const bounce0 = await Promise.all(metricPorts.map(directWrites));
              const runs: (Run & { latencyUs: number })[][] = targets.map(() => []);
              for (let r = 0; r < rounds; r++) {
                const order = r % 2 === 0 ? [...targets.keys()] : [...targets.keys()].reverse();
                for (const i of order) runs[i].push(await targets[i].run(c, seconds));
              }
              const iops = runs.map((rs) => stats(rs.map((x) => x.ops / x.seconds)).median);
              const lat = runs.map((rs) => stats(rs.map((x) => x.latencyUs)).median);
              const perCpu = runs.map((rs) => stats(rs.map((x) => x.ops / Math.max(x.targetCpu, 0.01))).median);
              const bounce1 = await Promise.all(metricPorts.map(directWrites));
              if (c.write && m.direct && bounce0[0] !== undefined) {
                const share = (i: number) => `${bounce1[i]!.bounced - bounce0[i]!.bounced} of ${bounce1[i]!.all - bounce0[i]!.all}`;
                console.log(`  O_DIRECT writes bounced (${targets[0].fabric}): tsio ${share(0)}, tsio-pool ${share(1)}`);
              }
              for (const [i, t] of targets.entries()) {
                const row = [m.name, c.name, t.fabric, t.name, k(iops[i]), lat[i].toFixed(0), k(perCpu[i]),
                  i === 0 || i > 2 ? (perCpu[i] / perCpu[2]).toFixed(2) : '', i === 0 ? (perCpu[0] / perCpu[1]).toFixed(2) : ''];
                rows.push(row);
                console.log(table(HEADER, [row]).split('\n')[1]);
              }
              if (doStrace && c.bytes === 4096) {
                for (const t of targets.slice(0, 2)) {
                  const s = await syscallsPerIo(t, c, seconds, join(dir, `strace-${t.name}.txt`));
                  const row = [m.name, c.name, t.fabric, t.name, s.perIo.toFixed(2), s.top];
                  straceRows.push(row);
                  console.log(`  strace: ${row.join('  ')}`);
                }
              }
            }
          }
        } finally {
          for (const s of started.reverse()) await s.stop();
        }
      }
      console.log('\n' + table(HEADER, rows));
      console.log('\nmedians over rounds; IOPS/cpu-s: operations per CPU-second of the target process; vs peer: tsio / tgtd (iSCSI) or ' +
        'tsio-blk (and tsio-scsi) / qsd (vhost-user, both vhost-user-blk but tsio-scsi); vs pool: tsio on io_uring / tsio with TSIO_IO_URING=off; iSCSI latency = QD / IOPS');
      if (straceRows.length) {
        console.log('\n' + table(['mode', 'case', 'fabric', 'target', 'syscalls/IO', 'top syscalls per IO'], straceRows));
      }
    } finally {
      for (const l of loops) spawnSync('losetup', ['-d', l]);
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
