// Task Management Function requests (RFC 7143 11.5, 11.6): each iSCSI
// function mapped once to the core's (tmr.ts), its result to a TMF response
// code; target resets as a LUN reset of every LUN, the cold one ending the
// session; task reassignment refused (no ERL 2).

import type { Session as CoreSession } from '../../src/core/session';
import type { TmfFunction, TmfResult } from '../../src/core/tmr';
import { log } from '../../src/core/log';
import type { CommandWindow } from './command-window';
import type { Connection } from './connection';
import { H, TMF_FUNCTION_MASK, TmfFn, TmfRsp, decodeLun } from './pdu';
import { tmfResponsePdu } from './pdu-builders';
import type { Retentions } from './recovery';
import type { ScsiCommands } from './scsi-commands';

/** The functions the core carries out, by iSCSI function code. */
export const TMF_FUNCTIONS: ReadonlyMap<number, TmfFunction> = new Map<number, TmfFunction>([
  [TmfFn.ABORT_TASK, 'abort-task'],
  [TmfFn.ABORT_TASK_SET, 'abort-task-set'],
  [TmfFn.CLEAR_ACA, 'clear-aca'],
  [TmfFn.CLEAR_TASK_SET, 'clear-task-set'],
  [TmfFn.LUN_RESET, 'lun-reset'],
]);

/** The response code of each of the core's results. */
export const TMF_RESPONSES: Readonly<Record<TmfResult, number>> = {
  complete: TmfRsp.COMPLETE,
  succeeded: TmfRsp.COMPLETE,
  'no-task': TmfRsp.NO_TASK,
  'no-lun': TmfRsp.NO_LUN,
  'not-supported': TmfRsp.NOT_SUPPORTED,
  rejected: TmfRsp.REJECTED,
};

/** What task management needs of its session (iscsi-session.ts). */
export interface TmfSession {
  /** The nexus; undefined in a discovery session. */
  readonly core: CoreSession | undefined;
  readonly window: CommandWindow;
  readonly commands: Pick<ScsiCommands, 'stopWaiting'>;
  readonly kept: Retentions<Connection>;
  close(why: string): void;
}

/** A TMF request from c; answered once the core is done with it. */
export async function taskManagement(s: TmfSession, c: Connection, h: Buffer): Promise<void> {
  const fn = h[H.FLAGS] & TMF_FUNCTION_MASK;
  const itt = h.readUInt32BE(H.ITT);
  const rtt = h.readUInt32BE(H.W20);
  const refCmdSN = h.readUInt32BE(H.W32);
  const lun = decodeLun(h);
  let rsp: number = TmfRsp.NOT_SUPPORTED;
  const core = s.core;
  if (core === undefined) rsp = TmfRsp.AUTH_FAILED;
  else {
    const coreFn = TMF_FUNCTIONS.get(fn);
    try {
      if (coreFn !== undefined) {
        // The core marks the victims aborted synchronously; writes among them then stop waiting for data.
        const pending = core.taskManagement(coreFn, lun, rtt);
        s.commands.stopWaiting(fn === TmfFn.ABORT_TASK ? rtt : undefined, lun);
        const r = await pending;
        rsp = TMF_RESPONSES[r];
        // A task that never arrived but whose CmdSN is in the window counts as received (RFC 7143 11.5.1).
        if (fn === TmfFn.ABORT_TASK && r === 'no-task' && s.window.holds(refCmdSN)) rsp = TmfRsp.COMPLETE;
      } else if (fn === TmfFn.TARGET_WARM_RESET || fn === TmfFn.TARGET_COLD_RESET) {
        for (const n of core.lunNumbers()) await core.taskManagement('lun-reset', n);
        rsp = TmfRsp.COMPLETE;
      } else if (fn === TmfFn.TASK_REASSIGN) {
        rsp = TmfRsp.NO_REASSIGN;
      }
    } catch (e) {
      log.warn(`iscsi: TMF ${fn}: ${(e as Error).message}`);
      rsp = TmfRsp.REJECTED;
    }
  }
  if (c.closed) return;
  const r = tmfResponsePdu(c, s.window, itt, rsp);
  c.send(r);
  s.kept.response(c, r);
  if (fn === TmfFn.TARGET_COLD_RESET && rsp === TmfRsp.COMPLETE) s.close('target cold reset');
}
