// The media changer device type (SMC) through the loopback fabric: a library
// of two drives, four slots and one import/export slot, with exact element
// status data, moves and their sense, and the operator's import/export slot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRoot } from '../app/registry';
import type { StorageObjectSpec } from '../src/model/root';
import { LoopbackNexus, type LoopbackResult } from '../fabrics/loopback/loopback';
import { clearUas, INITIATOR_B } from './util/loopback-setup';
import { SenseKey } from '../src/core/sense';
import { libraryOf } from '../src/scsi/smc-library';
import { tapeDriveOf } from '../src/scsi/ssc-drive';
import { assertGood, assertSense, bytes } from './util/scsi-assert';

const CHANGER = 0;
const DRIVE0 = 1;
const DRIVE1 = 2;

/** A library: LUN 0 the changer, LUNs 1 and 2 its drives. */
async function library(dir: string) {
  const root = createRoot();
  const so = (s: Record<string, unknown>) => root.createStorageObject({ dev: dir, capacity: 4 << 20, ...s } as unknown as StorageObjectSpec);
  // The changer first: it finds its drives when it needs them.
  const changer = await so({ name: 'lib', plugin: 'changer', drives: 'd0,d1', slots: 4, import_export: 1, cartridges: 'AAA001L6,AAA002L6,AAA003L6' });
  const d0 = await so({ name: 'd0', plugin: 'tape' });
  const d1 = await so({ name: 'd1', plugin: 'tape' });
  const target = root.createTarget('loopback', 'naa.5001405000000077');
  const tpg = target.addTpg(1, { generate_node_acls: true, demo_mode_write_protect: false });
  [changer, d0, d1].forEach((s, i) => tpg.addLun(i, s));
  const nexus = async (name = 'naa.5001405aaaaaaaa1') => {
    const n = LoopbackNexus.open(tpg, name);
    await clearUas(n, 3);
    return n;
  };
  return { root, changer, d0, d1, nexus, n: await nexus() };
}

const move = (from: number, to: number) => [0xa5, 0, 0, 0, from >> 8, from & 0xff, to >> 8, to & 0xff, 0, 0, 0, 0];
const res = (type: number, start: number, count: number, voltag = true, dvcid = false) =>
  [0xb8, (voltag ? 0x10 : 0) | type, start >> 8, start & 0xff, count >> 8, count & 0xff, dvcid ? 1 : 0, 0, 0x10, 0, 0, 0];
const TUR = [0, 0, 0, 0, 0, 0];

/** Element address -> [full, barcode, source] from READ ELEMENT STATUS data with volume tags. */
function elements(r: LoopbackResult): Map<number, [boolean, string, number | undefined]> {
  const m = new Map<number, [boolean, string, number | undefined]>();
  const d = r.data;
  for (let p = 8; p < d.length;) {
    const len = d.readUInt16BE(p + 2);
    const n = d.readUIntBE(p + 5, 3);
    for (let o = p + 8; o < p + 8 + n; o += len) {
      m.set(d.readUInt16BE(o), [(d[o + 2] & 1) === 1, d.toString('ascii', o + 12, o + 44).replace(/[\0 ]+$/, ''), d[o + 9] & 0x80 ? d.readUInt16BE(o + 10) : undefined]);
    }
    p += 8 + n;
  }
  return m;
}

