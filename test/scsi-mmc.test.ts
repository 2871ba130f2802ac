// The CD/DVD device type (MMC) through the loopback fabric, on ISO images made
// with genisoimage: identification, the disc's structure, block reads, media
// events, eject and insert by the initiator and by the operator.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rig, INITIATOR_B } from './util/loopback-setup';
import { SenseKey } from '../src/core/sense';
import { opticalDriveOf } from '../src/scsi/mmc-drive';
import { assertGood, assertSense, bytes } from './util/scsi-assert';

const TUR = [0, 0, 0, 0, 0, 0];
const read10 = (lba: number, n: number) => [0x28, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, 0, n, 0];
const gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0];
const ssu = (loej: boolean, start: boolean) => [0x1b, 0, 0, 0, (loej ? 2 : 0) | (start ? 1 : 0), 0];

/** An ISO image of a few files; returns its path. */
function iso(dir: string, name: string, files: Record<string, string>): string {
  const src = join(dir, `${name}-src`);
  mkdirSync(src);
  for (const [f, text] of Object.entries(files)) writeFileSync(join(src, f), text);
  const out = join(dir, `${name}.iso`);
  execFileSync('genisoimage', ['-quiet', '-R', '-V', name.toUpperCase(), '-o', out, src]);
  return out;
}

