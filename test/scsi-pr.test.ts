// Persistent reservations through the loopback fabric: registration rules,
// the six reservation types against the SPC-5 access tables from holder,
// registrant and non-registrant, PREEMPT (AND ABORT), CLEAR, REGISTER AND MOVE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rig, INITIATOR_A, INITIATOR_B, INITIATOR_C } from './util/loopback-setup';
import { gated } from './util/gated';
import { SA, TYPES, prIn, prOut, readKeys, readReservation, READ10, WRITE10, prOutCdb, sas } from './util/pr';
import { Status, SenseKey } from '../src/core/sense';
import { LoopbackNexus } from '../fabrics/loopback/loopback';
import type { LoopbackResult } from '../fabrics/loopback/loopback';
import type { PrAccess } from '../src/core/opcodes';
import { prState } from '../src/scsi/pr';
import type { ScsiCmd } from '../src/core/command';

const CONFLICT = Status.RESERVATION_CONFLICT;
const tick = () => new Promise((r) => setImmediate(r));

function ok(r: LoopbackResult, what: string): void {
  assert.equal(r.status, Status.GOOD, `${what}: status ${r.status} sense ${r.senseKey}/${r.asc?.toString(16)}/${r.ascq}`);
}

async function clearUa(n: LoopbackNexus): Promise<number[]> {
  const seen: number[] = [];
  for (let i = 0; i < 8; i++) {
    const r = await n.command(0, [0, 0, 0, 0, 0, 0]);
    if (r.senseKey !== SenseKey.UNIT_ATTENTION) break;
    seen.push((r.asc! << 8) | r.ascq!);
  }
  return seen;
}

test('REGISTER: registers, refuses a wrong key, unregisters with key 0; PRGENERATION counts only registrations', async () => {
  const r = await rig();
  const a = await r.nexus();
  const g0 = (await readKeys(a)).generation;
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 0xabcn), 'register');
  assert.deepEqual(await readKeys(a), { generation: g0 + 1, keys: [0xabcn] });
  // Registered: REGISTER must name the current key.
  assert.equal((await prOut(a, 0, SA.REGISTER, 0, 0x999n, 0x1n)).status, CONFLICT);
  // Not registered with a non-zero key: conflict too (libiscsi prout_reregister_key_fails).
  const b = await r.nexus(INITIATOR_B);
  assert.equal((await prOut(b, 0, SA.REGISTER, 0, 0x5n, 0x6n)).status, CONFLICT);
  ok(await prOut(a, 0, SA.REGISTER, 0, 0xabcn, 0xdefn), 'change key');
  ok(await prOut(a, 0, SA.RESERVE, TYPES.EA, 0xdefn, 0n), 'reserve');
  assert.deepEqual(await readReservation(a), { key: 0xdefn, type: TYPES.EA });
  ok(await prOut(a, 0, SA.RELEASE, TYPES.EA, 0xdefn, 0n), 'release');
  assert.equal((await readKeys(a)).generation, g0 + 2, 'RESERVE and RELEASE do not count');
  ok(await prOut(a, 0, SA.REGISTER, 0, 0xdefn, 0n), 'unregister');
  assert.deepEqual(await readKeys(a), { generation: g0 + 3, keys: [] });
  assert.equal(r.sos[0].lu.pr, undefined, 'no registrations: the engine skips the check');
  // REGISTER AND IGNORE EXISTING KEY ignores the reservation key field.
  ok(await prOut(a, 0, SA.REGISTER_AND_IGNORE, 0, 0x1234n, 0x77n), 'register and ignore');
  ok(await prOut(a, 0, SA.REGISTER_AND_IGNORE, 0, 0x4321n, 0x78n), 'register and ignore again');
  assert.deepEqual((await readKeys(a)).keys, [0x78n]);
  await r.close();
});

