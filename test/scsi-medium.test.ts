// Removable medium (START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL, MEDIUM NOT
// PRESENT) and read-only units, through the loopback fabric. The sequences
// follow libiscsi's StartStopUnit, PreventAllow and NoMedia suites.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rig, INITIATOR_B } from './util/loopback-setup';
import { Status, SenseKey } from '../src/core/sense';
import { DataDir, F } from '../src/core/opcodes';
import type { LoopbackNexus, LoopbackResult } from '../fabrics/loopback/loopback';

const TUR = [0, 0, 0, 0, 0, 0];
/** START STOP UNIT as libiscsi's STARTSTOPUNIT(sd, immed, pcm, pc, no_flush, loej, start). */
const ssu = (immed: number, pcm: number, pc: number, noFlush: number, loej: number, start: number) =>
  [0x1b, immed, 0, pcm, (pc << 4) | (noFlush << 2) | (loej << 1) | start, 0];
const prevent = (on: number) => [0x1e, 0, 0, 0, on, 0];

function sense(r: LoopbackResult): [number, number | undefined, number | undefined, number | undefined] {
  return [r.status, r.senseKey, r.asc, r.ascq];
}
const GOOD: ReturnType<typeof sense> = [Status.GOOD, undefined, undefined, undefined];
const NO_MEDIUM: ReturnType<typeof sense> = [Status.CHECK_CONDITION, SenseKey.NOT_READY, 0x3a, 0x00];
const PREVENTED: ReturnType<typeof sense> = [Status.CHECK_CONDITION, SenseKey.ILLEGAL_REQUEST, 0x53, 0x02];

async function expect(n: LoopbackNexus, cdb: number[], want: ReturnType<typeof sense>, what: string): Promise<void> {
  assert.deepEqual(sense(await n.command(0, cdb)), want, what);
}

test('eject and load: TEST UNIT READY and reads answer MEDIUM NOT PRESENT while ejected', async () => {
  const r = await rig([{ attributes: { removable: true } }]);
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  // test_startstopunit_simple
  await expect(a, ssu(1, 0, 0, 0, 1, 0), GOOD, 'eject');
  await expect(a, TUR, NO_MEDIUM, 'TUR ejected');
  await expect(a, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], NO_MEDIUM, 'READ(10) ejected');
  await expect(a, ssu(1, 0, 0, 0, 1, 1), GOOD, 'load');
  await expect(a, TUR, GOOD, 'TUR loaded: no UA for the nexus that loaded it');
  await expect(b, TUR, [Status.CHECK_CONDITION, SenseKey.UNIT_ATTENTION, 0x28, 0x00], 'the other nexus hears NOT READY TO READY CHANGE');
  await expect(b, TUR, GOOD, 'then ready');
  await expect(a, ssu(0, 0, 0, 0, 1, 0), GOOD, 'eject, not immediate');
  await expect(a, TUR, NO_MEDIUM, 'ejected');
  await expect(a, ssu(0, 0, 0, 0, 1, 1), GOOD, 'load');
  await expect(a, TUR, GOOD, 'ready');
  // test_startstopunit_noloej: without LOEJ nothing changes.
  for (const [immed, noFlush, start] of [[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 1], [0, 1, 0], [0, 1, 1], [1, 1, 0], [1, 1, 1]]) {
    await expect(a, ssu(immed, 0, 0, noFlush, 0, start), GOOD, `no LOEJ ${immed}${noFlush}${start}`);
    await expect(a, TUR, GOOD, 'still ready');
  }
  // test_startstopunit_pwrcnd: a power condition makes START and LOEJ ignored.
  for (let pc = 1; pc < 16; pc++) {
    await expect(a, ssu(1, 0, pc, 0, 1, 0), GOOD, `power condition ${pc}`);
    await expect(a, TUR, GOOD, 'not ejected');
  }
  // Reserved CDB bits are refused by the usage mask.
  const bad = await a.command(0, [0x1b, 0x02, 0, 0, 0, 0]);
  assert.deepEqual([bad.senseKey, bad.asc, bad.field?.byte], [SenseKey.ILLEGAL_REQUEST, 0x24, 1]);
  await r.close();
});

