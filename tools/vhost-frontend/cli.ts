#!/usr/bin/env node
// vhost-frontend: drives a vhost-user-scsi or vhost-user-blk back-end (tsiod,
// qemu-storage-daemon...) without a guest, at a chosen queue depth, block
// size and queue count, and reports IOPS, latency and IOPS per back-end CPU
// second. `npm run bench` uses it; so can anyone comparing back-ends.

import { readFileSync } from 'node:fs';
import { BlkSlot, ScsiSlot, VhostUserFrontend, type DriverQueue } from './frontend';
import { bit, Feature } from '../../fabrics/vhost/vhost-user-proto';
import { VQ } from '../../fabrics/vhost/virtio-scsi';
import { BlkConfig, BlkStatus, BlkType, SECTOR_SIZE } from '../../fabrics/vhost/virtio-blk';

const USAGE = `usage: vhost-frontend --socket PATH [--blk] [--queues N] [--qd N] [--bs BYTES] [--rw randread|randwrite|read|write]
                      [--seconds S] [--lun N] [--pid BACKEND_PID] [--json]
  --blk        speak virtio-blk (e.g. qemu-storage-daemon's vhost-user-blk export); default virtio-scsi
  --queues N   request queues (default 1); --qd N requests in flight per queue (default 1)
  --bs BYTES   request size (default 4096); --seconds S run time (default 5)
  --rw         random (randread, randwrite) or sequential (read, write) requests
  --pid PID    back-end process, for IOPS per back-end CPU-second (from /proc/PID/stat)`;

export interface BenchOptions {
  socket: string;
  blk?: boolean;
  queues?: number;
  qd?: number;
  bs?: number;
  rw?: 'randread' | 'randwrite' | 'read' | 'write';
  seconds?: number;
  lun?: number;
  pid?: number;
}

export interface BenchResult {
  iops: number;
  /** Mean completion latency, microseconds. */
  latencyUs: number;
  ios: number;
  seconds: number;
  kicksPerIo: number;
  callsPerIo: number;
  /** Back-end CPU seconds used during the run (user + system), when a pid was given. */
  backendCpuSeconds?: number;
  iopsPerBackendCore?: number;
  errors: number;
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100; // utime + stime in clock ticks (USER_HZ 100)
}