test('READ KEYS truncated to 8 bytes keeps the ADDITIONAL LENGTH; REPORT CAPABILITIES; unknown service actions', async () => {
  const r = await rig();
  const a = await r.nexus();
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 0x10n), 'register');
  const t = await prIn(a, 0, 0, 8);
  assert.equal(t.data.length, 8);
  assert.equal(t.data.readUInt32BE(4), 8);
  const c = await prIn(a, 0, 2);
  ok(c, 'report capabilities');
  assert.deepEqual([...c.data], [0, 8, 0x0c, 0x90, 0xea, 0x01, 0, 0], 'SIP_C ATP_C, no PTPL_C without a state dir; TMV, ALLOW 1; six types');
  for (let sa = 4; sa < 0x20; sa++) {
    const x = await prIn(a, 0, sa);
    assert.deepEqual([x.senseKey, x.asc], [SenseKey.ILLEGAL_REQUEST, 0x24], `PR IN service action ${sa}`);
  }
  const y = await a.command(0, prOutCdb(8, 0, 24), { dataOut: Buffer.alloc(24) });
  assert.deepEqual([y.senseKey, y.asc], [SenseKey.ILLEGAL_REQUEST, 0x24]);
  await r.close();
});

test('parameter list length must be 24 (PARAMETER LIST LENGTH ERROR); bad type and scope are INVALID FIELD IN CDB', async () => {
  const r = await rig();
  const a = await r.nexus();
  for (const len of [0, 20, 23, 25, 32]) {
    const data = Buffer.alloc(Math.max(len, 24));
    data.writeBigUInt64BE(0x5n, 8);
    const x = await a.command(0, prOutCdb(SA.REGISTER, 0, len), { dataOut: data.subarray(0, len) });
    assert.deepEqual([x.senseKey, x.asc, x.ascq], [SenseKey.ILLEGAL_REQUEST, 0x1a, 0], `length ${len}`);
  }
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 0x5n), 'register');
  for (const type of [0, 2, 4, 9, 15]) {
    const x = await prOut(a, 0, SA.RESERVE, type, 0x5n, 0n);
    assert.deepEqual([x.senseKey, x.asc, x.field?.byte], [SenseKey.ILLEGAL_REQUEST, 0x24, 2], `type ${type}`);
  }
  const s = await prOut(a, 0, SA.RESERVE, 0x10 | TYPES.WE, 0x5n, 0n);
  assert.deepEqual([s.senseKey, s.asc], [SenseKey.ILLEGAL_REQUEST, 0x24], 'scope');
  const p = await prOut(a, 0, SA.REGISTER, 0, 0x5n, 0x6n, { aptpl: true });
  assert.deepEqual([p.senseKey, p.asc], [SenseKey.ILLEGAL_REQUEST, 0x26], 'APTPL without a state dir');
  await r.close();
});

// libiscsi's test_prout_reserve_access table: [registered B reads, writes, unregistered B reads, writes].
const LIBISCSI_ACCESS: Record<keyof typeof TYPES, [number, number, number, number]> = {
  EA: [0, 0, 0, 0], WE: [1, 0, 1, 0], EA_RO: [1, 1, 0, 0], WE_RO: [1, 1, 1, 0], EA_AR: [1, 1, 0, 0], WE_AR: [1, 1, 1, 0],
};

/** SPC-5 table 66, written out: may a nexus in `role` run a command of `cls` under `type`? */
function spcAllows(type: number, role: 'holder' | 'registrant' | 'other', cls: PrAccess): boolean {
  if (cls === 'allowed') return true;
  if (cls === 'conflict') return false;
  if (role === 'holder') return true;
  const we = type === 1 || type === 5 || type === 7;
  if (role === 'registrant' && type >= 5) return true;
  return cls === 'read' && we;
}

