// MODE SENSE and MODE SELECT through the loopback fabric: every page under
// every page control, byte for byte; block descriptors; changes honoured and
// announced to the other nexuses; every parameter list error with its pointer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rig, clearUas, INITIATOR_B, INITIATOR_C } from './util/loopback-setup';
import { assertGood, assertSense, bytes } from './util/scsi-assert';
import { LoopbackNexus } from '../fabrics/loopback/loopback';
import { NodeAcl } from '../src/model/target';
import { SenseKey } from '../src/core/sense';

const sense6 = (page: number, pc = 0, dbd = false, subpage = 0, alloc = 255) => [0x1a, dbd ? 0x08 : 0, (pc << 6) | page, subpage, alloc, 0];
const sense10 = (page: number, pc = 0, flags = 0, alloc = 1024) => [0x5a, flags, (pc << 6) | page, 0, 0, 0, 0, alloc >> 8, alloc & 0xff, 0];
const select6 = (data: Buffer, cdb1 = 0x10) => [0x15, cdb1, 0, 0, data.length, 0];
const select10 = (data: Buffer, cdb1 = 0x10) => [0x55, cdb1, 0, 0, 0, 0, 0, data.length >> 8, data.length & 0xff, 0];

// 64 MiB of 512-byte blocks.
const SHORT_BD = '00020000 00 000200';
const LONG_BD = '0000000000020000 00000000 00000200';
const P01 = '01 0a 00000000 00000000 0000';
const P08 = (b2 = '00') => `08 12 ${b2} 00 0000 0000 0000 0000 20 00 0000 0000 0000`;
const P0A = (b2 = '02', b3 = '10', b4 = '00', b5 = '40') => `0a 0a ${b2} ${b3} ${b4} ${b5} 0000 ffff 001e`;
const P1C = (b2 = '08', b3 = '00') => `1c 0a ${b2} ${b3} 00000000 00000000`;
const ALL_CURRENT = [P01, P08(), P0A(), P1C()].join(' ');

test('MODE SENSE(6) and (10): all pages, current values, short and long block descriptors', async () => {
  const r = await rig();
  try {
    const n = await r.nexus();
    const six = await n.command(0, sense6(0x3f));
    assertGood(six);
    assert.deepEqual(six.data, bytes('43 00 10 08', SHORT_BD, ALL_CURRENT)); // DPOFUA: emulate_fua_write
    const ten = await n.command(0, sense10(0x3f));
    assertGood(ten);
    assert.deepEqual(ten.data, bytes('0046 00 10 00 00 0008', SHORT_BD, ALL_CURRENT));
    const long = await n.command(0, sense10(0x3f, 0, 0x10));
    assertGood(long);
    assert.deepEqual(long.data, bytes('004e 00 10 01 00 0010', LONG_BD, ALL_CURRENT));
    const dbd = await n.command(0, sense10(0x3f, 0, 0x18));
    assert.deepEqual(dbd.data, bytes('003e 00 10 00 00 0000', ALL_CURRENT));
    // One page at a time, with and without the block descriptor.
    for (const [page, hex] of [[0x01, P01], [0x08, P08()], [0x0a, P0A()], [0x1c, P1C()]] as const) {
      const one = await n.command(0, sense6(page, 0, true));
      assertGood(one);
      const body = bytes(hex);
      assert.deepEqual(one.data, Buffer.concat([bytes([body.length + 3], '00 10 00'), body]), `page ${page}`);
    }
    // Subpage FFh: all subpages of the page, which is its subpage 0 here.
    assert.deepEqual((await n.command(0, sense6(0x08, 0, true, 0xff))).data, bytes('17 00 10 00', P08()));
    assert.deepEqual((await n.command(0, sense6(0x3f, 0, true, 0xff))).data, bytes('3b 00 10 00', ALL_CURRENT));
    // Truncated by the allocation length.
    const cut = await n.command(0, sense6(0x3f, 0, false, 0, 10));
    assert.deepEqual(cut.data, six.data.subarray(0, 10));
  } finally {
    await r.close();
  }
});

test('MODE SENSE page control: changeable masks, defaults, saved refused; bad page and subpage', async () => {
  const r = await rig();
  try {
    const n = await r.nexus();
    const ch = await n.command(0, sense6(0x3f, 1));
    assertGood(ch);
    assert.deepEqual(ch.data, bytes('43 00 10 08', { z: 8 },
      '01 0a 00000000 00000000 0000',
      '08 12 05 00 0000 0000 0000 0000 00 00 0000 0000 0000',
      '0a 0a 04 f0 08 40 0000 0000 0000',
      '1c 0a 08 0f 00000000 00000000'));
    const def = await n.command(0, sense6(0x3f, 2));
    assertGood(def);
    assert.deepEqual(def.data, bytes('43 00 10 08', SHORT_BD, ALL_CURRENT));
    assertSense(await n.command(0, sense6(0x3f, 3)), SenseKey.ILLEGAL_REQUEST, 0x39, 0, { inCdb: true, byte: 2, bit: 7 });
    assertSense(await n.command(0, sense6(0x02)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2, bit: 5 });
    assertSense(await n.command(0, sense6(0x0a, 0, false, 0x01)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 3 });
  } finally {
    await r.close();
  }
});

