// SPC commands through the loopback fabric: INQUIRY (standard and every VPD
// page, byte for byte), REPORT LUNS, REQUEST SENSE, unmapped LUNs, CDB checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rig, INITIATOR_B, INITIATOR_C } from './util/loopback-setup';
import { assertGood, assertSense, bytes } from './util/scsi-assert';
import { LoopbackNexus } from '../fabrics/loopback/loopback';
import { NodeAcl } from '../src/model/target';
import { SenseKey, Status } from '../src/core/sense';
import { servesCompareAndWrite, servesExtendedCopy } from '../src/scsi/inquiry';
import { addVpdPage, page } from '../src/scsi/vpd';
import { createRoot } from '../app/registry';

const SERIAL = '01234567-89ab-cdef-0123-456789abcdef';
const NAA = '65c9da10 12345678 9abcdef0 12345678';
const inq = (evpd: number, page: number, alloc = 0xff) => [0x12, evpd, page, alloc >> 8, alloc & 0xff, 0];
const reportLuns = (select = 0, alloc = 4096) => [0xa0, 0, select, 0, 0, 0, alloc >>> 24, (alloc >> 16) & 0xff, (alloc >> 8) & 0xff, alloc & 0xff, 0, 0];

/** VPD B0 bytes 44..55: WRITE ATOMIC(16)'s limits once the table serves it (256 blocks, no alignment or granularity). */
const atomic = (r: { sos: { lu: { table: { find(op: number): unknown } } }[] }) =>
  r.sos[0].lu.table.find(0x9c) !== undefined ? '00000100 00000000 00000000' : '00000000 00000000 00000000';

function stdInquiry(b5: number, product: string, b0 = 0x00, b1 = 0x00, sbc = true): Buffer {
  return bytes(
    [b0, b1, 0x06, 0x12, 91, b5, 0x00, 0x02],
    { a: 'TSIO    ' }, { a: product.padEnd(16, ' ') }, { a: '0001' },
    { z: 22 },
    '00a0 0460', sbc ? '04c0' : '', { z: sbc ? 32 : 34 }, // version descriptors, then reserved to byte 95
  );
}

test('standard INQUIRY data, byte for byte, and truncation by the allocation length', async () => {
  const r = await rig([{ serial: SERIAL }]);
  try {
    const n = await r.nexus();
    const full = await n.command(0, inq(0, 0, 255));
    assertGood(full);
    // TPGS 01b, and 3PC when EXTENDED COPY is served (emulate_3pc defaults on); product named after the plugin, as LIO.
    assert.deepEqual(full.data, stdInquiry(0x10 | (servesExtendedCopy(r.sos[0].lu) ? 0x08 : 0), 'RAMDISK-MCP'));
    assert.equal(full.residual, 255 - 96);
    const short = await n.command(0, inq(0, 0, 5));
    assertGood(short);
    assert.deepEqual(short.data, full.data.subarray(0, 5));
    const none = await n.command(0, inq(0, 0, 0));
    assertGood(none);
    assert.equal(none.data.length, 0);
  } finally {
    await r.close();
  }
});

test('INQUIRY follows removable, emulate_3pc and emulate_model_alias', async () => {
  const r = await rig([{ name: 'my-model-alias-longer-than-16', serial: SERIAL, attributes: { removable: true, emulate_3pc: false, emulate_model_alias: true } }]);
  try {
    const n = await r.nexus();
    const res = await n.command(0, inq(0, 0));
    assertGood(res);
    assert.deepEqual(res.data, stdInquiry(0x10, 'my-model-alias-l', 0x00, 0x80));
  } finally {
    await r.close();
  }
});

test('INQUIRY field errors: page code without EVPD, unknown page, CmdDt, NACA', async () => {
  const r = await rig([{ serial: SERIAL }]);
  try {
    const n = await r.nexus();
    assertSense(await n.command(0, inq(0, 0x80)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2 });
    assertSense(await n.command(0, inq(1, 0x81)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2 });
    assertSense(await n.command(0, inq(2, 0)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 1 });
    assertSense(await n.command(0, [0x12, 0, 0, 0, 0xff, 0x04]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 5, bit: 2 });
  } finally {
    await r.close();
  }
});

