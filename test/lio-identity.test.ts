// Moving from LIO keeps every disk's identity: the storage objects of the
// sample targetcli saveconfig.json report, through the iSCSI target's TPG,
// exactly what LIO reports for the same serials: INQUIRY vendor, product and
// revision, VPD 80h, and every VPD 83h designator, byte for byte.
//
// The expected bytes are built here from LIO's own logic, not from tsio's code:
//   drivers/target/target_core_device.c: t10_wwn.vendor "LIO-ORG"; model = the backend's inquiry_prod
//     ("FILEIO", "IBLOCK", "RAMDISK-MCP"), or with emulate_model_alias the configfs item name, cut to 15
//     characters (snprintf into INQUIRY_MODEL_LEN 16); revision = inquiry_rev "4.0".
//   drivers/target/target_core_spc.c:
//     spc_emulate_inquiry_std: vendor at byte 8, model at 16, revision at 32, space padded.
//     spc_emulate_evpd_80: the unit serial, then a NUL, page length strlen + 1.
//     spc_gen_naa_6h_vendor_specific: 0x6 << 4 | company id (default 00-14-05) in the next 24 bits, then the
//       serial's hex digits (hex_to_bin, others skipped) for 25 nibbles at most (13 bytes from the fourth).
//     spc_emulate_evpd_83: NAA (code set 1, type 3, length 16); T10 vendor id (code set 2, type 1: vendor
//       padded to 8, "MODEL:SERIAL", NUL); relative target port (PIV, association port, type 4: 2 reserved
//       bytes, lun_rtpi); target port group (type 5: tg_pt_gp_id, 0 for default_tg_pt_gp); LU group (code
//       set 1, type 6: lu_gp_id, 0 for default_lu_gp); SCSI name of the port ("WWN,t,0x%04x", PIV, port,
//       type 8, NUL padded to a multiple of 4) and of the target device ("WWN", association 10b).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lioToDocument } from '../app/config/lio-import';
import { parseConfig } from '../app/config/config';
import { applyConfig } from '../app/daemon/apply';
import { createRoot } from '../app/registry';
import { LoopbackNexus } from '../fabrics/loopback/loopback';
import { clearUas } from './util/loopback-setup';
import { INIT, IQN, saveconfigJson } from './util/lio-saveconfig';

