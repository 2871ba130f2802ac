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
import { attachAlua } from '../src/scsi/alua';
import { createRdMcp } from '../backstores/rd-mcp';
import { createFileio } from '../backstores/fileio';
import { createBlock } from '../backstores/block';
import { createPscsi } from '../backstores/pscsi';
import { createRbd } from '../backstores/rbd';
import { join } from 'node:path';
import { ShelfBackstore, createChanger, createTape, list } from '../backstores/tape';
import { tapeTable } from '../src/scsi/tape';
import { attachTapeDrive, tapeDriveOf } from '../src/scsi/ssc-drive';
import { changerTable } from '../src/scsi/smc';
import { MediaLibrary, attachLibrary } from '../src/scsi/smc-library';
import { DiscBackstore, createOptical } from '../backstores/optical';
import { opticalTable } from '../src/scsi/mmc';
import { attachOpticalDrive } from '../src/scsi/mmc-drive';
import type { CommandTable } from '../src/core/opcodes';
import { storageLost } from '../src/core/engine';
import { watchThresholds } from '../src/scsi/lbp-thresholds';
import { iscsiFabric } from '../fabrics/iscsi';
import { vhostFabric } from '../fabrics/vhost/vhost';
import { specs } from './config/specs';

const backstores = new Map<string, BackstoreFactory>([
  ['rd_mcp', createRdMcp],
  ['fileio', createFileio],
  ['block', createBlock],
  ['pscsi', createPscsi],
  ['rbd', createRbd],
  ['tape', createTape],
  ['changer', createChanger],
  ['optical', createOptical],
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
export async function buildStorageObject(
  spec: StorageObjectSpec, stateDir: string | undefined, lookup: StorageObjectLookup = () => undefined,
): Promise<StorageObject> {
  const attributes: StorageAttributes = { ...specs().storageAttributeDefaults(), ...spec.attributes };
  if (spec.readonly) attributes.readonly = true;
  const backstore = await backstoreFactory(spec.plugin)(spec);
  const type = DEVICE_TYPES.get(spec.plugin);
  if (type?.removable) attributes.removable = true;
  // A pass-through device is served by the table of its own device type.
  const table = type?.table ?? (backstore.passthrough ? passthroughTable(backstore.passthrough.deviceType) : diskTable);
  const so = new StorageObject(spec.name, spec.plugin, attributes, backstore, table, spec.serial, spec.compat);
  // Shared storage can grow under us (another gateway, `rbd resize`): the unit tells its initiators.
  backstore.watchCapacity?.(() => so.lu.capacityChanged());
  // A deleted backing file: the unit answers NOT READY instead of writing where nothing will keep it.
  backstore.watchHealth?.((why) => storageLost(so.lu, why));
  // A thin unit on a store that knows its space: THIN PROVISIONING SOFT THRESHOLD REACHED before it fills.
  watchThresholds(so.lu);
  try {
    // A pass-through device keeps its own persistent reservations (as LIO's pscsi); shared storage's are in its cluster.
    if (!backstore.passthrough) await attachPrStore(so.lu, stateDir);
    await attachAlua(so.lu);
    await type?.attach(so, lookup);
  } catch (e) {
    await backstore.close();
    throw e;
  }
  return so;
}

/** Finds another storage object by path (a changer's drives). */
export type StorageObjectLookup = (path: string) => StorageObject | undefined;

/** The device types other than disks: their plugins, command tables, and the state each unit gets. */
interface DeviceType {
  table: CommandTable;
  /** INQUIRY RMB: the medium can be removed. */
  removable: boolean;
  attach(so: StorageObject, lookup: StorageObjectLookup): Promise<void>;
}

const DEVICE_TYPES = new Map<string, DeviceType>([
  ['tape', {
    table: tapeTable,
    removable: true,
    async attach(so) {
      const b = so.backstore as ShelfBackstore;
      const drive = attachTapeDrive(so.lu, b.shelf);
      if (b.cartridges.length > 0) await drive.insert(b.cartridges[0]);
      b.onClose = async () => {
        if (drive.cartridge) await drive.remove(true);
      };
    },
  }],
  ['changer', {
    table: changerTable,
    removable: false,
    async attach(so, lookup) {
      const b = so.backstore as ShelfBackstore;
      const o = b.options;
      const layout = { slots: o.slots ?? 8, importExport: o.import_export ?? 1, drives: list(o.drives) };
      const drive = (name: string) => {
        const d = lookup(`/backstores/tape/${name}`);
        return d && tapeDriveOf(d.lu);
      };
      // The state file is written at every move: nothing is left to save at close (the drives may be gone by then).
      attachLibrary(new MediaLibrary(so.lu, b.shelf, layout, join(b.shelf.dir, `changer-${so.name}.json`), drive, b.cartridges));
    },
  }],
  ['optical', {
    table: opticalTable,
    removable: true,
    async attach(so) {
      attachOpticalDrive(so.lu, so.backstore as DiscBackstore);
    },
  }],
]);

/** A Root that builds storage objects with this build's plugins. */
export function createRoot(options: Omit<RootOptions, 'build'> = {}): Root {
  const root: Root = new Root({ ...options, build: (spec) => buildStorageObject(spec, options.stateDir, (path) => root.storageObjects.get(path)) });
  return root;
}
