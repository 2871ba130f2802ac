// tsio as a library: the package's entry ("main"). It stands above the layers
// on purpose and is imported by nothing inside tsio: it exports the engine
// (the object model, sessions, commands, sense), the backstore contract and
// registry with createRoot() to build storage objects from plugin names, and
// the loopback fabric, the in-process initiator that embedding programs and
// tests drive.
export { Root } from './model/root';
export type { RootOptions, StorageObjectSpec } from './model/root';
export { StorageObject } from './model/storage-object';
export { Target, Tpg, Lun, NodeAcl, AccessDenied } from './model/target';
export { Session } from './core/session';
export { TaskAttr } from './core/command';
export type { CommandRequest, Completion } from './core/command';
export type { Backstore, BackstoreFactory, BackstoreOptions } from './core/backstore';
export type { FabricModule, FabricService } from './core/fabric';
export { Status, SenseKey, Asc, ScsiError, decodeSense } from './core/sense';
export { createRoot, registerBackstore } from '../app/registry';
export { LoopbackNexus } from '../fabrics/loopback/loopback';
