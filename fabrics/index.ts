// Fabric modules by name, as configs name them. The daemon asks each target's
// fabric to serve it (listen on portals, own a vhost socket...); the control
// API tells a running service about live changes through the same handle.

import type { Root } from '../src/model/root';
import type { Target } from '../src/model/target';
import { iscsiFabric } from './iscsi';
import { vhostFabric } from './vhost/vhost';

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

const modules = new Map<string, FabricModule>([
  // Loopback nexuses are opened in-process by their users: nothing to listen on.
  ['loopback', { name: 'loopback', serve: async () => ({ close: async () => {} }) }],
  ['iscsi', iscsiFabric],
  ['vhost', vhostFabric],
]);

export function registerFabric(m: FabricModule): void {
  modules.set(m.name, m);
}

export function fabricModule(name: string): FabricModule | undefined {
  return modules.get(name);
}
