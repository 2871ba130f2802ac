// APTPL: persistent reservation state that survives a restart (a new Root on
// the same state directory), written atomically; non-APTPL state does not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRoot } from '../app/registry';
import { LoopbackNexus } from '../fabrics/loopback/loopback';
import { clearUas, INITIATOR_A, INITIATOR_B } from './util/loopback-setup';
import { SA, TYPES, prIn, prOut, readKeys, readReservation, WRITE10 } from './util/pr';
import { Status, SenseKey } from '../src/core/sense';

/** A target with one RAM LUN whose serial is fixed, as a restarted daemon would rebuild it. */
async function start(stateDir: string | undefined, serial = 'aptpl-test-serial-0001') {
  const root = createRoot({ stateDir });
  const so = await root.createStorageObject({ name: 'disk', plugin: 'rd_mcp', size: 1 << 20, serial });
  const tpg = root.createTarget('loopback', 'naa.5001405000000077').addTpg(1, { generate_node_acls: true });
  tpg.addLun(0, so);
  const open = async (name: string) => {
    const n = LoopbackNexus.open(tpg, name);
    await clearUas(n, 1);
    return n;
  };
  return { root, so, open };
}

test('APTPL state survives a restart; non-APTPL state does not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-state-'));
  try {
    let t = await start(dir);
    let a = await t.open(INITIATOR_A);
    const b = await t.open(INITIATOR_B);
    const caps = await prIn(a, 0, 2);
    assert.equal(caps.data[2] & 1, 1, 'PTPL_C with a state directory');
    assert.equal(caps.data[3] & 1, 0, 'PTPL_A not yet');
    assert.equal((await prOut(a, 0, SA.REGISTER, 0, 0n, 0xaan, { aptpl: true })).status, Status.GOOD);
    assert.equal((await prOut(b, 0, SA.REGISTER, 0, 0n, 0xbbn, { aptpl: true })).status, Status.GOOD);
    assert.equal((await prOut(a, 0, SA.RESERVE, TYPES.WE_RO, 0xaan, 0n)).status, Status.GOOD);
    assert.equal((await prIn(a, 0, 2)).data[3] & 1, 1, 'PTPL_A');
    const gen = (await readKeys(a)).generation;
    assert.deepEqual(readdirSync(join(dir, 'pr')), ['aptpl-test-serial-0001.json'], 'one file, no temporary left');
    await t.root.close();

    t = await start(dir);
    a = await t.open(INITIATOR_A);
    const c = await t.open('naa.5001405cccccccc3');
    assert.deepEqual(await readKeys(c), { generation: gen, keys: [0xaan, 0xbbn] });
    assert.deepEqual(await readReservation(c), { key: 0xaan, type: TYPES.WE_RO });
    assert.equal((await c.command(0, WRITE10(), { dataOut: Buffer.alloc(512) })).status, Status.RESERVATION_CONFLICT);
    assert.equal((await a.command(0, WRITE10(), { dataOut: Buffer.alloc(512) })).status, Status.GOOD, 'the holder is the holder again');
    // A storage object with another serial starts with nothing.
    const other = await t.root.createStorageObject({ name: 'other', plugin: 'rd_mcp', size: 1 << 20, serial: 'another-serial' });
    assert.equal(other.lu.pr, undefined);
    // Registering with APTPL=0 turns persistence off: the next start has nothing.
    assert.equal((await prOut(a, 0, SA.REGISTER, 0, 0xaan, 0xa1n)).status, Status.GOOD);
    assert.deepEqual(readdirSync(join(dir, 'pr')), []);
    await t.root.close();

    t = await start(dir);
    a = await t.open(INITIATOR_A);
    assert.deepEqual((await readKeys(a)).keys, []);
    assert.equal(await readReservation(a), undefined);
    await t.root.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without a state directory nothing persists, and a state that cannot be written changes nothing', async () => {
  let t = await start(undefined);
  let a = await t.open(INITIATOR_A);
  assert.equal((await prOut(a, 0, SA.REGISTER, 0, 0n, 1n)).status, Status.GOOD);
  await t.root.close();
  t = await start(undefined);
  a = await t.open(INITIATOR_A);
  assert.deepEqual((await readKeys(a)).keys, []);
  await t.root.close();

  // The state directory is a file: saving fails, the command reports it and the state is as before.
  const dir = mkdtempSync(join(tmpdir(), 'tsio-state-'));
  try {
    writeFileSync(join(dir, 'pr'), 'not a directory');
    t = await start(dir);
    a = await t.open(INITIATOR_A);
    const r = await prOut(a, 0, SA.REGISTER, 0, 0n, 1n, { aptpl: true });
    assert.deepEqual([r.senseKey, r.asc, r.ascq], [SenseKey.ILLEGAL_REQUEST, 0x55, 0x04]);
    assert.deepEqual(await readKeys(a), { generation: 0, keys: [] });
    assert.equal((await prIn(a, 0, 2)).data[3] & 1, 0, 'PTPL_A stays off');
    await t.root.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
