// The live configuration (rtslib's RTSRoot): storage objects and targets.
// The daemon, the control API and embedding programs change it through here.

import type { BackstoreOptions } from '../core/backstore';
import type { StorageAttributes } from '../core/attributes';
import type { IdentityCompat, StorageObject } from './storage-object';
import { Target, type Auth } from './target';

export interface StorageObjectSpec extends BackstoreOptions {
  plugin: string;
  attributes?: Partial<StorageAttributes>;
  /** Unit serial (saveconfig's `wwn`); default: derived from host and name. */
  serial?: string;
  /** Whose identity the unit presents (StorageObject.compat); default tsio. */
  compat?: IdentityCompat;
}

export interface RootOptions {
  /** Where state that outlives a restart is kept (APTPL persistent reservations); none: nothing persists. */
  stateDir?: string;
  /**
   * Builds a storage object from its spec: which plugin, device type and PR
   * store it gets is the application's choice (app/registry.ts createRoot).
   */
  build?: (spec: StorageObjectSpec) => Promise<StorageObject>;
}

export class Root {
  constructor(readonly options: RootOptions = {}) {}

  readonly storageObjects = new Map<string, StorageObject>();
  readonly targets = new Map<string, Target>();
  /** Per-fabric settings from fabric_modules (iSCSI discovery authentication). */
  readonly fabricSettings = new Map<string, { discovery_auth?: Auth & { enable?: boolean } }>();

  async createStorageObject(spec: StorageObjectSpec): Promise<StorageObject> {
    const key = `/backstores/${spec.plugin}/${spec.name}`;
    if (this.storageObjects.has(key)) throw new Error(`storage object ${key} already exists`);
    if (!this.options.build) throw new Error('this Root builds no storage objects: make it with createRoot()');
    const so = await this.options.build(spec);
    this.storageObjects.set(key, so);
    return so;
  }

  storageObject(path: string): StorageObject {
    const so = this.storageObjects.get(path);
    if (!so) throw new Error(`no storage object ${path}`);
    return so;
  }

  createTarget(fabric: string, wwn: string): Target {
    if (this.targets.has(wwn)) throw new Error(`target ${wwn} already exists`);
    const t = new Target(fabric, wwn);
    this.targets.set(wwn, t);
    return t;
  }

  /** Removes a storage object no LUN uses any more; its store is flushed and released. */
  async deleteStorageObject(path: string): Promise<void> {
    const so = this.storageObject(path);
    this.storageObjects.delete(path);
    so.lu.closed = true;
    await so.backstore.close();
  }

  /** Removes a target after closing every session of its TPGs. */
  async deleteTarget(wwn: string): Promise<void> {
    const t = this.targets.get(wwn);
    if (!t) throw new Error(`no target ${wwn}`);
    this.targets.delete(wwn);
    for (const tpg of t.tpgs.values()) await Promise.all([...tpg.sessions].map((s) => s.close()));
  }

  /** Closes every session and flushes and releases every store. */
  async close(): Promise<void> {
    for (const t of this.targets.values()) {
      for (const tpg of t.tpgs.values()) await Promise.all([...tpg.sessions].map((s) => s.close()));
    }
    await Promise.all([...this.storageObjects.values()].map((so) => {
      so.lu.closed = true;
      return so.backstore.close();
    }));
  }
}
