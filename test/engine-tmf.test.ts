// Task attributes, task management and unit attentions, with commands in flight.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rig, INITIATOR_B, INITIATOR_C } from './util/loopback-setup';
import { gated } from './util/gated';
import { Status, SenseKey } from '../src/core/sense';
import { TaskAttr } from '../src/core/command';
import type { LoopbackNexus, LoopbackResult } from '../fabrics/loopback/loopback';

const TUR = [0, 0, 0, 0, 0, 0];
const READ10 = (lba: number, n: number) => [0x28, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, n, 0];
const tick = () => new Promise((r) => setImmediate(r));

async function gatedRig() {
  const r = await rig([{ plugin: 'gated', size: 1 << 20 }]);
  return { r, store: gated[gated.length - 1] };
}

/** Starts a command and records when it finishes. */
function track(n: LoopbackNexus, cdb: number[], attr: TaskAttr = TaskAttr.SIMPLE, order?: string[], name?: string) {
  const p = n.command(0, cdb, { taskAttr: attr }).then((res) => {
    if (order && name) order.push(name);
    return res;
  });
  return p;
}

test('ORDERED waits for older tasks, and SIMPLE tasks wait for the ORDERED one', async () => {
  const { r, store } = await gatedRig();
  const a = await r.nexus();
  const order: string[] = [];
  const s1 = track(a, READ10(0, 1), TaskAttr.SIMPLE, order, 's1');
  const o = track(a, TUR, TaskAttr.ORDERED, order, 'ordered');
  const s2 = track(a, TUR, TaskAttr.SIMPLE, order, 's2');
  const h = track(a, TUR, TaskAttr.HEAD_OF_QUEUE, order, 'head');
  await tick();
  // The head-of-queue task ran at once; the ordered one and the simple one behind it wait for s1.
  assert.deepEqual(order, ['head']);
  store.open();
  await Promise.all([s1, o, s2, h]);
  assert.deepEqual(order, ['head', 's1', 'ordered', 's2']);
  await r.close();
});

test('ABORT TASK of a running command waits for it and the command ends quietly', async () => {
  const { r, store } = await gatedRig();
  const a = await r.nexus();
  let res: LoopbackResult | undefined;
  const tag = a.submit(0, Buffer.from(READ10(0, 1)), {}, (c) => (res = c as unknown as LoopbackResult));
  await tick();
  assert.equal(store.started, 1);
  const tmf = a.taskManagement('query-task', 0, tag);
  assert.equal(await tmf, 'succeeded');
  let answered = false;
  const abort = a.taskManagement('abort-task', 0, tag).then((x) => ((answered = true), x));
  await tick();
  assert.equal(answered, false, 'the abort completes only when the task has left');
  store.open();
  assert.equal(await abort, 'complete');
  assert.equal(res!.status, Status.TASK_ABORTED);
  assert.equal(res!.quiet, true);
  assert.equal(await a.taskManagement('query-task', 0, tag), 'complete');
  assert.equal(await a.taskManagement('abort-task', 0, 999), 'no-task');
  await r.close();
});

test('ABORT TASK of a command waiting behind an ORDERED task removes it at once', async () => {
  const { r, store } = await gatedRig();
  const a = await r.nexus();
  const first = a.command(0, READ10(0, 1), { taskAttr: TaskAttr.ORDERED });
  const waitingTag = 77;
  const waiting = a.command(0, TUR, { tag: waitingTag });
  await tick();
  assert.equal(await a.taskManagement('abort-task', 0, waitingTag), 'complete');
  const w = await waiting;
  assert.equal(w.status, Status.TASK_ABORTED);
  assert.equal(w.quiet, true);
  store.open();
  assert.equal((await first).status, Status.GOOD);
  await r.close();
});

test('LUN RESET aborts other nexuses’ tasks with TASK ABORTED and sets a reset UA everywhere', async () => {
  const { r, store } = await gatedRig();
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  const bRead = b.command(0, READ10(0, 1));
  const aRead = a.command(0, READ10(8, 1));
  await tick();
  const reset = a.taskManagement('lun-reset', 0);
  store.open();
  assert.equal(await reset, 'complete');
  const rb = await bRead;
  assert.equal(rb.status, Status.TASK_ABORTED);
  assert.equal(rb.quiet, false, 'TAS=1: the other initiator is told');
  assert.equal((await aRead).quiet, true);
  for (const n of [a, b]) {
    const t = await n.command(0, TUR);
    assert.equal(t.senseKey, SenseKey.UNIT_ATTENTION);
    assert.deepEqual([t.asc, t.ascq], [0x29, 0x03]);
    assert.equal((await n.command(0, TUR)).status, Status.GOOD);
  }
  await r.close();
});

