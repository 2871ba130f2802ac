// Runs inside a test guest (see test/backstore-pscsi.test.ts): finds the
// guest's SCSI devices in sysfs (scsi_debug disk, a tape, a CD), exports
// them as pscsi storage objects through a loopback target, drives each with
// CDBs and prints one JSON line of findings for the host test to assert on.
// Each section catches its own failure so that one broken device does not
// hide what the others did.

import fs from 'node:fs';
import path from 'node:path';

import { INITIATOR_B, clearUas, rig, type Rig } from './loopback-setup';
import { LoopbackNexus, type LoopbackResult } from '../../fabrics/loopback/loopback';
import { sgIo } from '../../native';
import { DataDir } from '../../src/core/opcodes';

export const RESULT_MARK = 'PSCSI-RESULT';

interface ScsiNode {
  sg: string;
  block?: string;
  type: number;
  vendor: string;
  model: string;
}

function scsiNodes(): ScsiNode[] {
  const base = '/sys/class/scsi_generic';
  return fs.readdirSync(base).map((sg) => {
    const dev = path.join(base, sg, 'device');
    const read = (f: string) => fs.readFileSync(path.join(dev, f), 'utf8').trim();
    let block: string | undefined;
    try {
      const b = fs.readdirSync(path.join(dev, 'block'));
      if (b.length) block = `/dev/${b[0]}`;
    } catch {
      /* tapes and sg-only devices have no block node */
    }
    return { sg: `/dev/${sg}`, block, type: Number(read('type')), vendor: read('vendor'), model: read('model') };
  });
}

/** What a command came back with, in JSON-friendly form. */
function brief(r: LoopbackResult): Record<string, unknown> {
  return {
    status: r.status,
    senseKey: r.senseKey,
    asc: r.asc,
    ascq: r.ascq,
    senseFormat: r.sense?.[0],
    senseHex: r.sense?.toString('hex'),
    length: r.data.length,
    residual: r.residual,
  };
}

const ascii = (b: Buffer, from: number, to: number): string => b.subarray(from, to).toString('latin1').trim();

async function section(out: Record<string, unknown>, name: string, fn: (o: Record<string, unknown>) => Promise<void>): Promise<void> {
  const o: Record<string, unknown> = {};
  out[name] = o;
  try {
    await fn(o);
  } catch (e) {
    o.error = (e as Error).stack ?? String(e);
  }
}