test('INQUIRY, mode pages and READ ELEMENT STATUS of a library, byte for byte', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-smc-'));
  const l = await library(dir);
  try {
    const inq = await l.n.command(CHANGER, [0x12, 0, 0, 0, 96, 0]);
    assert.equal(inq.data[0], 0x08, 'medium changer');
    assertGood(await l.n.command(CHANGER, TUR));
    const eaa = await l.n.command(CHANGER, [0x1a, 0x08, 0x1d, 0, 255, 0]);
    assertGood(eaa);
    assert.deepEqual(eaa.data, bytes('17 00 00 00', '1d 12 0000 0001 1000 0004 0010 0001 0100 0002 0000'));
    const caps = await l.n.command(CHANGER, [0x1a, 0x08, 0x1f, 0, 255, 0]);
    assert.deepEqual(caps.data.subarray(4), bytes('1f 12 0e 00 0e0e0e0e', { z: 12 }));
    // Storage slots with volume tags: header, one page header, four 48-byte descriptors.
    const st = await l.n.command(CHANGER, res(2, 0, 100));
    assertGood(st);
    assert.deepEqual(st.data.subarray(0, 16), bytes('1000 0004 00 0000c8', '02 80 0030 00 0000c0'));
    assert.deepEqual(st.data.subarray(16, 64), bytes('1000 09 00 0000 000000 00 0000', { a: 'AAA001L6'.padEnd(32) }, { z: 4 }));
    assert.deepEqual(st.data.subarray(16 + 3 * 48, 16 + 4 * 48), bytes('1003 08 00 0000 000000 00 0000', { z: 36 }), 'slot 4 is empty: no volume tag');
    // Everything, without volume tags: transport, import/export, two drives, four slots.
    const all = await l.n.command(CHANGER, res(0, 0, 100, false));
    assert.deepEqual(all.data.subarray(0, 8), bytes('0000 0008 00', [0, 0, 8 * 4 + 8 * 12]));
    assert.deepEqual([...elements(all).keys()], [0x0000, 0x0010, 0x0100, 0x0101, 0x1000, 0x1001, 0x1002, 0x1003]);
    const ie = await l.n.command(CHANGER, res(3, 0, 1));
    assert.equal(ie.data[16 + 2], 0x3a, 'import/export: IMPEXP, ACCESS, EXENAB, INENAB, empty');
    // Drives with their identifiers (DVCID).
    const dt = await l.n.command(CHANGER, res(4, 0, 2, true, true));
    assert.equal(dt.data.readUInt16BE(8 + 2), 12 + 36 + 20);
    assert.deepEqual(dt.data.subarray(16 + 48, 16 + 68), Buffer.concat([bytes('01 03 00 10'), l.d0.naa]));
    // Past every element: INVALID ELEMENT ADDRESS; a reserved element type: INVALID FIELD IN CDB.
    assertSense(await l.n.command(CHANGER, res(0, 0x2000, 1)), SenseKey.ILLEGAL_REQUEST, 0x21, 0x01);
    assertSense(await l.n.command(CHANGER, res(5, 0, 1)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 3 });
  } finally {
    await l.root.close();
    rmSync(dir, { recursive: true });
  }
});

