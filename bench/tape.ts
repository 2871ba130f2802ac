// A tape drive over iSCSI on 127.0.0.1: tsiod's emulated SSC (a cartridge
// file on /dev/shm) against tgtd's (a tgtimg tape on /dev/shm). One client
// (this process, the test suite's iSCSI initiator) writes a cartridge from the
// beginning in 256 KiB variable blocks with WRITE(6), one command at a time as
// the st driver does, then rewinds and reads it back with READ(6). Rounds
// alternate between the targets; each reports MB/s and MB per CPU-second of
// the target process.

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startTsiod, freePort } from '../test/util/tsiod';
import { RawInitiator } from '../test/util/iscsi-initiator';
import { startTgtd, tgtTape } from '../test/util/tgtd';
import { Scenario, machineLine, numOpt, stats, table } from './common';
import { cpuSeconds, requireTools } from './peers';

const IQN = 'iqn.2026-12.org.tsio:bench-tape';
const BLOCK = 256 << 10;

interface Target {
  name: string;
  port: number;
  pid: number;
  lun: number;
}

interface Pass {
  mbps: number;
  mbPerCpu: number;
}

/** A session, and how much data it may send unasked and per PDU (as negotiated). */
interface Session {
  c: RawInitiator;
  /** Write options within what the target accepted. */
  out: { immediate: number; unsolicited: number; segment: number };
}

async function session(t: Target): Promise<Session> {
  const c = await RawInitiator.connect(t.port);
  c.socket.setNoDelay(true); // one command at a time: Nagle would hold each R2T answer back
  const keys = await c.login(IQN, {
    MaxRecvDataSegmentLength: '262144', MaxBurstLength: '262144', FirstBurstLength: '262144', InitialR2T: 'No', ImmediateData: 'Yes',
  });
  const num = (k: string, d: number) => Number(keys.get(k) ?? d);
  const segment = num('MaxRecvDataSegmentLength', 8192);
  const first = num('FirstBurstLength', 65536);
  const immediate = keys.get('ImmediateData') === 'Yes' ? Math.min(first, segment) : 0;
  const unsolicited = keys.get('InitialR2T') === 'No' ? first : immediate;
  return { c, out: { immediate, unsolicited, segment } };
}

async function ok(s: Session, lun: number, cdb: number[], opts: { read?: number; write?: Buffer } = {}): Promise<Buffer> {
  const r = await s.c.command(cdb, { lun, ...s.out, ...opts });
  // Status 0, or a CHECK CONDITION carrying NO SENSE (early warning near the cartridge's end is no error).
  if (r.status !== 0 && !(r.status === 2 && (r.sense[2] & 0x0f) === 0)) {
    throw new Error(`${cdb[0].toString(16)}: status ${r.status} sense ${r.sense.toString('hex')}`);
  }
  return r.data;
}

const u24 = (n: number) => [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];

/** Writes `blocks` blocks from the beginning, then reads them back; MB/s and MB per target CPU-second of each. */
async function pass(t: Target, blocks: number): Promise<{ write: Pass; read: Pass }> {
  const c = await session(t);
  try {
    // A unit attention or two after login, and the drive may still be loading.
    for (let i = 0; i < 5; i++) if ((await c.c.command([0, 0, 0, 0, 0, 0], { lun: t.lun })).status === 0) break;
    await ok(c, t.lun, [0x01, 0, 0, 0, 0, 0]);
    const data = Buffer.alloc(BLOCK, 0x5a);
    const mb = (blocks * BLOCK) / 1e6;
    const measure = async (run: () => Promise<void>): Promise<Pass> => {
      const cpu0 = cpuSeconds(t.pid);
      const t0 = performance.now();
      await run();
      const s = (performance.now() - t0) / 1000;
      return { mbps: mb / s, mbPerCpu: mb / Math.max(1e-6, cpuSeconds(t.pid) - cpu0) };
    };
    const write = await measure(async () => {
      for (let i = 0; i < blocks; i++) await ok(c, t.lun, [0x0a, 0, ...u24(BLOCK), 0], { write: data });
      await ok(c, t.lun, [0x10, 0, 0, 0, 1, 0]); // a filemark: what flushes a drive's buffer
    });
    await ok(c, t.lun, [0x01, 0, 0, 0, 0, 0]);
    const read = await measure(async () => {
      for (let i = 0; i < blocks; i++) {
        const d = await ok(c, t.lun, [0x08, 0, ...u24(BLOCK), 0], { read: BLOCK });
        if (d.length !== BLOCK) throw new Error(`read ${d.length} bytes of block ${i}`);
      }
    });
    return { write, read };
  } finally {
    c.c.close();
  }
}

