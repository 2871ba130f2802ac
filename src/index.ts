// tsio as a library: build a configuration, open loopback nexuses, run commands.
export { Root } from './model/root';
export type { StorageObjectSpec } from './model/root';
export { StorageObject } from './model/storage-object';
export { Target, Tpg, Lun, NodeAcl, AccessDenied } from './model/target';
export { Session } from './core/session';
export { TaskAttr } from './core/command';
export type { CommandRequest, Completion } from './core/command';
export { Status, SenseKey, Asc, ScsiError, decodeSense } from './core/sense';
export { LoopbackNexus } from '../fabrics/loopback/loopback';
