// What tsiod's control socket and its clients (tcli) agree on: where the
// socket is, the JSON-RPC error codes, and the shapes of results a client
// reads. Types only besides the constants, so a client loads nothing of the
// daemon, the fabrics or the native addon.

export const DEFAULT_CONTROL_PATH = '/run/tsio/control.sock';

export const RpcCode = { PARSE: -32700, INVALID_REQUEST: -32600, METHOD: -32601, PARAMS: -32602, INTERNAL: -32603, FAILED: -32000 } as const;

/** storage_objects.reservations: a unit's persistent reservation state. */
export type { PrView } from '../../src/scsi/pr';
/** Statistics in sessions.list and storage_objects.info. */
export type { IoStatsSnapshot } from '../../src/core/stats';
/** tree and tpgs.get: a vhost TPG's controller, target and connected front-ends. */
export type { VhostTpgState } from '../../fabrics/vhost/vhost';
/** config.get: the running configuration. */
export type { StorageObjectConfig, TargetConfig, TpgConfig, NodeAclConfig, TsioConfig } from '../config/config';
