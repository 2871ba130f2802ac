// tsio's vhost-user-scsi back-end against qemu-storage-daemon's
// vhost-user-blk export, both driven by the project's own vhost-user
// front-end (fabrics/vhost/frontend) from this process: 4 KiB random reads
// and writes at queue depth 32 on one queue, a 1 GiB RAM LUN (tsio: rd_mcp;
// qsd: a file on /dev/shm). Runs alternate; each reports IOPS and IOPS per
// CPU-second of the back-end process.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ScsiSlot, VhostUserFrontend, type DriverQueue } from '../fabrics/vhost/frontend/frontend';
import { VQ } from '../fabrics/vhost/virtio-scsi';
import { Scenario, caseFilter, k, machineLine, numOpt, stats, table } from './common';
import { cpuSeconds, requireTools, type Run } from './peers';

const LUN_BYTES = 1 << 30;
const IO = 4096;
const QD = 32;
const TSIOD = join(__dirname, '..', 'src', 'daemon', 'tsiod.js');

// virtio-blk request header (virtio spec 5.2.6): type, reserved, sector (512-byte units); then data, then a status byte.
const BlkReq = { TYPE: 0, SECTOR: 8, LENGTH: 16 } as const;
const BlkType = { IN: 0, OUT: 1 } as const;

interface Case {
  name: string;
  write: boolean;
}
const CASES: Case[] = [
  { name: 'read-4k-rand', write: false },
  { name: 'write-4k-rand', write: true },
];

/** Posts one request on a slot; `done` when the device returns it, with an error text when it failed. */
type Poster = (slot: number, lba: number, write: boolean, done: (err?: string) => void) => void;

interface Device {
  /** Clears what a new initiator is told first (SCSI unit attentions). */
  prime(): Promise<void>;
  name: string;
  pid: number;
  fe: VhostUserFrontend;
  q: DriverQueue;
  post: Poster;
}

function scsiDevice(name: string, pid: number, sock: string): Device {
  const fe = new VhostUserFrontend(sock, { memory: 16 << 20 });
  fe.negotiate(3);
  fe.start(128);
  const q = fe.queues[VQ.REQUEST0];
  q.watch();
  const slots = Array.from({ length: QD }, () => new ScsiSlot(fe.ram, IO));
  const cdb = Buffer.alloc(10);
  let id = 1n;
  const post: Poster = (s, lba, write, done) => {
    cdb[0] = write ? 0x2a : 0x28;
    cdb.writeUInt32BE(lba, 2);
    cdb.writeUInt16BE(IO / 512, 7);
    slots[s].post(q, 0, cdb, IO, write, id++, (r) => {
      done(r.response !== 0 || r.status !== 0 ? `${name}: response ${r.response} status ${r.status}` : undefined);
    });
  };
  const prime = async () => {
    for (let i = 0; i < 4; i++) {
      await new Promise<void>((res) => {
        slots[0].post(q, 0, [0, 0, 0, 0, 0, 0], 0, false, id++, () => res());
        q.kick();
      });
    }
  };
  return { name, pid, fe, q, post, prime };
}

function blkDevice(name: string, pid: number, sock: string): Device {
  const fe = new VhostUserFrontend(sock, { memory: 16 << 20 });
  fe.negotiate(1);
  fe.start(128);
  const q = fe.queues[0];
  q.watch();
  const slots = Array.from({ length: QD }, () => {
    const hdr = fe.ram.alloc(BlkReq.LENGTH);
    const data = fe.ram.alloc(IO, 4096);
    const status = fe.ram.alloc(1);
    return { hdr, data, status, hdrBuf: fe.ram.view(hdr, BlkReq.LENGTH), statusBuf: fe.ram.view(status, 1) };
  });
  const post: Poster = (s, lba, write, done) => {
    const sl = slots[s];
    sl.hdrBuf.writeUInt32LE(write ? BlkType.OUT : BlkType.IN, BlkReq.TYPE);
    sl.hdrBuf.writeBigUInt64LE(BigInt(lba), BlkReq.SECTOR);
    sl.statusBuf[0] = 0xff;
    const out: [number, number][] = write ? [[sl.hdr, BlkReq.LENGTH], [sl.data, IO]] : [[sl.hdr, BlkReq.LENGTH]];
    const inb: [number, number][] = write ? [[sl.status, 1]] : [[sl.data, IO], [sl.status, 1]];
    q.add(out, inb, () => {
      done(sl.statusBuf[0] !== 0 ? `${name}: virtio-blk status ${sl.statusBuf[0]}` : undefined);
    });
  };
  return { name, pid, fe, q, post, prime: async () => {} };
}