test('MODE SENSE header WP: write-protected mapping and read-only unit', async () => {
  const r = await rig([{}, { attributes: { readonly: true, emulate_fua_write: false } }]);
  try {
    const acl = new NodeAcl(r.tpg, INITIATOR_C);
    acl.mapped.set(0, { index: 0, tpgLun: 0, writeProtect: true });
    acl.mapped.set(1, { index: 1, tpgLun: 1, writeProtect: false });
    r.tpg.acls.set(INITIATOR_C, acl);
    const c = LoopbackNexus.open(r.tpg, INITIATOR_C);
    await clearUas(c, 2);
    assert.deepEqual((await c.command(0, sense6(0x01, 0, true))).data, bytes('0f 00 90 00', P01));
    assert.deepEqual((await c.command(1, sense6(0x01, 0, true))).data, bytes('0f 00 80 00', P01));
    const n = await r.nexus();
    assert.deepEqual((await n.command(0, sense6(0x01, 0, true))).data, bytes('0f 00 10 00', P01));
  } finally {
    await r.close();
  }
});

test('prod_mode_write_protect: every LUN an explicit ACL maps is write protected', async () => {
  const r = await rig();
  try {
    r.tpg.attributes.prod_mode_write_protect = true;
    const acl = new NodeAcl(r.tpg, INITIATOR_C);
    acl.mapped.set(0, { index: 0, tpgLun: 0, writeProtect: false });
    r.tpg.acls.set(INITIATOR_C, acl);
    const c = LoopbackNexus.open(r.tpg, INITIATOR_C);
    await clearUas(c, 1);
    assert.deepEqual((await c.command(0, sense6(0x01, 0, true))).data, bytes('0f 00 90 00', P01));
    const block = Buffer.alloc(512);
    assertSense(await c.command(0, [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataOut: block }), SenseKey.DATA_PROTECT, 0x27, 0x00);
  } finally {
    await r.close();
  }
});

test('MODE SELECT changes WCE; MODE SENSE shows it; the other nexus gets POWER ON first, then MODE PARAMETERS CHANGED', async () => {
  const r = await rig();
  try {
    const a = await r.nexus();
    const b = LoopbackNexus.open(r.tpg, INITIATOR_B); // power-on UA still pending
    const list = bytes('00 00 00 00', P08('04'));
    assertGood(await a.command(0, select6(list), { dataOut: list }));
    assert.equal(r.sos[0].lu.mode.wce, true);
    assert.deepEqual((await a.command(0, sense6(0x08, 0, true))).data, bytes('17 00 10 00', P08('04')));
    // Defaults still say what the unit started with.
    assert.deepEqual((await a.command(0, sense6(0x08, 2, true))).data, bytes('17 00 10 00', P08()));
    // V_SUP follows the write cache.
    assert.equal((await a.command(0, [0x12, 1, 0x86, 0, 64, 0])).data[6], 0x01);
    // The nexus that made the change gets no unit attention.
    assertGood(await a.command(0, [0, 0, 0, 0, 0, 0]));
    assertSense(await b.command(0, [0, 0, 0, 0, 0, 0]), SenseKey.UNIT_ATTENTION, 0x29, 0x00);
    assertSense(await b.command(0, [0, 0, 0, 0, 0, 0]), SenseKey.UNIT_ATTENTION, 0x2a, 0x01);
    assertGood(await b.command(0, [0, 0, 0, 0, 0, 0]));

    // MODE SELECT(10) with a block descriptor that changes nothing, RCD on and WCE off.
    const list10 = bytes('0000 00 00 00 00 0008', SHORT_BD, P08('01'));
    assertGood(await a.command(0, select10(list10), { dataOut: list10 }));
    assert.deepEqual([r.sos[0].lu.mode.wce, r.sos[0].lu.mode.rcd], [false, true]);
    assertSense(await b.command(0, [0, 0, 0, 0, 0, 0]), SenseKey.UNIT_ATTENTION, 0x2a, 0x01);
    // Sending the current values back changes nothing and raises nothing.
    assertGood(await a.command(0, select10(list10), { dataOut: list10 }));
    assertGood(await b.command(0, [0, 0, 0, 0, 0, 0]));
    // An empty parameter list is no error.
    assertGood(await a.command(0, [0x15, 0x10, 0, 0, 0, 0]));
  } finally {
    await r.close();
  }
});