test('every VPD page, byte for byte', async () => {
  const r = await rig([{ serial: SERIAL }]);
  try {
    const n = await r.nexus();
    const vpd = async (page: number) => {
      const res = await n.command(0, inq(1, page, 1024));
      assertGood(res, `VPD ${page.toString(16)}`);
      return res.data;
    };
    assert.deepEqual(await vpd(0x00), bytes('00 00 0008 00 80 83 86 8f b0 b1 b2'));
    assert.deepEqual(await vpd(0x80), bytes('00 80 0025', { a: SERIAL }, '00'));

    const t10 = `TSIO    RAMDISK-MCP:${SERIAL}\0`;
    const port = 'naa.5001405000000099,t,0x0001';
    const luName = 'naa.65C9DA10123456789ABCDEF012345678';
    const designators = bytes(
      '01 03 00 10', NAA,
      '02 01 00', [t10.length], { a: t10 },
      '61 94 00 04 0000 0001', // relative target port 1, SAS protocol identifier (loopback)
      '61 95 00 04 0000 0000', // target port group 0
      '63 98 00 20', { a: port }, { z: 32 - port.length },
      '03 08 00 28', { a: luName }, { z: 40 - luName.length },
    );
    assert.deepEqual(await vpd(0x83), Buffer.concat([bytes('00 83', [0, designators.length]), designators]));

    assert.deepEqual(await vpd(0x86), bytes('00 86 003c 00 07 00', { z: 0x3c - 3 }));
    // Not thin (emulate_tpu/tpws off): no UNMAP limits; WSNZ, CAW length 1 (once served), granularity 1.
    const caw = servesCompareAndWrite(r.sos[0].lu) ? '01' : '00';
    assert.deepEqual(await vpd(0xb0), bytes(
      `00 b0 003c 01 ${caw} 0001 00004000 00004000 00000000 00000000 00000000 00000000 00000000`,
      '000000000000ffff', atomic(r), { z: 8 },
    ));
    // WABEREQ 0: BLOCK ERASE (deallocating everything) is served on thin units only.
    assert.deepEqual(await vpd(0xb1), bytes('00 b1 003c 0001 00 00', { z: 0x3c - 4 }));
    assert.deepEqual(await vpd(0xb2), bytes('00 b2 0004 00 00 00 00'));
  } finally {
    await r.close();
  }
});

test('VPD B0/B2/86 on a thin unit with write cache, B1 on a rotating fileio-like attribute set', async () => {
  const r = await rig([{
    serial: SERIAL,
    attributes: {
      emulate_tpu: true, emulate_tpws: true, emulate_caw: false, emulate_write_cache: true,
      unmap_granularity: 8, unmap_granularity_alignment: 4, max_unmap_lba_count: 1024, max_unmap_block_desc_count: 16,
      hw_max_sectors: 2048, optimal_sectors: 128, max_write_same_len: 4096,
    },
  }]);
  try {
    const n = await r.nexus();
    const vpd = async (page: number) => (await n.command(0, inq(1, page, 1024))).data;
    assert.deepEqual(await vpd(0xb0), bytes(
      '00 b0 003c 01 00 0001 00000800 00000080 00000000 00000400 00000010 00000008 80000004',
      '0000000000001000', atomic(r), { z: 8 },
    ));
    // LBPU, LBPWS, LBPWS10, LBPRZ 001b; provisioning type 2 (thin).
    assert.deepEqual(await vpd(0xb2), bytes('00 b2 0004 00 e4 02 00'));
    // V_SUP with the write cache on.
    assert.deepEqual(await vpd(0x86), bytes('00 86 003c 00 07 01', { z: 0x3c - 3 }));
    // WABEREQ 01b: BLOCK ERASE is served, and reads after it succeed (deallocated blocks read zeros).
    assert.deepEqual(await vpd(0xb1), bytes('00 b1 003c 0001 00 40', { z: 0x3c - 4 }));
  } finally {
    await r.close();
  }
});

test('REPORT LUNS: peripheral and flat addressing, select report, allocation length', async () => {
  const r = await rig([{}, {}]);
  try {
    const acl = new NodeAcl(r.tpg, INITIATOR_C);
    acl.mapped.set(7, { index: 7, tpgLun: 0, writeProtect: false });
    acl.mapped.set(300, { index: 300, tpgLun: 1, writeProtect: false });
    acl.mapped.set(16383, { index: 16383, tpgLun: 1, writeProtect: false });
    r.tpg.acls.set(INITIATOR_C, acl);
    const c = LoopbackNexus.open(r.tpg, INITIATOR_C);
    // REPORT LUNS runs with the power-on unit attentions pending and leaves them there.
    const res = await c.command(7, reportLuns());
    assertGood(res);
    assert.deepEqual(res.data, bytes('00000018 00000000', '0007 000000000000', '412c 000000000000', '7fff 000000000000'));
    assertSense(await c.command(7, [0, 0, 0, 0, 0, 0]), SenseKey.UNIT_ATTENTION, 0x29, 0);

    const wellKnown = await c.command(7, reportLuns(1));
    assertGood(wellKnown);
    assert.deepEqual(wellKnown.data, bytes('00000000 00000000'));
    assertGood(await c.command(7, reportLuns(2)));
    assertSense(await c.command(7, reportLuns(3)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2 });
    assertSense(await c.command(7, reportLuns(0, 15)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 6 });
    const sixteen = await c.command(7, reportLuns(0, 16));
    assertGood(sixteen);
    assert.deepEqual(sixteen.data, bytes('00000018 00000000 0007 000000000000'));
    // Also served on a LUN the nexus does not map.
    const viaUnmapped = await c.command(5, reportLuns());
    assertGood(viaUnmapped);
    assert.deepEqual(viaUnmapped.data, res.data);
  } finally {
    await r.close();
  }
});