/** QD requests in flight for `seconds`: each completion posts its slot again at a random 4 KiB-aligned LBA. */
function drive(d: Device, write: boolean, seconds: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const blocks = LUN_BYTES / IO;
    let x = 0x2545f491;
    const rnd = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % blocks;
    };
    let n = 0;
    let inflight = 0;
    let stopping = false;
    const cpu0 = cpuSeconds(d.pid);
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let seen = -1;
    // A run that stops completing (a lost notification, a dead back-end) fails instead of hanging.
    const watchdog = setInterval(() => {
      if (n === seen) {
        clearInterval(watchdog);
        reject(new Error(`${d.name}: no completion for 10 s (${inflight} in flight)`));
      }
      seen = n;
    }, 10_000);
    const issue = (s: number) => {
      inflight++;
      d.post(s, rnd() * (IO / 512), write, (err) => {
        if (err !== undefined) {
          clearInterval(watchdog);
          reject(new Error(err));
          return;
        }
        inflight--;
        n++;
        if (!stopping && (n & 255) === 0 && performance.now() >= end) stopping = true;
        if (!stopping) {
          issue(s);
          d.q.kick();
        } else if (inflight === 0) {
          clearInterval(watchdog);
          resolve({ ops: n, seconds: (performance.now() - t0) / 1000, targetCpu: cpuSeconds(d.pid) - cpu0 });
        }
      });
    };
    for (let s = 0; s < QD; s++) issue(s);
    d.q.kick();
  });
}

async function waitFor(path: string, what: string, log: () => string, exited: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!existsSync(path)) {
    if (Date.now() - t0 > 15_000 || exited()) throw new Error(`${what} did not start:\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const HEADER = ['case', 'tsio IOPS', 'qsd IOPS', 'ratio', 'tsio IOPS/cpu-s', 'qsd IOPS/cpu-s', 'ratio'];

export const vhostScenario: Scenario = {
  name: 'vhost',
  description: 'tsio vhost-user-scsi vs qemu-storage-daemon vhost-user-blk, the project front-end, 4 KiB QD 32',
  byDefault: false,
  async run(args) {
    requireTools([['qemu-storage-daemon', 'qemu-system-common (qemu-system-x86)']]);
    const rounds = numOpt(args, '--rounds', 3);
    const seconds = numOpt(args, '--seconds', 5);
    const want = caseFilter(args, 'vhost');
    console.log(machineLine());
    console.log(`${rounds} rounds per case, each run ${seconds} s, tsio and qsd alternating; one request queue\n`);
    const dir = mkdtempSync(join(tmpdir(), 'tsio-bench-vhost-'));
    const shm = `/dev/shm/tsio-bench-qsd-${process.pid}.img`;
    const procs: ReturnType<typeof spawn>[] = [];
    const devices: Device[] = [];
    try {
      const cfg = join(dir, 'tsiod.yaml');
      const tsioSock = join(dir, 'tsio.sock');
      writeFileSync(cfg, `storage_objects:
  - { name: ram0, plugin: rd_mcp, size: ${LUN_BYTES} }
targets:
  - fabric: vhost
    wwn: naa.5001405000000b01
    tpgs:
      - { tag: 1, socket: ${tsioSock}, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ] }
`);
      let tlog = '';
      const tsiod = spawn(process.execPath, [TSIOD, '--config', cfg, '--control', 'none', '--state-dir', join(dir, 'state'),
        '--saveconfig', join(dir, 'save.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
      procs.push(tsiod);
      tsiod.stdout!.on('data', (b) => (tlog += b));
      tsiod.stderr!.on('data', (b) => (tlog += b));
      await waitFor(tsioSock, 'tsiod', () => tlog, () => tsiod.exitCode !== null);

      writeFileSync(shm, '');
      truncateSync(shm, LUN_BYTES);
      const qsdSock = join(dir, 'qsd.sock');
      let qlog = '';
      const qsd = spawn('qemu-storage-daemon', [
        '--blockdev', `driver=file,node-name=file0,filename=${shm},cache.direct=off,aio=threads`,
        '--export', `type=vhost-user-blk,id=exp0,node-name=file0,addr.type=unix,addr.path=${qsdSock},writable=on,num-queues=1`,
      ], { stdio: ['ignore', 'pipe', 'pipe'] });
      procs.push(qsd);
      qsd.stdout!.on('data', (b) => (qlog += b));
      qsd.stderr!.on('data', (b) => (qlog += b));
      await waitFor(qsdSock, 'qemu-storage-daemon', () => qlog, () => qsd.exitCode !== null);

      devices.push(scsiDevice('tsio', tsiod.pid!, tsioSock), blkDevice('qsd', qsd.pid!, qsdSock));
      for (const d of devices) await d.prime();
      const rows: string[][] = [];
      for (const c of CASES) {
        if (!want(c.name)) continue;
        for (const d of devices) await drive(d, c.write, 1); // warm-up
        const runs: Run[][] = devices.map(() => []);
        for (let r = 0; r < rounds; r++) for (const [i, d] of devices.entries()) runs[i].push(await drive(d, c.write, seconds));
        const iops = runs.map((rs) => stats(rs.map((x) => x.ops / x.seconds)).median);
        const perCpu = runs.map((rs) => stats(rs.map((x) => x.ops / Math.max(x.targetCpu, 0.01))).median);
        const row = [c.name, k(iops[0]), k(iops[1]), (iops[0] / iops[1]).toFixed(2), k(perCpu[0]), k(perCpu[1]),
          (perCpu[0] / perCpu[1]).toFixed(2)];
        rows.push(row);
        console.log(table(HEADER, [row]).split('\n')[1]);
      }
      console.log('\n' + table(HEADER, rows));
      console.log('\nmedians over rounds; ratio = tsio / qsd; IOPS/cpu-s: requests per CPU-second of the back-end process');
    } finally {
      for (const d of devices) d.fe.close();
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      rmSync(shm, { force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
