// Task management functions (SAM-5 7): aborts, task set clearing and resets,
// mapped from every fabric's TMF requests. Running commands cannot be
// stopped inside a backstore, so an abort marks them and waits: the function
// completes when every affected command has left the task set.

import type { ItNexus, LogicalUnit, Task } from './logical-unit';
import { Asc } from './sense';
import { CmdState } from './types';

export type TmfFunction =
  | 'abort-task'
  | 'abort-task-set'
  | 'clear-task-set'
  | 'lun-reset'
  | 'it-nexus-reset'
  | 'query-task'
  | 'clear-aca'
  | 'target-reset'
  /** Not a TMF: the nexus is gone (logout, connection loss); its tasks end silently. */
  | 'it-nexus-loss';

/** SAM-5 7.1 service responses. */
export type TmfResult = 'complete' | 'succeeded' | 'no-task' | 'no-lun' | 'not-supported' | 'rejected';

/** Aborts one command; returns a promise when it must still finish running. */
function abort(cmd: Task, by: 'self' | 'other'): Promise<void> | undefined {
  if (cmd.state === CmdState.DONE) return undefined;
  cmd.abortedBy ??= by;
  // A command still waiting in the task set is taken out and ended there and then.
  if (cmd.state === CmdState.DELAYED && cmd.lu.unqueue(cmd)) return undefined;
  const wait = new Promise<void>((resolve) => (cmd.waiters ??= []).push(resolve));
  cmd.onAbort?.();
  return wait;
}

function abortAll(cmds: Iterable<Task>, by: (c: Task) => 'self' | 'other'): Promise<unknown> {
  const waits: Promise<void>[] = [];
  for (const c of [...cmds]) {
    const w = abort(c, by(c));
    if (w) waits.push(w);
  }
  return Promise.all(waits);
}

/**
 * Aborts tasks as CLEAR TASK SET does (also PREEMPT AND ABORT): the issuer's
 * end quietly; other nexuses' get TASK ABORTED when TAS is set, otherwise
 * they learn it from COMMANDS CLEARED BY ANOTHER INITIATOR. issuer undefined: an
 * initiator on another gateway (every victim is another nexus).
 */
export function abortClearing(lu: LogicalUnit, victims: Task[], issuer: ItNexus | undefined): Promise<unknown> {
  const done = abortAll(victims, (c) => (c.session === issuer ? 'self' : 'other'));
  if (!lu.mode.tas) {
    const hit = new Set(victims.filter((c) => c.session !== issuer).map((c) => c.itl));
    for (const other of hit) other.addUa(Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
  }
  return done;
}

/**
 * LOGICAL UNIT RESET's effect on a unit: every task aborted (the issuer's quietly), the SPC-2
 * reservation and medium removal prevention released, BUS DEVICE RESET to every nexus. issuer
 * undefined: the reset came through another gateway.
 */
export function resetUnit(lu: LogicalUnit, issuer: ItNexus | undefined): Promise<unknown> {
  const done = abortAll(tasksOf(lu), (c) => (c.session === issuer ? 'self' : 'other'));
  lu.reservation = undefined;
  lu.medium?.preventers.clear();
  lu.raiseUa(Asc.BUS_DEVICE_RESET_OCCURRED);
  return done;
}

/** Every task on a logical unit, from every nexus. */
function tasksOf(lu: LogicalUnit): Task[] {
  const all: Task[] = [];
  for (const itl of lu.nexuses) all.push(...itl.tasks.values());
  return all;
}

export async function taskManagement(session: ItNexus, fn: TmfFunction, lun: number, tag?: number): Promise<TmfResult> {
  const itl = session.itls.get(lun);
  switch (fn) {
    case 'abort-task': {
      const cmd = itl?.tasks.get(tag ?? -1) ?? session.unmappedTasks.get(tag ?? -1);
      if (!cmd) return 'no-task';
      await abort(cmd, 'self');
      return 'complete';
    }
    case 'query-task':
      return itl?.tasks.has(tag ?? -1) ? 'succeeded' : 'complete';
    case 'abort-task-set':
      if (!itl) return 'no-lun';
      await abortAll(itl.tasks.values(), () => 'self');
      return 'complete';
    case 'clear-task-set':
    case 'lun-reset': {
      if (!itl) return 'no-lun';
      const lu = itl.lu;
      if (fn === 'lun-reset') {
        await resetUnit(lu, session);
        // A unit other gateways serve too resets there as well before the reset completes.
        await lu.onReset?.();
      } else {
        await abortClearing(lu, tasksOf(lu), session);
      }
      return 'complete';
    }
    case 'it-nexus-reset':
    case 'it-nexus-loss': {
      const cmds: Task[] = [...session.unmappedTasks.values()];
      for (const i of session.itls.values()) cmds.push(...i.tasks.values());
      const done = abortAll(cmds, () => 'self');
      for (const i of session.itls.values()) {
        if (i.lu.reservation === session) i.lu.reservation = undefined;
        i.lu.medium?.preventers.delete(i);
        if (fn === 'it-nexus-reset') i.addUa(Asc.I_T_NEXUS_LOSS_OCCURRED);
      }
      await done;
      return 'complete';
    }
    case 'clear-aca':
      // NormACA is 0 in our INQUIRY data: there is never an ACA condition to clear.
      return 'rejected';
    case 'target-reset':
      return 'not-supported';
  }
}