test('every reservation type from holder, registrant and non-registrant: exact status per command class', async () => {
  const r = await rig();
  const lu = r.sos[0].lu;
  const a = await r.nexus(INITIATOR_A);
  const b = await r.nexus(INITIATOR_B);
  const c = await r.nexus(INITIATOR_C);
  const classOf = (cdb: number[]): PrAccess => lu.table.lookup(Buffer.from(cdb))!.pr ?? 'write';
  const commands: [string, number[]][] = [
    ['READ(10)', READ10(0)], ['WRITE(10)', WRITE10(0)], ['PR IN READ KEYS', [0x5e, 0, 0, 0, 0, 0, 0, 4, 0, 0]],
    ['TEST UNIT READY', [0, 0, 0, 0, 0, 0]], ['ALLOW MEDIUM REMOVAL', [0x1e, 0, 0, 0, 0, 0]],
    ['PREVENT MEDIUM REMOVAL', [0x1e, 0, 0, 0, 1, 0]], ['START STOP UNIT START=1', [0x1b, 0, 0, 0, 1, 0]],
    ['START STOP UNIT START=0', [0x1b, 0, 0, 0, 0, 0]],
  ];
  // SPC-5 table 66 rows that depend on the CDB (pr.ts BY_CDB); the rest by their table entry.
  const byCdb = (cdb: number[]): PrAccess | undefined =>
    (cdb[0] === 0x1e && cdb[4] === 0) || (cdb[0] === 0x1b && cdb[4] === 1) ? 'allowed' : undefined;
  for (const [name, type] of Object.entries(TYPES)) {
    ok(await prOut(a, 0, SA.REGISTER_AND_IGNORE, 0, 0n, 0xa1n), 'register A');
    ok(await prOut(b, 0, SA.REGISTER_AND_IGNORE, 0, 0n, 0xb2n), 'register B');
    ok(await prOut(a, 0, SA.RESERVE, type, 0xa1n, 0n), `reserve ${name}`);
    assert.deepEqual(await readReservation(c), { key: type >= 7 ? 0n : 0xa1n, type });
    // Every class, from every role, through the engine with real commands.
    for (const [role, n] of [['holder', a], ['registrant', b], ['other', c]] as const) {
      for (const [cname, cdb] of commands) {
        const data = cdb[0] === 0x2a ? Buffer.alloc(512) : undefined;
        const res = await n.command(0, cdb, { dataOut: data });
        const cls = byCdb(cdb) ?? classOf(cdb);
        const want = spcAllows(type, role, cls) ? Status.GOOD : CONFLICT;
        assert.equal(res.status, want, `${name}: ${cname} (${cls}) from ${role}`);
      }
      // And the two classes no command of ours may carry yet, through the same check.
      for (const cls of ['read', 'conflict'] as PrAccess[]) {
        const fake = { def: { pr: cls }, cdb: Buffer.alloc(6), session: n.session } as unknown as ScsiCmd;
        assert.equal(lu.pr!.check(fake), spcAllows(type, role, cls), `${name}: class ${cls} from ${role}`);
      }
    }
    // libiscsi's expectations for READ and WRITE (when READ(10) is declared 'read').
    const [rr, rw, ur, uw] = LIBISCSI_ACCESS[name as keyof typeof TYPES];
    if (classOf(READ10()) === 'read') assert.equal((await b.command(0, READ10())).status === 0, rr === 1);
    assert.equal((await b.command(0, WRITE10(), { dataOut: Buffer.alloc(512) })).status === 0, rw === 1);
    ok(await prOut(b, 0, SA.REGISTER, 0, 0xb2n, 0n), 'unregister B');
    if (classOf(READ10()) === 'read') assert.equal((await b.command(0, READ10())).status === 0, ur === 1);
    assert.equal((await b.command(0, WRITE10(), { dataOut: Buffer.alloc(512) })).status === 0, uw === 1);
    ok(await prOut(a, 0, SA.RELEASE, type, 0xa1n, 0n), `release ${name}`);
    ok(await prOut(a, 0, SA.REGISTER, 0, 0xa1n, 0n), 'unregister A');
    for (const n of [a, b, c]) await clearUa(n);
  }
  await r.close();
});