test('a nexus that maps no LUN sees LUN 0 with no unit behind it', async () => {
  const r = await rig([{ serial: SERIAL }]);
  try {
    r.tpg.acls.set(INITIATOR_B, new NodeAcl(r.tpg, INITIATOR_B));
    const b = LoopbackNexus.open(r.tpg, INITIATOR_B);
    const luns = await b.command(0, reportLuns());
    assertGood(luns);
    assert.deepEqual(luns.data, bytes('00000008 00000000 0000000000000000'));

    const std = await b.command(0, inq(0, 0));
    assertGood(std);
    assert.deepEqual(std.data, stdInquiry(0x00, 'NO LUN', 0x7f, 0x00, false));
    const pages = await b.command(0, inq(1, 0));
    assertGood(pages);
    assert.deepEqual(pages.data, bytes('7f 00 0001 00'));
    assertSense(await b.command(0, inq(1, 0x83)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2 });

    // REQUEST SENSE answers LOGICAL UNIT NOT SUPPORTED as data (SPC-5 6.39).
    const rs = await b.command(0, [0x03, 0, 0, 0, 252, 0]);
    assertGood(rs);
    assert.deepEqual(rs.data, bytes('70 00 05 00000000 0a 00000000 25 00 00 000000'));
    for (const cdb of [[0, 0, 0, 0, 0, 0], [0x1a, 0, 0x3f, 0, 255, 0], [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]]) {
      assertSense(await b.command(0, cdb), SenseKey.ILLEGAL_REQUEST, 0x25, 0);
    }
  } finally {
    await r.close();
  }
});