test('D_SENSE switches later errors to descriptor format and back', async () => {
  const r = await rig();
  try {
    const n = await r.nexus();
    const badRead = [0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0];
    assert.equal((await n.command(0, badRead)).sense![0], 0x70);
    const on = bytes('00 00 00 00', P0A('06'));
    assertGood(await n.command(0, select6(on), { dataOut: on }));
    const desc = await n.command(0, badRead);
    assertSense(desc, SenseKey.ILLEGAL_REQUEST, 0x21, 0);
    assert.deepEqual(desc.sense, bytes('72 05 21 00 000000 00'));
    assert.deepEqual((await n.command(0, sense6(0x0a, 0, true))).data, bytes('0f 00 10 00', P0A('06')));
    const off = bytes('00 00 00 00', P0A('02'));
    assertGood(await n.command(0, select6(off), { dataOut: off }));
    assert.deepEqual((await n.command(0, badRead)).sense, bytes('70 00 05 00000000 0a 00000000 21 00 00 000000'));
  } finally {
    await r.close();
  }
});

test('SWP, TAS and QAM through the control page', async () => {
  const r = await rig();
  try {
    const n = await r.nexus();
    const swp = bytes('00 00 00 00', P0A('02', '00', '08', '00'));
    assertGood(await n.command(0, select6(swp), { dataOut: swp }));
    assert.deepEqual([r.sos[0].lu.mode.swp, r.sos[0].lu.mode.tas, r.sos[0].lu.mode.qam], [true, false, 0]);
    assert.equal((await n.command(0, sense6(0x0a, 0, true))).data[2], 0x90); // WP now set
    const block = Buffer.alloc(512);
    assertSense(await n.command(0, [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataOut: block }), SenseKey.DATA_PROTECT, 0x27, 0);
    const back = bytes('00 00 00 00', P0A());
    assertGood(await n.command(0, select6(back), { dataOut: back }));
    assertGood(await n.command(0, [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataOut: block }));
  } finally {
    await r.close();
  }
});

test('MODE SELECT errors, each with its sense code and pointer, and none half-applied', async () => {
  const r = await rig();
  try {
    const n = await r.nexus();
    const sel = (list: Buffer, cdb1 = 0x10) => n.command(0, select6(list, cdb1), { dataOut: list });
    const hdr = '00 00 00 00';
    const wce = bytes(hdr, P08('04'));
    assertSense(await sel(wce, 0x00), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 4 });
    assertSense(await sel(wce, 0x11), SenseKey.ILLEGAL_REQUEST, 0x39, 0, { inCdb: true, byte: 1, bit: 0 });
    assertSense(await sel(bytes('00 00 00')), SenseKey.ILLEGAL_REQUEST, 0x1a, 0);
    assertSense(await sel(wce.subarray(0, 12)), SenseKey.ILLEGAL_REQUEST, 0x1a, 0);
    assertSense(await sel(bytes(hdr, '08')), SenseKey.ILLEGAL_REQUEST, 0x1a, 0);
    // A non-changeable bit: DRA (caching page byte 12 bit 5) cleared.
    const dra = bytes(hdr, P08('04'));
    dra[4 + 12] = 0;
    assertSense(await sel(dra), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 16, bit: 5 });
    // GLTSD (control byte 2 bit 1) is not changeable either; DISC (caching byte 2 bit 4).
    assertSense(await sel(bytes(hdr, P0A('00'))), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 6, bit: 1 });
    assertSense(await sel(bytes(hdr, P08('14'))), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 6, bit: 4 });
    assertSense(await sel(bytes(hdr, P0A('02', '20'))), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 7, bit: 7 });
    assertSense(await sel(bytes(hdr, P1C('08', '07'))), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 7, bit: 3 });
    assertSense(await sel(bytes(hdr, '02 0e', { z: 14 })), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 4, bit: 5 });
    assertSense(await sel(bytes(hdr, '48 12', { z: 18 })), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 4, bit: 6 });
    assertSense(await sel(bytes(hdr, '08 10', { z: 16 })), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 5 });
    // Block descriptors: a bad length, another block size, another capacity.
    assertSense(await sel(bytes('00 00 00 04 00000000')), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 3 });
    assertSense(await sel(bytes('00 00 00 08 00020000 00 001000')), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 9 });
    assertSense(await sel(bytes('00 00 00 08 00010000 00 000200')), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 4 });
    assertSense(await sel(bytes('00 00 00 08 00020000')), SenseKey.ILLEGAL_REQUEST, 0x1a, 0);
    // A good page followed by a bad one: nothing applied.
    assertSense(await sel(bytes(hdr, P08('04'), P0A('00'))), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 26, bit: 1 });
    assert.equal(r.sos[0].lu.mode.wce, false);
    // Reserved CDB bits.
    assertSense(await n.command(0, [0x15, 0x12, 0, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 1 });
    assertSense(await n.command(0, [0x55, 0x10, 1, 0, 0, 0, 0, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2, bit: 0 });
  } finally {
    await r.close();
  }
});