test('reservation ownership: the holder unregistering ends RO reservations, AR ones stay with the other registrants', async () => {
  const r = await rig();
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  for (const [name, type] of Object.entries(TYPES)) {
    ok(await prOut(a, 0, SA.REGISTER_AND_IGNORE, 0, 0n, 1n), 'register A');
    ok(await prOut(b, 0, SA.REGISTER_AND_IGNORE, 0, 0n, 2n), 'register B');
    ok(await prOut(a, 0, SA.RESERVE, type, 1n, 0n), 'reserve');
    ok(await prOut(a, 0, SA.REGISTER, 0, 1n, 0n), 'unregister holder');
    const uas = await clearUa(b);
    const res = await readReservation(b);
    if (type >= 7) {
      assert.deepEqual(res, { key: 0n, type }, name);
      ok(await prOut(b, 0, SA.RELEASE, type, 2n, 0n), 'release by the other registrant');
    } else {
      assert.equal(res, undefined, name);
      assert.deepEqual(uas, type >= 5 ? [0x2a04] : [], `${name}: RESERVATIONS RELEASED only for registrants-only`);
    }
    ok(await prOut(b, 0, SA.REGISTER, 0, 2n, 0n), 'unregister B');
  }
  await r.close();
});

test('RESERVE and RELEASE rules: conflicts, idempotence, INVALID RELEASE OF PERSISTENT RESERVATION, UAs', async () => {
  const r = await rig();
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  assert.equal((await prOut(a, 0, SA.RESERVE, TYPES.WE, 0n, 0n)).status, CONFLICT, 'unregistered');
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 1n), 'register A');
  ok(await prOut(b, 0, SA.REGISTER, 0, 0n, 2n), 'register B');
  assert.equal((await prOut(a, 0, SA.RESERVE, TYPES.WE, 9n, 0n)).status, CONFLICT, 'wrong key');
  ok(await prOut(a, 0, SA.RESERVE, TYPES.WE_RO, 1n, 0n), 'reserve');
  ok(await prOut(a, 0, SA.RESERVE, TYPES.WE_RO, 1n, 0n), 'same again');
  assert.equal((await prOut(a, 0, SA.RESERVE, TYPES.EA, 1n, 0n)).status, CONFLICT, 'other type by the holder');
  assert.equal((await prOut(b, 0, SA.RESERVE, TYPES.WE_RO, 2n, 0n)).status, CONFLICT, 'by another registrant');
  ok(await prOut(b, 0, SA.RELEASE, TYPES.WE_RO, 2n, 0n), 'release by a non-holder does nothing');
  assert.deepEqual(await readReservation(a), { key: 1n, type: TYPES.WE_RO });
  const bad = await prOut(a, 0, SA.RELEASE, TYPES.WE, 1n, 0n);
  assert.deepEqual([bad.senseKey, bad.asc, bad.ascq], [SenseKey.ILLEGAL_REQUEST, 0x26, 0x04]);
  ok(await prOut(a, 0, SA.RELEASE, TYPES.WE_RO, 1n, 0n), 'release');
  assert.deepEqual(await clearUa(b), [0x2a04], 'RESERVATIONS RELEASED to the other registrant');
  assert.deepEqual(await clearUa(a), [], 'not to the issuer');
  await r.close();
});

test('CLEAR removes everything and tells the others RESERVATIONS PREEMPTED', async () => {
  const r = await rig();
  const [a, b, c] = [await r.nexus(), await r.nexus(INITIATOR_B), await r.nexus(INITIATOR_C)];
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 1n), 'A');
  ok(await prOut(b, 0, SA.REGISTER, 0, 0n, 2n), 'B');
  ok(await prOut(a, 0, SA.RESERVE, TYPES.EA, 1n, 0n), 'reserve');
  assert.equal((await prOut(c, 0, SA.CLEAR, 0, 0n, 0n)).status, CONFLICT, 'unregistered');
  assert.equal((await prOut(b, 0, SA.CLEAR, 0, 1n, 0n)).status, CONFLICT, 'wrong key');
  const g = (await readKeys(a)).generation;
  ok(await prOut(b, 0, SA.CLEAR, 0, 2n, 0n), 'clear');
  assert.deepEqual(await readKeys(c), { generation: g + 1, keys: [] });
  assert.equal(await readReservation(c), undefined);
  assert.deepEqual(await clearUa(a), [0x2a03]);
  assert.deepEqual(await clearUa(b), []);
  assert.deepEqual(await clearUa(c), [], 'not registered: no UA');
  ok(await c.command(0, WRITE10(), { dataOut: Buffer.alloc(512) }), 'unreserved write');
  await r.close();
});