async function direct(dev: string, cdb: number[], length: number): Promise<Buffer> {
  const fd = fs.openSync(dev, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  try {
    const b = Buffer.alloc(length);
    const r = await sgIo(fd, Buffer.from(cdb), DataDir.IN, [b], length, 10_000);
    return b.subarray(0, length - r.resid);
  } finally {
    fs.closeSync(fd);
  }
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

async function disk(n: LoopbackNexus, rg: Rig, node: ScsiNode, o: Record<string, unknown>): Promise<void> {
  const inq = await n.command(0, [0x12, 0, 0, 0, 96, 0]);
  o.inquiry = { ...brief(inq), pdt: inq.data[0] & 0x1f, vendor: ascii(inq.data, 8, 16), product: ascii(inq.data, 16, 32) };
  o.inquirySameAsDevice = inq.data.equals(await direct(node.sg, [0x12, 0, 0, 0, 96, 0], 96));
  const vpd = await n.command(0, [0x12, 1, 0x83, 0, 255, 0]);
  o.vpd83SameAsDevice = vpd.data.equals(await direct(node.sg, [0x12, 1, 0x83, 0, 255, 0], 255));

  const cap = await n.command(0, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  o.readCapacity = { ...brief(cap), lastLba: cap.data.readUInt32BE(0), blockSize: cap.data.readUInt32BE(4) };

  // 8 blocks at LBA 100, from and into multi-segment buffers (sg_iovec path).
  const data = pattern(4096, 1);
  const w = await n.command(0, [0x2a, 0, 0, 0, 0, 100, 0, 0, 8, 0], {
    dataOut: [data.subarray(0, 1000), data.subarray(1000, 3096), data.subarray(3096)],
  });
  o.write = brief(w);
  const segs = [Buffer.alloc(700), Buffer.alloc(3000), Buffer.alloc(396)];
  const r = await n.command(0, [0x28, 0, 0, 0, 0, 100, 0, 0, 8, 0], { dataIn: segs });
  o.read = { ...brief(r), equal: Buffer.concat(segs).equals(data) && r.data.equals(data) };
  // 1 MiB in 64 segments each way: a long sg_iovec list, beyond sg's reserved buffer.
  const big = pattern(1 << 20, 9);
  const bigOut = Array.from({ length: 64 }, (_, i) => big.subarray(i << 14, (i + 1) << 14));
  o.writeBig = brief(await n.command(0, [0x2a, 0, 0, 0, 0x10, 0, 0, 0x08, 0, 0], { dataOut: bigOut }));
  const bigIn = Array.from({ length: 64 }, () => Buffer.alloc(1 << 14));
  const rBig = await n.command(0, [0x28, 0, 0, 0, 0x10, 0, 0, 0x08, 0, 0], { dataIn: bigIn });
  o.readBig = { ...brief(rBig), equal: Buffer.concat(bigIn).equals(big) };
  // LUN 1 is the same disk through its block node: SG_IO there sees the same blocks.
  const r1 = await n.command(1, [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 8, 0, 0]);
  o.readViaBlockNode = { ...brief(r1), equal: r1.data.equals(data) };
  // 32 MiB in one command: more than the kernel maps for SG_IO, refused before the device sees it.
  const huge = await n.command(1, [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
  o.readTooLong = { ...brief(huge), field: huge.field };

  // The device's own errors, in its own (descriptor) format: our LU would use fixed.
  const last = cap.data.readUInt32BE(0);
  const beyond = Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
  beyond.writeUInt32BE(last + 1, 2);
  o.outOfRange = brief(await n.command(0, beyond));
  o.unknownOpcode = brief(await n.command(0, [0xd9, 0, 0, 0, 0, 0]));

  const luns = await n.command(0, [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
  o.reportLuns = { ...brief(luns), count: luns.data.length >= 4 ? luns.data.readUInt32BE(0) / 8 : -1 };

  // The same disk behind a write-protected mapping: we refuse writes, and MODE SENSE shows WP.
  const ms = await n.command(0, [0x1a, 0, 0x3f, 0, 255, 0]);
  o.modeSense = { ...brief(ms), wp: (ms.data[2] & 0x80) !== 0 };
  const tpg = rg.root.createTarget('loopback', 'naa.5001405000000098')
    .addTpg(1, { generate_node_acls: true, demo_mode_write_protect: true });
  tpg.addLun(0, rg.sos[0]);
  const ro = LoopbackNexus.open(tpg, INITIATOR_B);
  try {
    await clearUas(ro, 1);
    const msRo = await ro.command(0, [0x1a, 0, 0x3f, 0, 255, 0]);
    o.modeSenseWriteProtected = { ...brief(msRo), wp: (msRo.data[2] & 0x80) !== 0 };
    o.writeWriteProtected = brief(await ro.command(0, [0x2a, 0, 0, 0, 0, 100, 0, 0, 1, 0], { dataOut: Buffer.alloc(512) }));
  } finally {
    await ro.close();
  }
}

/** SSC: WRITE(6) variable blocks, filemarks, REWIND, READ, SPACE, READ POSITION, fixed blocks after MODE SELECT. */
async function tape(n: LoopbackNexus, lun: number, rg: Rig, o: Record<string, unknown>): Promise<void> {
  const cmd = (cdb: number[], opts = {}) => n.command(lun, cdb, opts);
  const inq = await cmd([0x12, 0, 0, 0, 96, 0]);
  o.inquiry = { ...brief(inq), pdt: inq.data[0] & 0x1f, vendor: ascii(inq.data, 8, 16), product: ascii(inq.data, 16, 32) };
  o.rewind = brief(await cmd([0x01, 0, 0, 0, 0, 0]));
  // MODE SELECT(6): a block descriptor with block length 0 selects variable blocks.
  const variable = Buffer.from([0, 0, 0x10, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
  o.modeSelectVariable = brief(await cmd([0x15, 0x10, 0, 0, variable.length, 0], { dataOut: variable }));
  const a = pattern(100, 2);
  const b = pattern(300, 3);
  const c = pattern(50, 4);
  const write6 = (buf: Buffer) => cmd([0x0a, 0, 0, buf.length >> 8, buf.length & 0xff, 0], { dataOut: buf });
  o.writeA = brief(await write6(a));
  o.writeB = brief(await write6(b));
  o.filemark1 = brief(await cmd([0x10, 0, 0, 0, 1, 0]));
  o.writeC = brief(await write6(c));
  o.filemark2 = brief(await cmd([0x10, 0, 0, 0, 1, 0]));
  // tgtd's READ POSITION answers zeros: what matters here is that its 20 bytes come through.
  o.readPosition = brief(await cmd([0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  o.rewind2 = brief(await cmd([0x01, 0, 0, 0, 0, 0]));
  const read6 = (len: number) => cmd([0x08, 0, len >> 16, (len >> 8) & 0xff, len & 0xff, 0]);
  const ra = await read6(100);
  o.readA = { ...brief(ra), equal: ra.data.equals(a) };
  // Asking 400 for a 300-byte block: CHECK CONDITION with ILI and the 300 bytes.
  const rb = await read6(400);
  o.readBLong = {
    ...brief(rb), ili: rb.sense ? (rb.sense[2] & 0x20) !== 0 : false, info: rb.info?.toString(),
  };
  const fm = await read6(100);
  o.readFilemark = { ...brief(fm), filemark: fm.sense ? (fm.sense[2] & 0x80) !== 0 : false };
  o.rewind3 = brief(await cmd([0x01, 0, 0, 0, 0, 0]));
  o.spaceFilemark = brief(await cmd([0x11, 0x01, 0, 0, 1, 0]));
  const rc = await read6(50);
  o.readC = { ...brief(rc), equal: rc.data.equals(c) };

  // Fixed 512-byte blocks: MODE SELECT sets the length fixed READ/WRITE(6) transfers are sized by.
  const fixed = Buffer.from([0, 0, 0x10, 8, 0, 0, 0, 0, 0, 0, 0x02, 0x00]);
  o.modeSelectFixed = brief(await cmd([0x15, 0x10, 0, 0, fixed.length, 0], { dataOut: fixed }));
  o.tapeBlockLength = rg.sos[lun].backstore.passthrough?.tapeBlockLength;
  const ms = await cmd([0x1a, 0, 0, 0, 12, 0]);
  o.modeSenseBlockLength = ms.data.length >= 12 ? (ms.data[9] << 16) | (ms.data[10] << 8) | ms.data[11] : -1;
  o.spaceEnd = brief(await cmd([0x11, 0x01, 0, 0, 1, 0])); // past the second filemark
  const d = pattern(1024, 5);
  o.writeFixed = brief(await cmd([0x0a, 0x01, 0, 0, 2, 0], { dataOut: d }));
  o.rewind4 = brief(await cmd([0x01, 0, 0, 0, 0, 0]));
  o.spaceTwo = brief(await cmd([0x11, 0x01, 0, 0, 2, 0]));
  const rd = await cmd([0x08, 0x01, 0, 0, 2, 0]);
  o.readFixed = { ...brief(rd), equal: rd.data.equals(d) };
  o.unload = brief(await cmd([0x1b, 0, 0, 0, 0x00, 0]));
  o.load = brief(await cmd([0x1b, 0, 0, 0, 0x01, 0]));
  // An opcode tgtd's tape does not serve: its own ILLEGAL REQUEST comes back.
  o.unsupported = brief(await cmd([0x44, 0, 0, 0, 0, 0, 0, 0, 64, 0]));
}

/** MMC: READ TOC, READ(10)/(12) of the ISO's primary volume descriptor, configuration and status, eject. */
async function cd(n: LoopbackNexus, lun: number, o: Record<string, unknown>): Promise<void> {
  const cmd = (cdb: number[]) => n.command(lun, cdb);
  const inq = await cmd([0x12, 0, 0, 0, 96, 0]);
  o.inquiry = { ...brief(inq), pdt: inq.data[0] & 0x1f, vendor: ascii(inq.data, 8, 16), product: ascii(inq.data, 16, 32) };
  let tur = await cmd([0, 0, 0, 0, 0, 0]);
  if (tur.senseKey === 6) tur = await cmd([0, 0, 0, 0, 0, 0]); // the medium's own unit attention, once
  o.tur = brief(tur);
  const cap = await cmd([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  o.readCapacity = { ...brief(cap), lastLba: cap.data.readUInt32BE(0), blockSize: cap.data.readUInt32BE(4) };
  const toc = await cmd([0x43, 0, 0, 0, 0, 0, 0, 0x03, 0x24, 0]);
  o.toc = {
    ...brief(toc),
    dataLength: toc.data.readUInt16BE(0),
    firstTrack: toc.data[2],
    lastTrack: toc.data[3],
    track1Control: toc.data[5] & 0x0f,
    track1Start: toc.data.readUInt32BE(8),
    leadOutTrack: toc.data[14],
    leadOutStart: toc.data.readUInt32BE(16),
  };
  const pvd = await cmd([0x28, 0, 0, 0, 0, 16, 0, 0, 1, 0]);
  o.read10 = { ...brief(pvd), type: pvd.data[0], id: ascii(pvd.data, 1, 6), volume: ascii(pvd.data, 40, 72) };
  const pvd12 = await cmd([0xa8, 0, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0]);
  o.read12 = { ...brief(pvd12), same: pvd12.data.equals(pvd.data) };
  const conf = await cmd([0x46, 0x02, 0, 0, 0, 0, 0, 0x01, 0x00, 0]);
  o.getConfiguration = { ...brief(conf), currentProfile: conf.data.readUInt16BE(6) };
  const ev = await cmd([0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0]);
  o.eventStatus = { ...brief(ev), notificationClass: ev.data[2] & 0x07 };
  const di = await cmd([0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0]);
  o.discInformation = { ...brief(di), discStatus: di.data[2] & 0x03 };
  const mech = await cmd([0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0]);
  o.mechanismStatus = brief(mech);
  o.eject = brief(await cmd([0x1b, 0, 0, 0, 0x02, 0]));
  o.turEjected = brief(await cmd([0, 0, 0, 0, 0, 0]));
  // Back in, for the kernel initiator that mounts the disc next.
  o.load = brief(await cmd([0x1b, 0, 0, 0, 0x03, 0]));
}

async function main(): Promise<void> {
  const out: Record<string, unknown> = {};
  const nodes = scsiNodes();
  out.nodes = nodes;
  const dk = nodes.find((x) => x.model === 'scsi_debug' && x.type === 0);
  const tp = nodes.find((x) => x.type === 1);
  const cdrom = nodes.find((x) => x.type === 5);
  if (!dk || !dk.block || !tp || !cdrom || !cdrom.block) throw new Error(`devices missing: ${JSON.stringify(nodes)}`);
  const t0 = Date.now();
  const rg = await rig([
    { plugin: 'pscsi', dev: dk.sg },
    { plugin: 'pscsi', dev: dk.block },
    { plugin: 'pscsi', dev: tp.sg },
    { plugin: 'pscsi', dev: cdrom.block },
  ]);
  try {
    out.deviceTypes = rg.sos.map((so) => so.lu.deviceType);
    const n = await rg.nexus();
    await section(out, 'disk', (o) => disk(n, rg, dk, o));
    await section(out, 'tape', (o) => tape(n, 2, rg, o));
    await section(out, 'cd', (o) => cd(n, 3, o));
    await n.close();
  } finally {
    await rg.close();
  }
  out.ms = Date.now() - t0;
  console.log(`${RESULT_MARK} ${JSON.stringify(out)}`);
}

// Only when the guest asks: `node --test dist/test/` also loads this file, on the host.
if (require.main === module && process.argv[2] === '--run') {
  main().catch((e) => {
    console.log(`${RESULT_MARK} ${JSON.stringify({ fatal: (e as Error).stack ?? String(e) })}`);
    process.exitCode = 1;
  });
}
