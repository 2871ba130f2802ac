// virtio-scsi's layouts and numbers (virtio 1.2, device-types/scsi). One
// module: the device and the frontend tool read the same named offsets.

/** Queue indexes: control, event, then the request queues. */
export const VQ = { CONTROL: 0, EVENT: 1, REQUEST0: 2 } as const;

/** virtio-scsi feature bits. */
export const ScsiFeature = { INOUT: 0n, HOTPLUG: 1n, CHANGE: 2n, T10_PI: 3n } as const;

/** Command request header (device-readable): lun[8], le64 id, task_attr, prio, crn, cdb[32]. */
export const CmdReq = { LUN: 0, ID: 8, TASK_ATTR: 16, PRIO: 17, CRN: 18, CDB: 19, CDB_SIZE: 32, LENGTH: 51 } as const;

/** Command response header (device-writable). */
export const CmdResp = {
  SENSE_LEN: 0,
  RESIDUAL: 4,
  STATUS_QUALIFIER: 8,
  STATUS: 10,
  RESPONSE: 11,
  SENSE: 12,
  SENSE_SIZE: 96,
  LENGTH: 108,
} as const;

/** Response codes of command and TMF requests. */
export const Resp = {
  OK: 0,
  OVERRUN: 1,
  ABORTED: 2,
  BAD_TARGET: 3,
  RESET: 4,
  BUSY: 5,
  TRANSPORT_FAILURE: 6,
  TARGET_FAILURE: 7,
  NEXUS_FAILURE: 8,
  FAILURE: 9,
  FUNCTION_SUCCEEDED: 10,
  FUNCTION_REJECTED: 11,
  INCORRECT_LUN: 12,
} as const;

/** Task attributes as virtio-scsi numbers them. */
export const VirtioTaskAttr = { SIMPLE: 0, ORDERED: 1, HEAD: 2, ACA: 3 } as const;

/** Control queue request types. */
export const CtrlType = { TMF: 0, AN_QUERY: 1, AN_SUBSCRIBE: 2 } as const;

/** TMF request: {le32 type, le32 subtype, lun[8], le64 id}; response: one byte. */
export const TmfReq = { TYPE: 0, SUBTYPE: 4, LUN: 8, ID: 16, LENGTH: 24 } as const;
export const TmfResp = { RESPONSE: 0, LENGTH: 1 } as const;

export const TmfSubtype = {
  ABORT_TASK: 0,
  ABORT_TASK_SET: 1,
  CLEAR_ACA: 2,
  CLEAR_TASK_SET: 3,
  I_T_NEXUS_RESET: 4,
  LOGICAL_UNIT_RESET: 5,
  QUERY_TASK: 6,
  QUERY_TASK_SET: 7,
} as const;

/** AN request: {le32 type, lun[8], le32 event_requested}; response {le32 event_actual, u8 response}. */
export const AnReq = { TYPE: 0, LUN: 4, EVENT_REQUESTED: 12, LENGTH: 16 } as const;
export const AnResp = { EVENT_ACTUAL: 0, RESPONSE: 4, LENGTH: 5 } as const;

/** Event: {le32 event, lun[8], le32 reason}. */
export const Event = { EVENT: 0, LUN: 4, REASON: 12, LENGTH: 16 } as const;
export const EventType = { NO_EVENT: 0, TRANSPORT_RESET: 1, ASYNC_NOTIFY: 2, PARAM_CHANGE: 3 } as const;
/**
 * Asynchronous notification classes (AN_QUERY, AN_SUBSCRIBE, and an ASYNC_NOTIFY event's reason): the
 * bits of MMC-6's GET EVENT STATUS NOTIFICATION notification classes.
 */
export const AnClass = { OPERATIONAL_CHANGE: 2, POWER_MGMT: 4, EXTERNAL_REQUEST: 8, MEDIA_CHANGE: 16, MULTI_HOST: 32, DEVICE_BUSY: 64 } as const;
export const EVENTS_MISSED = 0x8000_0000;
export const ResetReason = { HARD: 0, RESCAN: 1, REMOVED: 2 } as const;

/** Most targets and LUNs the 8-byte virtio-scsi LUN can address. */
export const MAX_TARGETS = 256;
export const MAX_LUNS = 16384;

/**
 * Decodes lun[8]: byte 0 = 1, byte 1 = target, bytes 2-3 = single-level LUN
 * (flat space 0x40|hi, or peripheral 0x00 for LUNs below 256), bytes 4-7 = 0.
 * Returns undefined for anything else (the REPORT LUNS well-known LUN too).
 */
export function decodeLun(b: Buffer, off: number): { target: number; lun: number } | undefined {
  if (b[off] !== 1) return undefined;
  const b2 = b[off + 2];
  const method = b2 >> 6;
  let lun: number;
  if (method === 1) lun = ((b2 & 0x3f) << 8) | b[off + 3];
  else if (method === 0 && b2 === 0) lun = b[off + 3];
  else return undefined;
  if (b.readUInt32LE(off + 4) !== 0) return undefined;
  return { target: b[off + 1], lun };
}

/**
 * Encodes a target and LUN for events the way REPORT LUNS names the LUN
 * (peripheral addressing below 256, flat space above): Linux looks the LUN
 * of a REMOVED event up by that number, so the two must agree.
 */
export function encodeLun(b: Buffer, off: number, target: number, lun: number): void {
  b[off] = 1;
  b[off + 1] = target;
  b[off + 2] = lun < 256 ? 0 : 0x40 | (lun >> 8);
  b[off + 3] = lun & 0xff;
  b.writeUInt32LE(0, off + 4);
}
