// Sessions: I_T nexuses opened by fabrics on a TPG. A session is what a
// fabric holds: it hands commands and task management functions to the core
// through it. Its per-LUN state (ItlNexus) and what units and commands see of
// it (ItNexus) are declared in logical-unit.ts, below the command path.

import type { CommandRequest, CompletionCallback, ScsiCmd } from './command';
import { submit } from './engine';
import { ItlNexus, type InitiatorId, type ItNexus, type LogicalUnit, type Task, type TargetPort } from './logical-unit';
import { Asc } from './sense';
import { IoStats } from './stats';
import { TmfFunction, TmfResult, taskManagement } from './tmr';

export type { InitiatorId, ItlNexus, TargetPort } from './logical-unit';

/** What a nexus may reach: LUN number -> unit and write protection. */
export type LunMap = Map<number, { lu: LogicalUnit; writeProtect: boolean }>;

let nextSessionId = 1;
let sessionIdStep = 1;

/** Session ids from first, step apart: each I/O thread its own residue, so ids stay unique in the daemon. */
export function sessionIds(first: number, step: number): void {
  nextSessionId = first;
  sessionIdStep = step;
}

/** An I_T nexus; P is the kind of port it is opened on (the model's Tpg for sessions fabrics open). */
export class Session<P extends TargetPort = TargetPort> implements ItNexus {
  readonly id = (nextSessionId += sessionIdStep) - sessionIdStep;
  readonly itls = new Map<number, ItlNexus>();
  /** Tasks addressed to LUNs this nexus has no mapping for (INQUIRY, REPORT LUNS...). */
  readonly unmappedTasks = new Map<number, Task>();
  closed = false;
  /** Set by the fabric that opened the nexus: told when anyone else closes it (an ACL or TPG removed live). */
  onClosed: (() => void) | undefined;
  readonly createdAt = Date.now();
  readonly stats = new IoStats();

  constructor(
    readonly tpg: P,
    readonly initiator: InitiatorId,
    map: LunMap,
  ) {
    this.remap(map);
    // A new nexus starts with POWER ON, RESET, OR BUS DEVICE RESET OCCURRED on each LU.
    this.addUaAll(Asc.POWER_ON_RESET);
  }

  /** The initiator port name as SPC TransportIDs and logs write it. */
  get initiatorPort(): string {
    return this.initiator.isid ? `${this.initiator.name},i,0x${this.initiator.isid}` : this.initiator.name;
  }

  /** Applies a new LUN map; returns true when the set of LUNs changed. */
  remap(map: LunMap): boolean {
    let changed = false;
    for (const [n, itl] of this.itls) {
      const m = map.get(n);
      if (!m || m.lu !== itl.lu) {
        this.dropItl(itl);
        changed = true;
      } else {
        itl.writeProtect = m.writeProtect;
      }
    }
    for (const [n, m] of map) {
      if (this.itls.has(n)) continue;
      const itl = new ItlNexus(this, n, m.lu, m.writeProtect);
      this.itls.set(n, itl);
      m.lu.nexuses.add(itl);
      changed = true;
    }
    return changed;
  }

  private dropItl(itl: ItlNexus): void {
    this.itls.delete(itl.lun);
    itl.lu.nexuses.delete(itl);
    itl.lu.medium?.preventers.delete(itl);
    if (itl.lu.reservation === this && ![...this.itls.values()].some((i) => i.lu === itl.lu)) {
      itl.lu.reservation = undefined;
    }
  }

  addUaAll(asc: number): void {
    for (const itl of this.itls.values()) itl.addUa(asc);
  }

  /** LUN numbers this nexus sees, ascending. */
  lunNumbers(): number[] {
    return [...this.itls.keys()].sort((a, b) => a - b);
  }

  /** Hands a command to the core; `done` is called exactly once with its completion. */
  submit(req: CommandRequest, done: CompletionCallback): void {
    submit(this, req, done);
  }

  /** Promise form of submit, for code that is not on the hot path. */
  run(req: CommandRequest): Promise<ScsiCmd> {
    return new Promise((resolve) => submit(this, req, (c) => resolve(c as ScsiCmd)));
  }

  /** A task management function on this nexus. */
  taskManagement(fn: TmfFunction, lun: number, tag?: number): Promise<TmfResult> {
    return taskManagement(this, fn, lun, tag);
  }

  /** Ends the nexus: aborts its tasks, drops its reservations and mappings. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClosed?.();
    await taskManagement(this, 'it-nexus-loss', 0);
    for (const itl of [...this.itls.values()]) this.dropItl(itl);
    this.tpg.forget(this);
  }
}