const dir = mkdtempSync(join(tmpdir(), 'tsio-lio-id-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ISCSI_PROTOCOL = 5;
/** LIO's relative target port id for the only TPG (and first export) of this configuration: ids start at 1. */
const LIO_RTPI = 1;

/** What LIO's spc_gen_naa_6h_vendor_specific writes for a serial (company id 00-14-05). */
function lioNaa(serial: string): number[] {
  const buf = new Array<number>(16).fill(0);
  const companyId = 0x001405;
  let off = 0;
  buf[off] = 0x6 << 4;
  buf[off++] |= (companyId >> 20) & 0xf;
  buf[off++] = (companyId >> 12) & 0xff;
  buf[off++] = (companyId >> 4) & 0xff;
  buf[off] = (companyId & 0xf) << 4;
  let next = true;
  for (let p = 0, cnt = off + 13; p < serial.length && off < cnt; p++) {
    const val = parseInt(serial[p], 16);
    if (Number.isNaN(val)) continue;
    if (next) {
      next = false;
      buf[off++] |= val;
    } else {
      next = true;
      buf[off] = val << 4;
    }
  }
  return buf;
}

/** NUL-terminated, NUL-padded to a multiple of 4, at most 256 (the SCSI name strings of spc_emulate_evpd_83). */
function nameString(s: string): number[] {
  let len = s.length + 1;
  len += -len & 3;
  const out = new Array<number>(Math.min(len, 256)).fill(0);
  for (let i = 0; i < s.length && i < out.length - 1; i++) out[i] = s.charCodeAt(i);
  return out;
}

const ascii = (s: string) => [...Buffer.from(s, 'ascii')];
const padded = (s: string, n: number) => ascii(s.slice(0, n).padEnd(n, ' '));

/** VPD 83h as spc_emulate_evpd_83 builds it, for an iSCSI target port. */
function lioVpd83(serial: string, model: string, rtpi: number, targetWwn: string, tpgt: number): number[] {
  const p = ISCSI_PROTOCOL << 4;
  const d: number[] = [];
  d.push(0x01, 0x03, 0x00, 0x10, ...lioNaa(serial));
  const t10 = [...padded('LIO-ORG', 8), ...ascii(`${model}:${serial}`), 0];
  d.push(0x02, 0x01, 0x00, t10.length, ...t10);
  d.push(p | 0x1, 0x80 | 0x10 | 0x4, 0, 4, 0, 0, rtpi >> 8, rtpi & 0xff);
  d.push(p | 0x1, 0x80 | 0x10 | 0x5, 0, 4, 0, 0, 0, 0);
  d.push(0x01, 0x06, 0, 4, 0, 0, 0, 0);
  const port = nameString(`${targetWwn},t,0x${tpgt.toString(16).padStart(4, '0')}`);
  d.push(p | 0x3, 0x80 | 0x10 | 0x8, 0, port.length, ...port);
  const device = nameString(targetWwn);
  d.push(p | 0x3, 0x80 | 0x20 | 0x8, 0, device.length, ...device);
  return [0x00, 0x83, d.length >> 8, d.length & 0xff, ...d];
}

test('a targetcli saveconfig.json restored keeps each disk identity byte for byte: INQUIRY, VPD 80h and 83h as LIO derives them', async () => {
  const data = saveconfigJson(dir, 3260) as { storage_objects: { name: string; plugin: string; wwn: string; attributes: Record<string, number> }[] };
  const { document } = lioToDocument(data as unknown as Record<string, unknown>);
  const cfg = parseConfig(JSON.stringify(document), 'saveconfig.json');
  const root = createRoot();
  await applyConfig(root, cfg, dir);
  const tpg = root.targets.get(IQN)!.tpgs.get(1)!;
  const n = LoopbackNexus.open(tpg, INIT);
  try {
    await clearUas(n, 2);
    const lioModel: Record<string, string> = { fileio: 'FILEIO', ramdisk: 'RAMDISK-MCP', block: 'IBLOCK' };
    for (const [lun, so] of data.storage_objects.entries()) {
      const model = so.attributes.emulate_model_alias ? so.name.slice(0, 15) : lioModel[so.plugin];
      const std = await n.command(lun, [0x12, 0, 0, 0, 96, 0], { expectedLength: 96 });
      assert.equal(std.status, 0);
      assert.deepEqual([...std.data!.subarray(8, 36)], [...padded('LIO-ORG', 8), ...padded(model, 16), ...padded('4.0', 4)], `LUN ${lun}: vendor, product, revision`);
      const v80 = await n.command(lun, [0x12, 1, 0x80, 0, 255, 0], { expectedLength: 255 });
      const serial = [...ascii(so.wwn), 0];
      assert.deepEqual([...v80.data!], [0x00, 0x80, 0x00, serial.length, ...serial], `LUN ${lun}: VPD 80h`);
      const v83 = await n.command(lun, [0x12, 1, 0x83, 0, 255, 0], { expectedLength: 255 });
      assert.deepEqual([...v83.data!], lioVpd83(so.wwn, model, LIO_RTPI, IQN, 1), `LUN ${lun}: VPD 83h`);
    }
    // What Linux builds its WWID from: "3" and the NAA designator in hex ("36001405" + the serial's digits).
    const v83 = await n.command(0, [0x12, 1, 0x83, 0, 255, 0], { expectedLength: 255 });
    assert.equal(v83.data!.subarray(8, 24).toString('hex'), '60014056f0e7a3c2b1d4e5f9a8b7c6d5');
  } finally {
    await n.close();
    await root.close();
  }
});

test('compat: lio in a YAML config gives the same identity; without it a unit keeps tsio\'s', async () => {
  const yaml = (compat: string) => `storage_objects:\n  - { name: r, plugin: rd_mcp, size: 1MiB, wwn: 1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d${compat} }\ntargets:\n  - { fabric: loopback, wwn: naa.5001405000000061, tpgs: [ { tag: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/r } ] } ] }\n`;
  for (const [compat, vendor, naa] of [[', compat: lio', 'LIO-ORG ', '60014051a2b3c4d5e6f4a1b8c2d3e4f5'], ['', 'TSIO    ', undefined]] as const) {
    const root = createRoot();
    await applyConfig(root, parseConfig(yaml(compat), 'c.yaml'), dir);
    const n = LoopbackNexus.open(root.targets.get('naa.5001405000000061')!.tpgs.get(1)!, 'naa.5001405000000062');
    try {
      await clearUas(n, 1);
      const std = await n.command(0, [0x12, 0, 0, 0, 96, 0], { expectedLength: 96 });
      assert.equal(std.data!.subarray(8, 16).toString('ascii'), vendor);
      const v83 = await n.command(0, [0x12, 1, 0x83, 0, 255, 0], { expectedLength: 255 });
      if (naa) assert.equal(v83.data!.subarray(8, 24).toString('hex'), naa);
      else assert.notEqual(v83.data!.subarray(8, 11).toString('hex'), '600140', "tsio's own company id");
    } finally {
      await n.close();
      await root.close();
    }
  }
});