export const tapeScenario: Scenario = {
  name: 'tape',
  description: 'a tape drive over iSCSI: tsiod SSC vs tgtd ssc, sequential 256 KiB WRITE(6) then READ(6), cartridges on /dev/shm',
  byDefault: false,
  async run(args) {
    requireTools([['tgtd', 'tgt'], ['tgtadm', 'tgt'], ['tgtimg', 'tgt']]);
    const rounds = numOpt(args, '--rounds', 3);
    const mib = numOpt(args, '--mib', 256);
    const blocks = Math.floor((mib << 20) / BLOCK);
    const capacityMb = mib + 64;
    const dir = mkdtempSync('/dev/shm/tsio-bench-tape-');
    mkdirSync(join(dir, 'tsio'));
    mkdirSync(join(dir, 'tgt'));
    const tsio = await startTsiod((port) => `storage_objects:
  - { name: t0, plugin: tape, dev: ${join(dir, 'tsio')}, cartridge: BENCH1, capacity: ${capacityMb}MiB }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, demo_mode_write_protect: false, authentication: false }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/tape/t0 } ]
`);
    const tgtPort = await freePort();
    const tgt = await startTgtd(tgtPort, IQN);
    try {
      tgt.adm(['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '1', '--device-type', 'tape', '--bstype', 'ssc', '-b', tgtTape(join(dir, 'tgt'), 'BENCH1', capacityMb)]);
      tgt.adm(['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL']);
      const targets: Target[] = [
        { name: 'tsiod', port: tsio.port, pid: tsio.proc.pid!, lun: 0 },
        { name: 'tgtd', port: tgtPort, pid: tgt.pid, lun: 1 },
      ];
      const results = new Map<string, { write: Pass[]; read: Pass[] }>(targets.map((t) => [t.name, { write: [], read: [] }]));
      await pass(targets[0], 8); // warm-up of both, not counted
      await pass(targets[1], 8);
      for (let r = 0; r < rounds; r++) {
        for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
          const p = await pass(t, blocks);
          results.get(t.name)!.write.push(p.write);
          results.get(t.name)!.read.push(p.read);
        }
      }
      const rows: string[][] = [];
      for (const dirn of ['write', 'read'] as const) {
        const m = (name: string, f: (p: Pass) => number) => stats(results.get(name)![dirn].map(f)).median;
        const row = (name: string) => [`${dirn}-256k-seq`, name, m(name, (p) => p.mbps).toFixed(0), m(name, (p) => p.mbPerCpu).toFixed(0)];
        rows.push(row('tsiod'), row('tgtd'));
        rows.push([`${dirn}-256k-seq`, 'tsiod/tgtd', (m('tsiod', (p) => p.mbps) / m('tgtd', (p) => p.mbps)).toFixed(2),
          (m('tsiod', (p) => p.mbPerCpu) / m('tgtd', (p) => p.mbPerCpu)).toFixed(2)]);
      }
      console.log(machineLine());
      console.log(`${mib} MiB a pass, ${rounds} rounds, medians`);
      console.log(table(['case', 'target', 'MB/s', 'MB per target CPU-s'], rows));
    } finally {
      tgt.stop();
      await tsio.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
