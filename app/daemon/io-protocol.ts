// The messages between the main thread and an I/O thread (io_threads > 1):
// each request carries an id and gets exactly one reply with it. Structured
// clones of plain data only; they carry configuration, control views and
// metrics, never commands (a command is served where its LU lives).

import type { TsioConfig } from '../config/config';
import type { MetricPart } from './metrics';
import type { ReconcileReport } from './reconcile';
import type { IscsiRoutes } from './placement';
import type { Handoff } from '../../fabrics/iscsi/handoff';
import type { CarriedUnit } from './carry';

/** What an I/O thread starts with (workerData). */
export interface IoThreadData {
  index: number;
  count: number;
  stateDir: string;
  logLevel: string;
  priorityPrefix: boolean;
  /** daemon.poll_max_ns as the main thread applied it. */
  pollMaxNs: number;
}

export type IoRequest =
  /**
   * Bring this thread's part to config; all or nothing on the thread. handOver: storage objects leaving for
   * another thread, whose state the reply carries (IoReconciled); adopt: that state, for those arriving here.
   */
  | { id: number; kind: 'reconcile'; config: TsioConfig; handOver?: string[]; adopt?: Record<string, CarriedUnit> }
  /** How many front-ends are connected to each of these vhost controllers (placement endpoint keys). */
  | { id: number; kind: 'frontends'; endpoints: string[] }
  /** Run a control method on this thread's part (params decoded on main). */
  | { id: number; kind: 'method'; method: string; params: Record<string, unknown> }
  | { id: number; kind: 'metrics' }
  /** Who listens on each iSCSI portal, where each iSCSI TPG lives; `relisten`: listen (or stop) as they now say. */
  | { id: number; kind: 'routes'; routes: IscsiRoutes; relisten: boolean }
  /** An iSCSI connection another thread accepted, for a target served here. */
  | { id: number; kind: 'adopt'; handoff: Handoff }
  /** Close every service and store (shutdown). */
  | { id: number; kind: 'close' };

/** A method's failure as the control API reports it (an RpcError's code, or none for a plain failure). */
export interface IoError {
  message: string;
  code?: number;
}

export interface IoReply {
  id: number;
  result?: unknown;
  error?: IoError;
}

/** A reconcile's result: its report, and the state of the units it handed over (shared memory, not copied). */
export interface IoReconciled {
  report: ReconcileReport;
  handedOver: Record<string, CarriedUnit>;
}

/** The first message an I/O thread sends: it runs, and this is its kernel thread id. */
export interface IoReady {
  ready: true;
  tid: number;
}

/** Sent by an I/O thread unasked: an iSCSI connection for another thread's target (main passes it on). */
export interface IoHandoff {
  handoff: Handoff & { to: number };
}
