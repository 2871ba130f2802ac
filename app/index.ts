// tsio as a library: the package's entry ("main"). It belongs to the application
// layer because it wires the layers below, and nothing inside tsio imports it: it exports the engine
// (the object model, sessions, commands, sense), the backstore contract and
// registry with createRoot() to build storage objects from plugin names, and
// the loopback fabric, the in-process initiator that embedding programs and
// tests drive.
export { Root } from '../src/model/root';
export type { RootOptions, StorageObjectSpec } from '../src/model/root';
export { StorageObject } from '../src/model/storage-object';
export { Target, Tpg, Lun, NodeAcl, AccessDenied } from '../src/model/target';
export { Session } from '../src/core/session';
export { TaskAttr } from '../src/core/command';
export type { CommandRequest, Completion } from '../src/core/command';
export type { Backstore, BackstoreFactory, BackstoreOptions } from '../src/core/backstore';
export type { FabricModule, FabricService } from '../src/core/fabric';
export { Status, SenseKey, Asc, ScsiError, decodeSense } from '../src/core/sense';
export { createRoot, registerBackstore } from './registry';
export { LoopbackNexus } from '../fabrics/loopback/loopback';