test('PREEMPT: removes a registration without reservation; takes over the holder’s reservation with UAs', async () => {
  const r = await rig();
  const [a, b, c] = [await r.nexus(), await r.nexus(INITIATOR_B), await r.nexus(INITIATOR_C)];
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 1n), 'A');
  ok(await prOut(b, 0, SA.REGISTER, 0, 0n, 2n), 'B');
  ok(await prOut(c, 0, SA.REGISTER, 0, 0n, 3n), 'C');
  const g = (await readKeys(a)).generation;
  // libiscsi test_prout_preempt_rm_reg.
  ok(await prOut(b, 0, SA.PREEMPT, TYPES.EA, 2n, 1n), 'preempt A’s registration');
  assert.deepEqual(await clearUa(a), [0x2a05], 'REGISTRATIONS PREEMPTED');
  assert.deepEqual(await readKeys(a), { generation: g + 1, keys: [2n, 3n] });
  assert.equal(await readReservation(a), undefined, 'no reservation was created');
  assert.equal((await prOut(b, 0, SA.PREEMPT, TYPES.EA, 2n, 0x99n)).status, CONFLICT, 'no such key');
  const z = await prOut(b, 0, SA.PREEMPT, TYPES.EA, 2n, 0n);
  assert.deepEqual([z.senseKey, z.asc], [SenseKey.ILLEGAL_REQUEST, 0x26], 'key 0 without an all-registrants reservation');
  // C holds WE; B preempts it with EA.
  ok(await prOut(c, 0, SA.RESERVE, TYPES.WE, 3n, 0n), 'C reserves');
  ok(await prOut(b, 0, SA.PREEMPT, TYPES.EA, 2n, 3n), 'B preempts C');
  assert.deepEqual(await clearUa(c), [0x2a05]);
  assert.deepEqual(await clearUa(a), [], 'A had no registration left');
  assert.deepEqual(await readReservation(a), { key: 2n, type: TYPES.EA });
  assert.deepEqual((await readKeys(b)).keys, [2n]);
  assert.equal((await c.command(0, WRITE10(), { dataOut: Buffer.alloc(512) })).status, CONFLICT);
  // All registrants, key 0: everybody else goes, the issuer reserves with the new type.
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 1n), 'A again');
  ok(await prOut(c, 0, SA.REGISTER, 0, 0n, 3n), 'C again');
  ok(await prOut(b, 0, SA.RELEASE, TYPES.EA, 2n, 0n), 'release');
  ok(await prOut(a, 0, SA.RESERVE, TYPES.WE_AR, 1n, 0n), 'A reserves WE_AR');
  ok(await prOut(c, 0, SA.PREEMPT, TYPES.EA_RO, 3n, 0n), 'C preempts all');
  assert.deepEqual(await clearUa(a), [0x2a05]);
  assert.deepEqual(await clearUa(b), [0x2a05]);
  assert.deepEqual((await readKeys(c)).keys, [3n]);
  assert.deepEqual(await readReservation(c), { key: 3n, type: TYPES.EA_RO });
  await r.close();
});

test('PREEMPT AND ABORT aborts the preempted nexus’s commands in flight, not the others’', async () => {
  const r = await rig([{ plugin: 'gated', size: 1 << 20 }]);
  const store = gated[gated.length - 1];
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  const c = await r.nexus(INITIATOR_C);
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 1n), 'A');
  ok(await prOut(b, 0, SA.REGISTER, 0, 0n, 2n), 'B');
  ok(await prOut(c, 0, SA.REGISTER, 0, 0n, 3n), 'C');
  ok(await prOut(b, 0, SA.RESERVE, TYPES.WE_RO, 2n, 0n), 'B reserves');
  store.closed = true;
  const bRead = b.command(0, READ10(0));
  const bWrite = b.command(0, WRITE10(4), { dataOut: Buffer.alloc(512, 7) });
  const cRead = c.command(0, READ10(8));
  await tick();
  assert.equal(store.started, 3);
  let done = false;
  const pa = prOut(a, 0, SA.PREEMPT_AND_ABORT, TYPES.EA, 1n, 2n).then((x) => ((done = true), x));
  await tick();
  assert.equal(done, false, 'PREEMPT AND ABORT waits for the aborted commands to leave');
  store.open();
  ok(await pa, 'preempt and abort');
  for (const x of [await bRead, await bWrite]) {
    assert.equal(x.status, Status.TASK_ABORTED);
    assert.equal(x.quiet, false, 'TAS: the preempted initiator is told');
  }
  ok(await cRead, 'the other registrant’s read is not aborted');
  assert.deepEqual(await readReservation(a), { key: 1n, type: TYPES.EA });
  assert.deepEqual(await clearUa(b), [0x2a05]);
  await r.close();
});