test('CLEAR TASK SET without TAS tells other initiators by COMMANDS CLEARED BY ANOTHER INITIATOR', async () => {
  const { r, store } = await gatedRig();
  r.sos[0].lu.mode.tas = false;
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  const bRead = b.command(0, READ10(0, 1));
  await tick();
  const clear = a.taskManagement('clear-task-set', 0);
  store.open();
  assert.equal(await clear, 'complete');
  assert.equal((await bRead).quiet, true);
  const t = await b.command(0, TUR);
  assert.deepEqual([t.senseKey, t.asc, t.ascq], [SenseKey.UNIT_ATTENTION, 0x2f, 0x00]);
  assert.equal((await a.command(0, TUR)).status, Status.GOOD, 'the issuer gets no UA');
  await r.close();
});

test('I_T NEXUS RESET aborts only that nexus and gives it I_T NEXUS LOSS OCCURRED', async () => {
  const { r, store } = await gatedRig();
  const a = await r.nexus();
  const c = await r.nexus(INITIATOR_C);
  const cRead = c.command(0, READ10(0, 1));
  const aRead = a.command(0, READ10(0, 1));
  await tick();
  const reset = a.taskManagement('it-nexus-reset', 0);
  store.open();
  assert.equal(await reset, 'complete');
  assert.equal((await aRead).status, Status.TASK_ABORTED);
  assert.equal((await cRead).status, Status.GOOD);
  const t = await a.command(0, TUR);
  assert.deepEqual([t.senseKey, t.asc, t.ascq], [SenseKey.UNIT_ATTENTION, 0x29, 0x07]);
  assert.equal((await c.command(0, TUR)).status, Status.GOOD);
  await r.close();
});

test('ABORT TASK SET aborts the nexus’s tasks on that LUN only', async () => {
  const { r, store } = await gatedRig();
  const a = await r.nexus();
  const b = await r.nexus(INITIATOR_B);
  const reads = [a.command(0, READ10(0, 1)), a.command(0, READ10(1, 1))];
  const other = b.command(0, READ10(2, 1));
  await tick();
  const p = a.taskManagement('abort-task-set', 0);
  store.open();
  assert.equal(await p, 'complete');
  for (const x of await Promise.all(reads)) assert.equal(x.status, Status.TASK_ABORTED);
  assert.equal((await other).status, Status.GOOD);
  assert.equal(await a.taskManagement('abort-task-set', 5), 'no-lun');
  await r.close();
});

test('ACA task attribute is refused; CLEAR ACA is rejected; NACA in the control byte is invalid', async () => {
  const r = await rig();
  const a = await r.nexus();
  const x = await a.command(0, TUR, { taskAttr: TaskAttr.ACA });
  assert.deepEqual([x.status, x.senseKey, x.asc, x.ascq], [Status.CHECK_CONDITION, SenseKey.ILLEGAL_REQUEST, 0x24, 0]);
  assert.equal(await a.taskManagement('clear-aca', 0), 'rejected');
  const naca = await a.command(0, [0, 0, 0, 0, 0, 0x04]);
  assert.equal(naca.asc, 0x24);
  assert.deepEqual(naca.field, { inCdb: true, byte: 5, bit: 2 });
  await r.close();
});

test('a tag already in flight is an overlapped command', async () => {
  const { r, store } = await gatedRig();
  const a = await r.nexus();
  const first = a.command(0, READ10(0, 1), { tag: 5 });
  await tick();
  const dup = await a.command(0, TUR, { tag: 5 });
  assert.deepEqual([dup.senseKey, dup.asc, dup.ascq], [SenseKey.ABORTED_COMMAND, 0x4e, 0x00]);
  store.open();
  assert.equal((await first).status, Status.GOOD);
  await r.close();
});

test('unmapped LUNs: LOGICAL UNIT NOT SUPPORTED', async () => {
  const r = await rig();
  const a = await r.nexus();
  const x = await a.command(3, TUR);
  assert.deepEqual([x.status, x.senseKey, x.asc, x.ascq], [Status.CHECK_CONDITION, SenseKey.ILLEGAL_REQUEST, 0x25, 0]);
  await r.close();
});

test('adding a LUN raises REPORTED LUNS DATA HAS CHANGED; growing one raises CAPACITY DATA HAS CHANGED', async () => {
  const r = await rig([{}, {}]);
  const a = await r.nexus();
  r.tpg.removeLun(1);
  let t = await a.command(0, TUR);
  assert.deepEqual([t.senseKey, t.asc, t.ascq], [SenseKey.UNIT_ATTENTION, 0x3f, 0x0e]);
  r.tpg.addLun(1, r.sos[1]);
  t = await a.command(0, TUR);
  assert.deepEqual([t.asc, t.ascq], [0x3f, 0x0e]);
  // The new LUN's nexus starts with the same pending change report.
  t = await a.command(1, TUR);
  assert.deepEqual([t.asc, t.ascq], [0x3f, 0x0e]);
  await r.sos[0].backstore.resize!(128 << 20);
  r.sos[0].lu.capacityChanged();
  t = await a.command(0, TUR);
  assert.deepEqual([t.senseKey, t.asc, t.ascq], [SenseKey.UNIT_ATTENTION, 0x2a, 0x09]);
  assert.equal((await a.command(0, TUR)).status, Status.GOOD);
  await r.close();
});