test('a disc: INQUIRY, READ CAPACITY, READ(10), TOC, disc and track information, GET CONFIGURATION', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-mmc-'));
  const image = iso(dir, 'one', { 'a.txt': 'hello disc\n' });
  const blocks = readFileSync(image).length / 2048;
  const r = await rig([{ plugin: 'optical', dev: image } as never]);
  const n = await r.nexus();
  try {
    const inq = await n.command(0, [0x12, 0, 0, 0, 96, 0]);
    assert.deepEqual([inq.data[0], inq.data[1]], [0x05, 0x80], 'CD/DVD, removable');
    assertGood(await n.command(0, TUR));
    const cap = await n.command(0, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(cap.data, bytes((blocks - 1).toString(16).padStart(8, '0'), '00000800'));
    const pvd = await n.command(0, read10(16, 1));
    assertGood(pvd);
    assert.deepEqual(pvd.data, readFileSync(image).subarray(16 * 2048, 17 * 2048));
    assert.equal(pvd.data.toString('ascii', 1, 6), 'CD001');
    assertSense(await n.command(0, read10(blocks, 1)), SenseKey.ILLEGAL_REQUEST, 0x21, 0);
    assertSense(await n.command(0, [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataOut: Buffer.alloc(2048) }), SenseKey.ILLEGAL_REQUEST, 0x20, 0);
    // TOC in LBA and in MSF form (150 frames of lead-in), sessions, raw TOC.
    const end = blocks.toString(16).padStart(8, '0');
    assert.deepEqual((await n.command(0, [0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0])).data, bytes('0012 01 01', '00 14 01 00 00000000', '00 14 aa 00', end));
    const f = blocks + 150;
    const m = [0, Math.floor(f / 4500), Math.floor(f / 75) % 60, f % 75];
    assert.deepEqual((await n.command(0, [0x43, 2, 0, 0, 0, 0, 0, 0, 100, 0])).data, bytes('0012 01 01', '00 14 01 00 00 00 02 00', '00 14 aa 00', m));
    assert.deepEqual((await n.command(0, [0x43, 0, 1, 0, 0, 0, 0, 0, 100, 0])).data, bytes('000a 01 01', '00 14 01 00 00000000'));
    assert.equal((await n.command(0, [0x43, 0, 2, 0, 0, 0, 0, 0, 100, 0])).data.readUInt16BE(0), 2 + 4 * 11);
    assertSense(await n.command(0, [0x43, 0, 0, 0, 0, 0, 2, 0, 100, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 6 });
    const rdi = await n.command(0, [0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0]);
    assert.deepEqual(rdi.data.subarray(0, 8), bytes('0020 0e 01 01 01 01 20'));
    const rti = await n.command(0, [0x52, 1, 0, 0, 0, 1, 0, 0, 48, 0]);
    assert.deepEqual([rti.data[2], rti.data[5], rti.data[6], rti.data.readUInt32BE(24)], [1, 0x04, 0x01, blocks]);
    assertSense(await n.command(0, [0x52, 1, 0, 0, 0, 2, 0, 0, 48, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0);
    // GET CONFIGURATION: the current profile is CD-ROM; one feature alone (RT 2).
    const all = await n.command(0, [0x46, 0, 0, 0, 0, 0, 0, 0x10, 0, 0]);
    assert.equal(all.data.readUInt16BE(6), 0x0008);
    assert.deepEqual(all.data.subarray(8, 20), bytes('0000 03 08', '0010 00 00', '0008 01 00'), 'profile list: DVD-ROM, CD-ROM (current)');
    const rem = await n.command(0, [0x46, 2, 0, 3, 0, 0, 0, 0, 100, 0]);
    assert.deepEqual(rem.data, bytes('0000000c 0000 0008', '0003 03 04 29 000000'));
    const caps = await n.command(0, [0x5a, 0x08, 0x2a, 0, 0, 0, 0, 0, 100, 0]);
    assert.deepEqual(caps.data.subarray(8, 16), bytes('2a 1a 09 00 00 00 29 00'));
    assertGood(await n.command(0, [0xbb, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0]), 'SET CD SPEED');
    assert.deepEqual((await n.command(0, [0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0])).data, bytes({ z: 8 }));
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('media events, eject and load by the initiator, PREVENT ALLOW honoured, the operator changes the disc', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-mmc-'));
  const one = iso(dir, 'one', { 'a.txt': 'one' });
  const two = iso(dir, 'two', { 'b.txt': 'two'.repeat(100_000) });
  const r = await rig([{ plugin: 'optical', dev: one } as never]);
  const n = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  const drive = opticalDriveOf(r.sos[0].lu)!;
  try {
    assert.deepEqual((await n.command(0, gesn)).data, bytes('0006 04 10', '00 02 00 00'), 'no change, medium present');
    assertSense(await n.command(0, [0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 0 });
    assert.deepEqual((await n.command(0, [0x4a, 1, 0, 0, 0x02, 0, 0, 0, 8, 0])).data, bytes('0002 80 10'), 'a class we do not have');
    // The initiator ejects: no medium, tray open, MEDIA REMOVAL reported once.
    assertGood(await n.command(0, ssu(true, false)));
    assertSense(await n.command(0, TUR), SenseKey.NOT_READY, 0x3a, 0);
    assertSense(await n.command(0, read10(16, 1)), SenseKey.NOT_READY, 0x3a, 0);
    assert.deepEqual((await n.command(0, gesn)).data, bytes('0006 04 10', '03 01 00 00'));
    assert.deepEqual((await n.command(0, gesn)).data, bytes('0006 04 10', '00 01 00 00'));
    assert.deepEqual((await n.command(0, [0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0])).data, bytes('00 10', { z: 6 }), 'door open');
    assertGood(await n.command(0, ssu(true, true)));
    assertGood(await n.command(0, TUR));
    assertSense(await b.command(0, TUR), SenseKey.UNIT_ATTENTION, 0x28, 0);
    assert.deepEqual((await n.command(0, gesn)).data, bytes('0006 04 10', '02 02 00 00'), 'NEW MEDIA');
    // Prevention: the initiator's eject and the operator's are refused; the operator's press is an EJECT REQUEST.
    assertGood(await n.command(0, [0x1e, 0, 0, 0, 1, 0]));
    assertSense(await n.command(0, ssu(true, false)), SenseKey.ILLEGAL_REQUEST, 0x53, 0x02);
    await assert.rejects(drive.eject(), /prevented/);
    assert.deepEqual((await n.command(0, gesn)).data, bytes('0006 04 10', '01 02 00 00'), 'EJECT REQUEST');
    await assert.rejects(drive.insert(two), /prevented/);
    // Forced, the operator changes the disc: every nexus hears of it, the new size reads.
    await drive.insert(two, true);
    assertSense(await n.command(0, TUR), SenseKey.UNIT_ATTENTION, 0x28, 0);
    assertSense(await b.command(0, TUR), SenseKey.UNIT_ATTENTION, 0x28, 0);
    const cap = await n.command(0, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(cap.data.readUInt32BE(0), readFileSync(two).length / 2048 - 1);
    assertGood(await n.command(0, [0x1e, 0, 0, 0, 0, 0]));
    await drive.eject();
    assertSense(await n.command(0, TUR), SenseKey.NOT_READY, 0x3a, 0);
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('an empty drive: MEDIUM NOT PRESENT, no current profile, a disc inserted later reads', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-mmc-'));
  const one = iso(dir, 'one', { 'a.txt': 'one' });
  const r = await rig([{ plugin: 'optical' } as never]);
  const n = await r.nexus();
  try {
    assertSense(await n.command(0, TUR), SenseKey.NOT_READY, 0x3a, 0);
    assertSense(await n.command(0, read10(0, 1)), SenseKey.NOT_READY, 0x3a, 0);
    assertSense(await n.command(0, [0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0]), SenseKey.NOT_READY, 0x3a, 0);
    assertSense(await n.command(0, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]), SenseKey.NOT_READY, 0x3a, 0);
    assert.equal((await n.command(0, [0x46, 0, 0, 0, 0, 0, 0, 0x10, 0, 0])).data.readUInt16BE(6), 0);
    await opticalDriveOf(r.sos[0].lu)!.insert(one);
    assertSense(await n.command(0, TUR), SenseKey.UNIT_ATTENTION, 0x28, 0);
    assert.deepEqual((await n.command(0, read10(16, 1))).data, readFileSync(one).subarray(16 * 2048, 17 * 2048));
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});
