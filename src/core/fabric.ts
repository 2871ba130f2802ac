// The contract between the core and a fabric that serves targets on its own
// (listens on portals, owns a vhost socket...). A fabric opens sessions on a
// TPG (model/target.ts) and submits commands through them (command.ts has the
// request and completion); the application starts and refreshes services.

import type { Root } from '../model/root';
import type { Target } from '../model/target';

/** A target being served by its fabric. */
export interface FabricService {
  /** The target's TPGs, portals or sockets changed (live reconfiguration). */
  refresh?(): Promise<void>;
  /** Stops listening and closes every session (logout requested where the protocol can). */
  close(): Promise<void>;
}

export interface FabricModule {
  readonly name: string;
  /** Starts serving a target; resolves once it listens. */
  serve(target: Target, root: Root): Promise<FabricService>;
}