test('PREVENT ALLOW: prevention refuses eject and load, from every nexus, until allowed', async () => {
  const r = await rig([{ attributes: { removable: true } }]);
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  // test_preventallow_eject
  await expect(a, prevent(1), GOOD, 'prevent');
  await expect(a, ssu(0, 0, 0, 0, 1, 0), PREVENTED, 'eject prevented');
  await expect(a, TUR, GOOD, 'still there');
  // test_preventallow_2_itnexuses
  await expect(b, ssu(0, 0, 0, 0, 1, 0), PREVENTED, 'eject from another nexus prevented');
  await expect(b, prevent(0), GOOD, 'B allowing does not lift A’s prevention');
  await expect(b, ssu(0, 0, 0, 0, 1, 0), PREVENTED, 'still prevented');
  await expect(a, prevent(0), GOOD, 'allow');
  await expect(a, ssu(0, 0, 0, 0, 1, 0), GOOD, 'eject');
  await expect(a, TUR, NO_MEDIUM, 'ejected');
  await expect(a, prevent(1), GOOD, 'prevent while ejected');
  await expect(a, ssu(0, 0, 0, 0, 1, 1), PREVENTED, 'load prevented');
  await expect(a, prevent(0), GOOD, 'allow');
  await expect(a, ssu(0, 0, 0, 0, 1, 1), GOOD, 'load');
  const bad = await a.command(0, prevent(2));
  assert.deepEqual([bad.senseKey, bad.asc, bad.field?.byte], [SenseKey.ILLEGAL_REQUEST, 0x24, 4]);
  await r.close();
});

test('prevention ends with its nexus (logout), an I_T nexus reset and a LUN reset', async () => {
  const r = await rig([{ attributes: { removable: true } }]);
  const lu = r.sos[0].lu;
  // test_preventallow_logout / itnexus_loss: a new login of the same initiator may eject.
  let a = await r.nexus();
  await expect(a, prevent(1), GOOD, 'prevent');
  await a.close();
  a = await r.nexus();
  await expect(a, ssu(0, 0, 0, 0, 1, 0), GOOD, 'eject after re-login');
  await expect(a, TUR, NO_MEDIUM, 'ejected');
  await expect(a, ssu(0, 0, 0, 0, 1, 1), GOOD, 'load');
  // test_preventallow_lun_reset
  await expect(a, prevent(1), GOOD, 'prevent');
  assert.equal(await a.taskManagement('lun-reset', 0), 'complete');
  for (let i = 0; i < 4 && (await a.command(0, TUR)).status !== Status.GOOD; i++);
  await expect(a, ssu(0, 0, 0, 0, 1, 0), GOOD, 'eject after LUN reset');
  await expect(a, ssu(0, 0, 0, 0, 1, 1), GOOD, 'load');
  await expect(a, prevent(1), GOOD, 'prevent');
  assert.equal(await a.taskManagement('it-nexus-reset', 0), 'complete');
  assert.equal(lu.medium!.preventers.size, 0, 'I_T nexus reset ends it');
  await r.close();
});

test('fixed media: LOEJ is refused, PREVENT is accepted and changes nothing', async () => {
  const r = await rig();
  const a = await r.nexus();
  await expect(a, ssu(0, 0, 0, 0, 0, 1), GOOD, 'start');
  const e = await a.command(0, ssu(0, 0, 0, 0, 1, 0));
  assert.deepEqual([e.senseKey, e.asc, e.field?.byte, e.field?.bit], [SenseKey.ILLEGAL_REQUEST, 0x24, 4, 1]);
  await expect(a, prevent(1), GOOD, 'prevent');
  assert.equal(r.sos[0].lu.medium, undefined);
  await r.close();
});

test('read-only unit: every write-class opcode in the table answers DATA PROTECT / WRITE PROTECTED', async () => {
  // Thin, so it serves the whole table (UNMAP, SANITIZE BLOCK ERASE).
  const r = await rig([{ attributes: { readonly: true, emulate_tpu: true, emulate_tpws: true } }]);
  const a = await r.nexus();
  const lu = r.sos[0].lu;
  const writers = lu.table.all.filter((d) => (d.flags & F.WRITE) !== 0);
  assert.ok(writers.every((d) => d.served === undefined || d.served(lu)), 'the unit serves every one');
  assert.ok(writers.length >= 1, 'the table has write-class commands');
  for (const d of writers) {
    const cdb = Buffer.alloc(d.usage.length);
    cdb[0] = d.opcode;
    if (d.serviceAction !== undefined) {
      if (d.opcode === 0x7f) cdb.writeUInt16BE(d.serviceAction, 8);
      else cdb[1] = d.serviceAction;
    }
    // One block (or one byte of parameter list) where the CDB has a length.
    if (d.blocksField) cdb[d.blocksField[0] + d.blocksField[1] - 1] = 1;
    else if (d.lengthField) cdb[d.lengthField[0] + d.lengthField[1] - 1] = 1;
    const data = d.dir === DataDir.OUT ? Buffer.alloc(lu.blockSize * 2) : undefined;
    const res = await a.command(0, cdb, { dataOut: data });
    assert.deepEqual([res.status, res.senseKey, res.asc, res.ascq],
      [Status.CHECK_CONDITION, SenseKey.DATA_PROTECT, 0x27, 0x00], d.name);
  }
  // Reads still work.
  assert.equal((await a.command(0, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0])).status, Status.GOOD);
  await r.close();
});