test('PREEMPT AND ABORT without TAS: COMMANDS CLEARED BY ANOTHER INITIATOR', async () => {
  const r = await rig([{ plugin: 'gated', size: 1 << 20 }]);
  const store = gated[gated.length - 1];
  r.sos[0].lu.mode.tas = false;
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 1n), 'A');
  ok(await prOut(b, 0, SA.REGISTER, 0, 0n, 2n), 'B');
  store.closed = true;
  const bRead = b.command(0, READ10(0));
  await tick();
  const pa = prOut(a, 0, SA.PREEMPT_AND_ABORT, TYPES.WE, 1n, 2n);
  await tick();
  store.open();
  ok(await pa, 'preempt and abort');
  const x = await bRead;
  assert.equal(x.status, Status.TASK_ABORTED);
  assert.equal(x.quiet, true);
  const uas = await clearUa(b);
  assert.ok(uas.includes(0x2f00) && uas.includes(0x2a05), `UAs ${uas.map((u) => u.toString(16))}`);
  await r.close();
});

test('REGISTER AND MOVE hands the reservation to another initiator port, UNREG drops the mover', async () => {
  const r = await rig();
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 1n), 'A');
  ok(await prOut(a, 0, SA.RESERVE, TYPES.EA, 1n, 0n), 'reserve');
  const move = (key: bigint, saKey: bigint, tid: Buffer, unreg: boolean, rel = r.tpg.tag, len?: number) => {
    const p = Buffer.alloc(24 + tid.length);
    p.writeBigUInt64BE(key, 0);
    p.writeBigUInt64BE(saKey, 8);
    p[17] = unreg ? 2 : 0;
    p.writeUInt16BE(rel, 18);
    p.writeUInt32BE(tid.length, 20);
    tid.copy(p, 24);
    return a.command(0, prOutCdb(SA.REGISTER_AND_MOVE, 0, len ?? p.length), { dataOut: p });
  };
  assert.equal((await move(7n, 2n, sas(INITIATOR_B), true)).status, CONFLICT, 'wrong key');
  const noTpg = await move(1n, 2n, sas(INITIATOR_B), true, 77);
  assert.deepEqual([noTpg.senseKey, noTpg.asc], [SenseKey.ILLEGAL_REQUEST, 0x26]);
  const self = await move(1n, 2n, sas(INITIATOR_A), true);
  assert.deepEqual([self.senseKey, self.asc], [SenseKey.ILLEGAL_REQUEST, 0x26]);
  const g = (await readKeys(a)).generation;
  ok(await move(1n, 2n, sas(INITIATOR_B), true), 'move');
  assert.deepEqual(await readKeys(b), { generation: g + 1, keys: [2n] });
  assert.deepEqual(await readReservation(b), { key: 2n, type: TYPES.EA });
  ok(await b.command(0, WRITE10(), { dataOut: Buffer.alloc(512) }), 'new holder writes');
  assert.equal((await a.command(0, WRITE10(), { dataOut: Buffer.alloc(512) })).status, CONFLICT, 'old holder cannot');
  await r.close();
});

