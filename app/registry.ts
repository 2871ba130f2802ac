// The composition root: which backstore plugins and fabric modules this build
// has, by the names configs use, and how a storage object is put together
// from its spec (the backstore, the device type's command table, the PR store).
// The engine knows none of them by name; the daemon, tests and embedding
// programs get a Root wired through createRoot().

import type { BackstoreFactory } from '../src/core/backstore';
import type { FabricModule } from '../src/core/fabric';
import { Root, type RootOptions, type StorageObjectSpec } from '../src/model/root';
import { StorageObject } from '../src/model/storage-object';
import type { StorageAttributes } from '../src/core/attributes';
import { diskTable } from '../src/scsi/disk';
import { passthroughTable } from '../src/scsi/passthrough';
import { attachPrStore } from '../src/scsi/pr';
import { createRdMcp } from '../backstores/rd-mcp';
import { createFileio } from '../backstores/fileio';
import { createBlock } from '../backstores/block';
import { createPscsi } from '../backstores/pscsi';
import { createRbd } from '../backstores/rbd';
import { iscsiFabric } from '../fabrics/iscsi';
import { vhostFabric } from '../fabrics/vhost/vhost';
import { specs } from './config/specs';

const backstores = new Map<string, BackstoreFactory>([
  ['rd_mcp', createRdMcp],
  ['fileio', createFileio],
  ['block', createBlock],
  ['pscsi', createPscsi],
  ['rbd', createRbd],
]);

const fabrics = new Map<string, FabricModule>([
  // Loopback nexuses are opened in-process by their users: nothing to listen on.
  ['loopback', { name: 'loopback', serve: async () => ({ close: async () => {} }) }],
  ['iscsi', iscsiFabric],
  ['vhost', vhostFabric],
]);

/** Adds a backstore plugin (tests, embedding programs). */
export function registerBackstore(plugin: string, factory: BackstoreFactory): void {
  backstores.set(plugin, factory);
}

export function backstoreFactory(plugin: string): BackstoreFactory {
  const f = backstores.get(plugin);
  if (!f) throw new Error(`unknown backstore plugin '${plugin}' (known: ${[...backstores.keys()].join(', ')})`);
  return f;
}

export function registerFabric(m: FabricModule): void {
  fabrics.set(m.name, m);
}

export function fabricModule(name: string): FabricModule | undefined {
  return fabrics.get(name);
}

/** Every fabric module of this build (the daemon's metrics ask each for its own). */
export function fabricModules(): FabricModule[] {
  return [...fabrics.values()];
}

/** Builds a storage object from its spec; attributes the spec leaves out take specs/storage-object.yaml's defaults. */
export async function buildStorageObject(spec: StorageObjectSpec, stateDir: string | undefined): Promise<StorageObject> {
  const attributes: StorageAttributes = { ...specs().storageAttributeDefaults(), ...spec.attributes };
  if (spec.readonly) attributes.readonly = true;
  const backstore = await backstoreFactory(spec.plugin)(spec);
  // A pass-through device is served by the table of its own device type.
  const table = backstore.passthrough ? passthroughTable(backstore.passthrough.deviceType) : diskTable;
  const so = new StorageObject(spec.name, spec.plugin, attributes, backstore, table, spec.serial, spec.compat);
  // Shared storage can grow under us (another gateway, `rbd resize`): the unit tells its initiators.
  backstore.watchCapacity?.(() => so.lu.capacityChanged());
  // A pass-through device keeps its own persistent reservations (as LIO's pscsi).
  if (!backstore.passthrough) attachPrStore(so.lu, stateDir);
  return so;
}

/** A Root that builds storage objects with this build's plugins. */
export function createRoot(options: Omit<RootOptions, 'build'> = {}): Root {
  return new Root({ ...options, build: (spec) => buildStorageObject(spec, options.stateDir) });
}