/** Runs one measurement; resolves when it is done and the connection is closed. */
export async function bench(o: BenchOptions): Promise<BenchResult> {
  const queues = o.queues ?? 1;
  const qd = o.qd ?? 1;
  const bs = o.bs ?? 4096;
  const write = o.rw === 'randwrite' || o.rw === 'write';
  const sequential = o.rw === 'read' || o.rw === 'write';
  const blk = o.blk ?? false;
  const fe = new VhostUserFrontend(o.socket, {
    memory: Math.max(64 << 20, queues * qd * (bs + 8192) * 2),
    features: blk ? bit(Feature.VERSION_1) | bit(Feature.PROTOCOL_FEATURES) | bit(Feature.EVENT_IDX) | bit(Feature.INDIRECT_DESC) : undefined,
  });
  const first = blk ? 0 : VQ.REQUEST0;
  try {
    fe.negotiate(first + queues);
    const ringSize = Math.max(128, 1 << Math.ceil(Math.log2(qd * 4)));
    let capacityBytes: number;
    // The config space as far as the capacity (in sectors).
    if (blk) capacityBytes = Number(fe.getConfig(8).readBigUInt64LE(BlkConfig.CAPACITY)) * SECTOR_SIZE;
    fe.start(ringSize);
    for (const q of fe.queues) q.watch();
    const lun = o.lun ?? 0;
    if (!blk) {
      const s = new ScsiSlot(fe.ram, 8);
      const q = fe.queues[first];
      const run = (cdb: number[], len: number) =>
        new Promise<ReturnType<ScsiSlot['result']>>((resolve) => {
          s.post(q, lun, cdb, len, false, 1n, resolve);
          q.kick();
        });
      await run([0x00, 0, 0, 0, 0, 0], 0); // the power-on unit attention
      const rc = await run([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
      if (rc.status !== 0) throw new Error(`READ CAPACITY failed: status ${rc.status}`);
      capacityBytes = (rc.data.readUInt32BE(0) + 1) * rc.data.readUInt32BE(4);
    }
    const blocks = Math.floor(capacityBytes! / bs);
    if (blocks < 1) throw new Error('device smaller than one request');
    let ios = 0;
    let errors = 0;
    let latencySum = 0;
    let running = true;
    const t0 = performance.now();
    const cpu0 = o.pid ? cpuSeconds(o.pid) : 0;
    let id = 2n;
    let inflight = 0;
    let nextLba = 0;
    const finished = new Promise<void>((resolveAll) => {
      const issue = (q: DriverQueue, slot: ScsiSlot | BlkSlot): void => {
        const lba = sequential ? nextLba++ % blocks : Math.floor(Math.random() * blocks);
        const start = performance.now();
        inflight++;
        const done = (ok: boolean) => {
          inflight--;
          ios++;
          if (!ok) errors++;
          latencySum += performance.now() - start;
          if (running) issue(q, slot);
          else if (inflight === 0) resolveAll();
        };
        if (slot instanceof BlkSlot) {
          slot.post(q, write ? BlkType.OUT : BlkType.IN, (lba * bs) / SECTOR_SIZE, bs, (st) => done(st === BlkStatus.OK));
        } else {
          const sectors = bs / 512;
          const cdb = [write ? 0x8a : 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
          const l = BigInt(lba * sectors);
          for (let i = 0; i < 8; i++) cdb[2 + i] = Number((l >> BigInt(56 - 8 * i)) & 0xffn);
          cdb[10] = (sectors >>> 24) & 0xff;
          cdb[11] = (sectors >>> 16) & 0xff;
          cdb[12] = (sectors >>> 8) & 0xff;
          cdb[13] = sectors & 0xff;
          slot.post(q, lun, cdb, bs, write, id++, (r) => done(r.response === 0 && r.status === 0));
        }
      };
      for (let qi = 0; qi < queues; qi++) {
        const q = fe.queues[first + qi];
        for (let k = 0; k < qd; k++) issue(q, blk ? new BlkSlot(fe.ram, bs) : new ScsiSlot(fe.ram, bs));
        q.kick();
      }
      setTimeout(() => {
        running = false;
        if (inflight === 0) resolveAll();
      }, (o.seconds ?? 5) * 1000);
    });
    await finished;
    const secs = (performance.now() - t0) / 1000;
    const cpu = o.pid ? cpuSeconds(o.pid) - cpu0 : undefined;
    const reqQueues = fe.queues.slice(first);
    const kicks = reqQueues.reduce((a, q) => a + q.kicks, 0);
    const calls = reqQueues.reduce((a, q) => a + q.calls, 0);
    fe.stop();
    return {
      iops: Math.round(ios / secs),
      latencyUs: Math.round((latencySum / Math.max(ios, 1)) * 1000 * 10) / 10,
      ios,
      seconds: Math.round(secs * 100) / 100,
      kicksPerIo: Math.round((kicks / Math.max(ios, 1)) * 100) / 100,
      callsPerIo: Math.round((calls / Math.max(ios, 1)) * 100) / 100,
      backendCpuSeconds: cpu,
      iopsPerBackendCore: cpu ? Math.round(ios / cpu) : undefined,
      errors,
    };
  } finally {
    fe.close();
  }
}

function parse(argv: string[]): BenchOptions & { json: boolean } {
  const o: BenchOptions & { json: boolean } = { socket: '', json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--socket') o.socket = v();
    else if (a === '--blk') o.blk = true;
    else if (a === '--queues') o.queues = Number(v());
    else if (a === '--qd') o.qd = Number(v());
    else if (a === '--bs') o.bs = Number(v());
    else if (a === '--rw') o.rw = v() as BenchOptions['rw'];
    else if (a === '--seconds') o.seconds = Number(v());
    else if (a === '--lun') o.lun = Number(v());
    else if (a === '--pid') o.pid = Number(v());
    else if (a === '--json') o.json = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.socket) throw new Error('--socket is required');
  return o;
}

if (require.main === module) {
  let o;
  try {
    o = parse(process.argv.slice(2));
  } catch (e) {
    console.error(`vhost-frontend: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  bench(o).then(
    (r) => {
      if (o.json) console.log(JSON.stringify(r));
      else {
        console.log(`${o.blk ? 'virtio-blk' : 'virtio-scsi'} ${o.rw ?? 'randread'} bs=${o.bs ?? 4096} qd=${o.qd ?? 1} queues=${o.queues ?? 1}: ` +
          `${r.iops} IOPS, ${r.latencyUs} us mean latency, ${r.kicksPerIo} kicks/IO, ${r.callsPerIo} calls/IO` +
          (r.iopsPerBackendCore ? `, ${r.backendCpuSeconds!.toFixed(2)} back-end CPU s, ${r.iopsPerBackendCore} IOPS per back-end core` : '') +
          (r.errors ? `, ${r.errors} ERRORS` : ''));
      }
      process.exit(r.errors ? 1 : 0);
    },
    (e) => {
      console.error(`vhost-frontend: ${(e as Error).message}`);
      process.exit(1);
    },
  );
}