test('READ FULL STATUS: iSCSI TransportIDs with and without ISID, SAS for naa. names; SPEC_I_PT and ALL_TG_PT', async () => {
  const r = await rig();
  const tpg2 = r.tpg.target.addTpg(2, { generate_node_acls: true });
  tpg2.addLun(0, r.sos[0]);
  const iqn = 'iqn.2026-01.org.example:host1';
  const i1 = new LoopbackNexus(r.tpg.openSession({ name: iqn, isid: '23d000000001' }));
  const i2 = new LoopbackNexus(r.tpg.openSession({ name: 'iqn.2026-01.org.example:host2' }));
  const b = await r.nexus(INITIATOR_B);
  for (const n of [i1, i2]) await clearUa(n);
  ok(await prOut(i1, 0, SA.REGISTER, 0, 0n, 0x11n), 'iSCSI with ISID');
  ok(await prOut(i2, 0, SA.REGISTER, 0, 0n, 0x22n, { allTgPt: true }), 'iSCSI without ISID, all target ports');
  ok(await prOut(i1, 0, SA.RESERVE, TYPES.WE, 0x11n, 0n), 'reserve');
  // SPEC_I_PT: B registers itself and, by TransportID, the initiator C that has no session but is known... not known: refused.
  const spec = (tids: Buffer[]) => {
    const all = Buffer.concat(tids);
    const x = Buffer.alloc(4 + all.length);
    x.writeUInt32BE(all.length, 0);
    all.copy(x, 4);
    return x;
  };
  const unknown = await prOut(b, 0, SA.REGISTER, 0, 0n, 0x33n, { specIpt: true, extra: spec([sas(INITIATOR_C)]) });
  assert.deepEqual([unknown.senseKey, unknown.asc], [SenseKey.ILLEGAL_REQUEST, 0x26], 'unknown initiator port');
  const c = await r.nexus(INITIATOR_C);
  const badLen = await prOut(b, 0, SA.REGISTER, 0, 0n, 0x33n, { specIpt: true, extra: spec([sas(INITIATOR_C)]), length: 60 });
  assert.deepEqual([badLen.senseKey, badLen.asc], [SenseKey.ILLEGAL_REQUEST, 0x1a]);
  ok(await prOut(b, 0, SA.REGISTER, 0, 0n, 0x33n, { specIpt: true, extra: spec([sas(INITIATOR_C)]) }), 'SPEC_I_PT');
  assert.deepEqual((await readKeys(c)).keys, [0x11n, 0x22n, 0x33n, 0x33n]);
  ok(await c.command(0, [0x5e, 1, 0, 0, 0, 0, 0, 0, 8, 0]), 'C is registered: it may run PR IN');
  const fs = await prIn(c, 0, 3, 4096);
  ok(fs, 'read full status');
  const d = fs.data;
  assert.equal(d.readUInt32BE(4), d.length - 8);
  const descs: { key: bigint; flags: number; type: number; rel: number; tid: Buffer }[] = [];
  for (let o = 8; o < d.length;) {
    const n = d.readUInt32BE(o + 20);
    descs.push({ key: d.readBigUInt64BE(o), flags: d[o + 12], type: d[o + 13], rel: d.readUInt16BE(o + 18), tid: d.subarray(o + 24, o + 24 + n) });
    o += 24 + n;
  }
  assert.equal(descs.length, 4);
  const [d1, d2, d3, d4] = descs;
  assert.deepEqual([d1.key, d1.flags, d1.type, d1.rel], [0x11n, 0x01, TYPES.WE, 1], 'holder, on TPG 1');
  assert.equal(d1.tid[0], 0x45, 'iSCSI, format 01b');
  assert.equal(d1.tid.subarray(4).toString().replace(/\0+$/, ''), `${iqn},i,0x23d000000001`);
  assert.equal(d1.tid.length % 4, 0);
  assert.deepEqual([d2.key, d2.flags, d2.rel, d2.tid[0]], [0x22n, 0x02, 0, 0x05], 'ALL_TG_PT, iSCSI format 00b');
  assert.equal(d2.tid.subarray(4).toString().replace(/\0+$/, ''), 'iqn.2026-01.org.example:host2');
  assert.deepEqual([d3.tid[0], d3.tid.subarray(4, 12).toString('hex')], [6, INITIATOR_B.slice(4)], 'SAS for naa. names');
  assert.deepEqual([d4.tid[0], d4.tid.subarray(4, 12).toString('hex')], [6, INITIATOR_C.slice(4)]);
  // The ALL_TG_PT registration holds on the other target port too; i1's does not.
  const i2b = new LoopbackNexus(tpg2.openSession({ name: 'iqn.2026-01.org.example:host2' }));
  const i1b = new LoopbackNexus(tpg2.openSession({ name: iqn, isid: '23d000000001' }));
  for (const n of [i1b, i2b]) await clearUa(n);
  ok(await prOut(i2b, 0, SA.REGISTER, 0, 0x22n, 0x23n), 'registered through TPG 2 as well');
  assert.equal((await prOut(i1b, 0, SA.REGISTER, 0, 0x11n, 0x12n)).status, CONFLICT, 'not registered on TPG 2');
  // A re-login of the same initiator port is the same registrant.
  await i1.close();
  const again = new LoopbackNexus(r.tpg.openSession({ name: iqn, isid: '23d000000001' }));
  await clearUa(again);
  ok(await again.command(0, WRITE10(), { dataOut: Buffer.alloc(512) }), 'still the holder after re-login');
  const other = new LoopbackNexus(r.tpg.openSession({ name: iqn, isid: '23d000000002' }));
  await clearUa(other);
  assert.equal((await other.command(0, WRITE10(), { dataOut: Buffer.alloc(512) })).status, CONFLICT, 'another ISID is another port');
  await r.close();
});

