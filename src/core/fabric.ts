// The contract between the core and a fabric that serves targets on its own
// (listens on portals, owns a vhost socket...). A fabric opens sessions on a
// TPG (model/target.ts) and submits commands through them (command.ts has the
// request and completion); the application starts and refreshes services.

import type { Root } from '../model/root';
import type { Target, Tpg } from '../model/target';

/** A target being served by its fabric. */
export interface FabricService {
  /** The target's TPGs, portals or sockets changed (live reconfiguration). */
  refresh?(): Promise<void>;
  /** Stops listening and closes every session (logout requested where the protocol can). */
  close(): Promise<void>;
  /** What the fabric shows of one of its TPGs beyond config and sessions, for the control API (vhost: controller, front-ends). */
  describe?(tpg: Tpg): object | undefined;
}

/** One sample of a fabric's own state for the daemon's metrics (Prometheus text exposition). */
export interface MetricSample {
  /** The metric's name (tsio_<fabric>_...). */
  readonly name: string;
  /** Said once per name, with the name's first sample. */
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface FabricModule {
  readonly name: string;
  /** Starts serving a target; resolves once it listens. */
  serve(target: Target, root: Root): Promise<FabricService>;
  /** The fabric's process-wide state (buffer pools...); the samples of one name come together. */
  metrics?(): MetricSample[];
}