test('MOVE MEDIUM between slots and drives: the drive loads it; full, empty and unknown elements; prevention', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-smc-'));
  const l = await library(dir);
  const b = await l.nexus(INITIATOR_B);
  try {
    assertSense(await l.n.command(DRIVE0, TUR), SenseKey.NOT_READY, 0x3a, 0);
    assertGood(await l.n.command(CHANGER, move(0x1000, 0x0100)));
    // The drive has it loaded, and says so to every nexus.
    assertSense(await b.command(DRIVE0, TUR), SenseKey.UNIT_ATTENTION, 0x28, 0);
    assertGood(await b.command(DRIVE0, TUR));
    assert.equal(tapeDriveOf(l.d0.lu)!.barcode, 'AAA001L6');
    let e = elements(await l.n.command(CHANGER, res(0, 0, 100)));
    assert.deepEqual(e.get(0x0100), [true, 'AAA001L6', 0x1000], 'the drive is full, from slot 1');
    assert.deepEqual(e.get(0x1000), [false, '', undefined]);
    // Moves to a full element, from an empty one, from and to no element.
    assertSense(await l.n.command(CHANGER, move(0x1001, 0x0100)), SenseKey.ILLEGAL_REQUEST, 0x3b, 0x0d);
    assertSense(await l.n.command(CHANGER, move(0x1000, 0x1003)), SenseKey.ILLEGAL_REQUEST, 0x3b, 0x0e);
    assertSense(await l.n.command(CHANGER, move(0x1001, 0x1004)), SenseKey.ILLEGAL_REQUEST, 0x21, 0x01);
    assertSense(await l.n.command(CHANGER, move(0x0000, 0x1003)), SenseKey.ILLEGAL_REQUEST, 0x21, 0x01, undefined);
    // A drive an initiator keeps locked does not give up its cartridge.
    assertSense(await l.n.command(DRIVE0, TUR), SenseKey.UNIT_ATTENTION, 0x28, 0);
    assertGood(await l.n.command(DRIVE0, [0x1e, 0, 0, 0, 1, 0]));
    assertSense(await l.n.command(CHANGER, move(0x0100, 0x1003)), SenseKey.ILLEGAL_REQUEST, 0x53, 0x02);
    assertGood(await l.n.command(DRIVE0, [0x1e, 0, 0, 0, 0, 0]));
    // Written in the drive, back to slot 4, then into the other drive: the data went with it.
    assertGood(await l.n.command(DRIVE0, [0x0a, 0, 0, 0, 5, 0], { dataOut: Buffer.from('hello') }));
    assertGood(await l.n.command(CHANGER, move(0x0100, 0x1003)));
    assertSense(await l.n.command(DRIVE0, TUR), SenseKey.NOT_READY, 0x3a, 0);
    assertGood(await l.n.command(CHANGER, move(0x1003, 0x0101)));
    assertSense(await l.n.command(DRIVE1, TUR), SenseKey.UNIT_ATTENTION, 0x28, 0);
    const r = await l.n.command(DRIVE1, [0x08, 0, 0, 0, 5, 0]);
    assert.deepEqual(r.data, Buffer.from('hello'));
    e = elements(await l.n.command(CHANGER, res(0, 0, 100)));
    assert.deepEqual(e.get(0x0101), [true, 'AAA001L6', 0x1003], 'the source is the last slot it left');
    // The state file follows.
    const state = JSON.parse(readFileSync(join(dir, 'changer-lib.json'), 'utf8'));
    assert.deepEqual(state.drives, { d0: null, d1: 'AAA001L6' });
    assert.deepEqual(state.slots, [null, 'AAA002L6', 'AAA003L6', null]);
    // INITIALIZE ELEMENT STATUS (WITH RANGE), POSITION TO ELEMENT.
    assertGood(await l.n.command(CHANGER, [0x07, 0, 0, 0, 0, 0]));
    assertGood(await l.n.command(CHANGER, [0x37, 1, 0x10, 0x00, 0, 0, 0, 4, 0, 0]));
    assertSense(await l.n.command(CHANGER, [0x37, 1, 0x20, 0x00, 0, 0, 0, 4, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x21, 0x01);
    assertGood(await l.n.command(CHANGER, [0x2b, 0, 0, 0, 0x10, 0x01, 0, 0, 0, 0]));
    assertSense(await l.n.command(CHANGER, [0x2b, 0, 0, 0, 0x30, 0x01, 0, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x21, 0x01);
  } finally {
    await l.root.close();
    rmSync(dir, { recursive: true });
  }
});

test('the operator exports and imports through the import/export slot: UNIT ATTENTION, locked while prevented; state survives a restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-smc-'));
  let l = await library(dir);
  try {
    const lib = libraryOf(l.changer.lu)!;
    assertGood(await l.n.command(CHANGER, move(0x1002, 0x0010)));
    assertGood(await l.n.command(CHANGER, [0x1e, 0, 0, 0, 1, 0]));
    assert.throws(() => lib.operate(), /locked/);
    assertGood(await l.n.command(CHANGER, [0x1e, 0, 0, 0, 0, 0]));
    await lib.shelf.create('NEW001L6', 1 << 20);
    assert.deepEqual(lib.operate(['NEW001L6']), { removed: ['AAA003L6'], inserted: ['NEW001L6'] });
    assertSense(await l.n.command(CHANGER, TUR), SenseKey.UNIT_ATTENTION, 0x28, 0x01);
    const e = elements(await l.n.command(CHANGER, res(3, 0, 1)));
    assert.deepEqual(e.get(0x0010), [true, 'NEW001L6', undefined]);
    assert.ok(existsSync(join(dir, 'AAA003L6.tape')), 'an exported cartridge stays on the shelf');
    assert.throws(() => lib.operate(['AAA001L6']), /in the library already/);
    assertGood(await l.n.command(CHANGER, move(0x0010, 0x1002)));
    assertGood(await l.n.command(CHANGER, move(0x1000, 0x0100)));
    await l.root.close();
    // A restart: slots from the state file, the drive gets its cartridge back.
    l = await library(dir);
    const after = elements(await l.n.command(CHANGER, res(0, 0, 100)));
    assert.deepEqual(after.get(0x1002), [true, 'NEW001L6', 0x0010]);
    assert.deepEqual(after.get(0x0100), [true, 'AAA001L6', 0x1000]);
    assert.equal(tapeDriveOf(l.d0.lu)!.barcode, 'AAA001L6');
  } finally {
    await l.root.close();
    rmSync(dir, { recursive: true });
  }
});