test('SPC-2 reservations and persistent reservations exclude each other', async () => {
  const r = await rig();
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  const lu = r.sos[0].lu;
  // An SPC-2 reservation held by B (as RESERVE(6) sets it): PR commands from A conflict.
  lu.reservation = b.session;
  assert.equal((await prOut(a, 0, SA.REGISTER, 0, 0n, 1n)).status, CONFLICT);
  assert.equal((await prIn(a, 0, 0)).status, CONFLICT);
  lu.reservation = undefined;
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 1n), 'register');
  // With a registration, RESERVE/RELEASE (class 'conflict') conflict from everyone.
  const st = prState(lu);
  for (const n of [a, b]) {
    assert.equal(st.check({ def: { pr: 'conflict' }, cdb: Buffer.alloc(6), session: n.session } as unknown as ScsiCmd), false);
  }
  const reserve6 = lu.table.find(0x16);
  if (reserve6) {
    assert.equal((await a.command(0, [0x16, 0, 0, 0, 0, 0])).status, CONFLICT, 'RESERVE(6) from a registrant');
    assert.equal((await b.command(0, [0x16, 0, 0, 0, 0, 0])).status, CONFLICT, 'RESERVE(6) from another nexus');
  }
  assert.equal(INITIATOR_A.startsWith('naa.'), true);
  await r.close();
});

test('registrations and reservations survive LUN reset and nexus loss; emulate_pr off hides the commands', async () => {
  const r = await rig([{}, { attributes: { emulate_pr: false } }]);
  let a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  ok(await prOut(a, 0, SA.REGISTER, 0, 0n, 1n), 'register');
  ok(await prOut(a, 0, SA.RESERVE, TYPES.EA, 1n, 0n), 'reserve');
  assert.equal(await b.taskManagement('lun-reset', 0), 'complete');
  await a.close();
  a = await r.nexus();
  await clearUa(b);
  assert.deepEqual(await readReservation(b), { key: 1n, type: TYPES.EA });
  ok(await a.command(0, WRITE10(), { dataOut: Buffer.alloc(512) }), 'the same initiator port holds it after re-login');
  assert.equal((await b.command(0, WRITE10(), { dataOut: Buffer.alloc(512) })).status, CONFLICT);
  const off = await prIn(a, 1, 0);
  assert.deepEqual([off.senseKey, off.asc], [SenseKey.ILLEGAL_REQUEST, 0x20], 'emulate_pr=false: INVALID COMMAND OPERATION CODE');
  await r.close();
});
