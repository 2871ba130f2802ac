// tsio's vhost-user-blk and vhost-user-scsi back-ends against
// qemu-storage-daemon's vhost-user-blk export, all driven by the project's own
// vhost-user front-end (tools/vhost-frontend/cli.ts bench()) from this process:
// 4 KiB random reads and writes at queue depth 32 on one queue, a 1 GiB RAM LUN
// (tsio: rd_mcp; qsd: a file on /dev/shm). tsio-blk against qsd is like for
// like (same protocol, same client); tsio-scsi is shown beside them. Runs
// alternate; each reports IOPS and IOPS per CPU-second of the back-end process.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bench } from '../tools/vhost-frontend/cli';
import { Scenario, caseFilter, k, machineLine, numOpt, stats, table } from './common';
import { cpuSeconds, requireTools, type Run } from './peers';
import { startTsiod, type Daemon } from '../test/util/tsiod';

const LUN_BYTES = 1 << 30;

interface Case {
  name: string;
  rw: 'randread' | 'randwrite';
}
const CASES: Case[] = [
  { name: 'read-4k-rand', rw: 'randread' },
  { name: 'write-4k-rand', rw: 'randwrite' },
];

interface Backend {
  name: string;
  pid: number;
  socket: string;
  blk: boolean;
}

/** One run of the project's front-end (a connection of its own) at 4 KiB, QD 32, one request queue. */
async function drive(b: Backend, c: Case, seconds: number): Promise<Run> {
  const r = await bench({ socket: b.socket, blk: b.blk, pid: b.pid, qd: 32, bs: 4096, rw: c.rw, seconds, queues: 1 });
  if (r.errors !== 0) throw new Error(`${b.name}: ${r.errors} requests failed`);
  return { ops: r.ios, seconds: r.seconds, targetCpu: r.backendCpuSeconds ?? 0 };
}

/** Resolves once path exists (a daemon's socket); fails with the daemon's output after 15 s or when it exits. */
export async function waitFor(path: string, what: string, log: () => string, exited: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!existsSync(path)) {
    if (Date.now() - t0 > 15_000 || exited()) throw new Error(`${what} did not start:\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * qemu-storage-daemon exporting `file` (a raw `driver=file` node with `fileOpts`) as vhost-user-blk on `sock`,
 * one queue; added to `procs` (the caller kills it) and returned once it listens.
 */
export async function startQsdBlk(file: string, fileOpts: string, sock: string, procs: ChildProcess[]): Promise<ChildProcess> {
  let log = '';
  const qsd = spawn('qemu-storage-daemon', [
    '--blockdev', `driver=file,node-name=file0,filename=${file},${fileOpts}`,
    '--export', `type=vhost-user-blk,id=exp0,node-name=file0,addr.type=unix,addr.path=${sock},writable=on,num-queues=1`,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(qsd);
  qsd.stdout!.on('data', (b) => (log += b));
  qsd.stderr!.on('data', (b) => (log += b));
  await waitFor(sock, 'qemu-storage-daemon', () => log, () => qsd.exitCode !== null);
  return qsd;
}

const HEADER = ['case', 'tsio-blk IOPS', 'qsd IOPS', 'ratio', 'tsio-scsi IOPS', 'tsio-blk IOPS/cpu-s', 'qsd IOPS/cpu-s', 'ratio', 'tsio-scsi IOPS/cpu-s'];

export const vhostScenario: Scenario = {
  name: 'vhost',
  description: 'tsio vhost-user-blk (and vhost-user-scsi) vs qemu-storage-daemon vhost-user-blk, the project front-end, 4 KiB QD 32',
  byDefault: false,
  async run(args) {
    requireTools([['qemu-storage-daemon', 'qemu-system-common (qemu-system-x86)']]);
    const rounds = numOpt(args, '--rounds', 3);
    const seconds = numOpt(args, '--seconds', 5);
    const want = caseFilter(args, 'vhost');
    const pollNs = numOpt(args, '--poll-max-ns', 0);
    console.log(machineLine());
    console.log(`${rounds} rounds per case, each run ${seconds} s, tsio and qsd alternating; one request queue; tsiod --poll-max-ns ${pollNs}\n`);
    const dir = mkdtempSync(join(tmpdir(), 'tsio-bench-vhost-'));
    const shm = `/dev/shm/tsio-bench-qsd-${process.pid}.img`;
    const procs: ChildProcess[] = [];
    let tsiod: Daemon | undefined;
    try {
      const tsioSock = join(dir, 'tsio.sock');
      const tsioBlkSock = join(dir, 'tsio-blk.sock');
      tsiod = await startTsiod(`storage_objects:
  - { name: ram0, plugin: rd_mcp, size: ${LUN_BYTES} }
targets:
  - fabric: vhost
    wwn: naa.5001405000000b01
    tpgs:
      - { tag: 1, socket: ${tsioSock}, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ] }
  - fabric: vhost
    wwn: naa.5001405000000b02
    tpgs:
      - { tag: 1, socket: ${tsioBlkSock}, device: blk, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ] }
`, { dir, args: ['--poll-max-ns', String(pollNs)] });

      writeFileSync(shm, '');
      truncateSync(shm, LUN_BYTES);
      const qsdSock = join(dir, 'qsd.sock');
      const qsd = await startQsdBlk(shm, 'cache.direct=off,aio=threads', qsdSock, procs);

      // tsio-blk first and qsd second: the ratios compare those two.
      const devices: Backend[] = [
        { name: 'tsio-blk', pid: tsiod.proc.pid!, socket: tsioBlkSock, blk: true },
        { name: 'qsd', pid: qsd.pid!, socket: qsdSock, blk: true },
        { name: 'tsio-scsi', pid: tsiod.proc.pid!, socket: tsioSock, blk: false },
      ];
      const rows: string[][] = [];
      for (const c of CASES) {
        if (!want(c.name)) continue;
        for (const d of devices) await drive(d, c, 1); // warm-up
        const runs: Run[][] = devices.map(() => []);
        for (let r = 0; r < rounds; r++) for (const [i, d] of devices.entries()) runs[i].push(await drive(d, c, seconds));
        const iops = runs.map((rs) => stats(rs.map((x) => x.ops / x.seconds)).median);
        const perCpu = runs.map((rs) => stats(rs.map((x) => x.ops / Math.max(x.targetCpu, 0.01))).median);
        const row = [c.name, k(iops[0]), k(iops[1]), (iops[0] / iops[1]).toFixed(2), k(iops[2]), k(perCpu[0]), k(perCpu[1]),
          (perCpu[0] / perCpu[1]).toFixed(2), k(perCpu[2])];
        rows.push(row);
        console.log(table(HEADER, [row]).split('\n')[1]);
      }
      console.log('\n' + table(HEADER, rows));
      console.log('\nmedians over rounds; ratio = tsio-blk / qsd (both vhost-user-blk); IOPS/cpu-s: requests per CPU-second of the back-end process');
    } finally {
      await tsiod?.stop();
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      rmSync(shm, { force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