test('REQUEST SENSE reports and clears a pending unit attention, fixed or descriptor format', async () => {
  const r = await rig();
  try {
    const b = LoopbackNexus.open(r.tpg, INITIATOR_B);
    const first = await b.command(0, [0x03, 0, 0, 0, 252, 0]);
    assertGood(first);
    assert.deepEqual(first.data, bytes('70 00 06 00000000 0a 00000000 29 00 00 000000'));
    assert.equal(first.residual, 252 - 18);
    // Cleared: the next command runs.
    assertGood(await b.command(0, [0, 0, 0, 0, 0, 0]));
    const none = await b.command(0, [0x03, 0, 0, 0, 252, 0]);
    assert.deepEqual(none.data, bytes('70 00 00 00000000 0a 00000000 00 00 00 000000'));
    const desc = await b.command(0, [0x03, 1, 0, 0, 252, 0]);
    assertGood(desc);
    assert.deepEqual(desc.data, bytes('72 00 00 00 000000 00'));
    r.sos[0].lu.raiseUa(0x2a01);
    const descUa = await b.command(0, [0x03, 1, 0, 0, 252, 0]);
    assert.deepEqual(descUa.data, bytes('72 06 2a 01 000000 00'));
    // Reserved bits refused with the exact pointer.
    assertSense(await b.command(0, [0x03, 0x02, 0, 0, 252, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 1 });
    assertSense(await b.command(0, [0x03, 0, 0x10, 0, 252, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2, bit: 4 });
  } finally {
    await r.close();
  }
});

test('INQUIRY does not report or clear a unit attention; TEST UNIT READY does', async () => {
  const r = await rig();
  try {
    const b = LoopbackNexus.open(r.tpg, INITIATOR_B);
    assertGood(await b.command(0, inq(0, 0)));
    assertSense(await b.command(0, [0, 0, 0, 0, 0, 0]), SenseKey.UNIT_ATTENTION, 0x29, 0);
    assertGood(await b.command(0, [0, 0, 0, 0, 0, 0]));
  } finally {
    await r.close();
  }
});

test('unknown opcode is INVALID COMMAND OPERATION CODE; reserved CDB bits point at byte and bit', async () => {
  const r = await rig();
  try {
    const n = await r.nexus();
    assertSense(await n.command(0, [0xc7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x20, 0, { inCdb: true, byte: 0 });
    assertSense(await n.command(0, [0, 0x01, 0, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 0 });
    assertSense(await n.command(0, [0, 0, 0, 0x80, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 3, bit: 7 });
    assertSense(await n.command(0, reportLuns().map((v, i) => (i === 11 ? 0x04 : v))), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 11, bit: 2 });
    assertSense(await n.command(0, [0x1a, 0x10, 0x3f, 0, 255, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 4 });
    assertSense(await n.command(0, [0x5a, 0, 0x3f, 0, 0, 1, 0, 0, 255, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 5, bit: 0 });
    // MAINTENANCE IN with a service action nobody declared.
    assertSense(await n.command(0, [0xa3, 0x1f, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 4 });
    assert.equal((await n.command(0, [0, 0, 0, 0, 0, 0])).status, Status.GOOD);
  } finally {
    await r.close();
  }
});

test('a CDB shorter than its command is INVALID FIELD IN CDB at byte 0, on a mapped and an unmapped LUN alike', async () => {
  const r = await rig();
  try {
    const n = await r.nexus();
    r.tpg.acls.set(INITIATOR_B, new NodeAcl(r.tpg, INITIATOR_B));
    const unmapped = LoopbackNexus.open(r.tpg, INITIATOR_B);
    for (const cdb of [[0x12, 0, 0, 0], [0xa0, 0, 0, 0, 0, 0], [0x03, 0, 0]]) {
      assertSense(await n.command(0, cdb), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 0 });
      assertSense(await unmapped.command(0, cdb), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 0 });
    }
  } finally {
    await r.close();
  }
});

test('an iSCSI target port: iSCSI version descriptor and protocol identifier 5 in VPD 83h', async () => {
  const root = createRoot();
  try {
    const so = await root.createStorageObject({ name: 'i0', plugin: 'rd_mcp', size: 1 << 20, serial: SERIAL });
    const tpg = root.createTarget('iscsi', 'iqn.2026-01.org.tsio:t1').addTpg(3, { generate_node_acls: true });
    tpg.addLun(0, so);
    const n = LoopbackNexus.open(tpg, 'iqn.2026-01.org.tsio:i1');
    const std = await n.command(0, inq(0, 0));
    assert.deepEqual(std.data.subarray(58, 68), bytes('00a0 0460 04c0 0960 0000'));
    const ids = (await n.command(0, inq(1, 0x83, 1024))).data;
    const port = 'iqn.2026-01.org.tsio:t1,t,0x0003';
    const at = 4 + 20 + 4 + ids[4 + 20 + 3];
    assert.deepEqual(ids.subarray(at, at + 16), bytes('51 94 00 04 0000 0003', '51 95 00 04 0000 0000'));
    assert.deepEqual(ids.subarray(at + 16, at + 20 + 36), bytes('53 98 00 24', { a: port }, { z: 36 - port.length }));
  } finally {
    await root.close();
  }
});

test('REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED on every LUN of the nexus', async () => {
  const r = await rig([{}, {}]);
  try {
    const n = await r.nexus();
    const so = await r.root.createStorageObject({ name: 'late', plugin: 'rd_mcp', size: 1 << 20 });
    r.tpg.addLun(2, so);
    const res = await n.command(1, reportLuns());
    assert.deepEqual(res.data, bytes('00000018 00000000', '0000 000000000000', '0001 000000000000', '0002 000000000000'));
    assertGood(await n.command(0, [0, 0, 0, 0, 0, 0]));
    assertGood(await n.command(1, [0, 0, 0, 0, 0, 0]));
    assertGood(await n.command(2, [0, 0, 0, 0, 0, 0]));
    // Without REPORT LUNS the attention is reported.
    r.tpg.removeLun(2);
    assertSense(await n.command(0, [0, 0, 0, 0, 0, 0]), SenseKey.UNIT_ATTENTION, 0x3f, 0x0e);
  } finally {
    await r.close();
  }
});

// Last: it changes the page list for the rest of this process.
test('a VPD page added by another module is served and listed in order', async () => {
  const r = await rig([{ serial: SERIAL }]);
  try {
    addVpdPage(0x89, (lu) => page(lu, 0x89, [0xaa, 0xbb]));
    assert.throws(() => addVpdPage(0x80, (lu) => page(lu, 0x80, [])));
    const n = await r.nexus();
    assert.deepEqual((await n.command(0, inq(1, 0))).data, bytes('00 00 0009 00 80 83 86 89 8f b0 b1 b2'));
    assert.deepEqual((await n.command(0, inq(1, 0x89))).data, bytes('00 89 0002 aa bb'));
  } finally {
    await r.close();
  }
});
