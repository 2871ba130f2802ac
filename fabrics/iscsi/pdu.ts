// iSCSI PDU layouts (RFC 7143 11): the 48-byte basic header segment of every
// PDU as named offsets, opcodes, flags and codes, the parsers of what
// initiators send and the field encoders the target's PDUs are built with
// (pdu-builders.ts). Nothing else in the fabric reads or writes header bytes
// by number.

import { TaskAttr } from '../../src/core/command';

export const BHS_LEN = 48;
export const DIGEST_LEN = 4;
/** The reserved tag value (no ITT / TTT). */
export const NO_TAG = 0xffffffff;

export const Op = {
  NOP_OUT: 0x00,
  SCSI_CMD: 0x01,
  TMF_REQ: 0x02,
  LOGIN_REQ: 0x03,
  TEXT_REQ: 0x04,
  DATA_OUT: 0x05,
  LOGOUT_REQ: 0x06,
  SNACK: 0x10,
  NOP_IN: 0x20,
  SCSI_RSP: 0x21,
  TMF_RSP: 0x22,
  LOGIN_RSP: 0x23,
  TEXT_RSP: 0x24,
  DATA_IN: 0x25,
  LOGOUT_RSP: 0x26,
  R2T: 0x31,
  ASYNC: 0x32,
  REJECT: 0x3f,
} as const;

/** Byte 0: the immediate-delivery bit and the opcode. */
export const IMMEDIATE = 0x40;
export const OPCODE_MASK = 0x3f;

/** Offsets common to every BHS. */
export const H = {
  OPCODE: 0,
  FLAGS: 1,
  TOTAL_AHS: 4,
  /** 3 bytes, big-endian. */
  DATA_LEN: 5,
  LUN: 8,
  ITT: 16,
  /** TTT, or the SCSI command's expected data transfer length, or TMF's referenced task tag. */
  W20: 20,
  /** CmdSN (initiator PDUs) or StatSN (target PDUs). */
  W24: 24,
  /** ExpStatSN (initiator PDUs) or ExpCmdSN (target PDUs). */
  W28: 28,
  /** MaxCmdSN (target PDUs); RefCmdSN (TMF request). */
  W32: 32,
  /** DataSN, R2TSN, ExpDataSN, StatSN of a login response... */
  W36: 36,
  /** BufferOffset (data PDUs, R2T). */
  W40: 40,
  /** Residual count, desired data transfer length. */
  W44: 44,
  CDB: 32,
} as const;

/** Final bit (byte 1) of every PDU that has one. */
export const F_FINAL = 0x80;

/** SCSI Command byte 1. */
export const Cmd = { READ: 0x40, WRITE: 0x20, ATTR_MASK: 0x07 } as const;
/**
 * The core's task attribute for each ATTR value (RFC 7143 11.3.1.2: 0 untagged,
 * 1 simple, 2 ordered, 3 head of queue, 4 ACA; 5-7 reserved): an untagged task is
 * a simple one (SAM-5), reserved values are left to the core's default (simple).
 */
export const TASK_ATTR: readonly (TaskAttr | undefined)[] = [
  TaskAttr.SIMPLE, TaskAttr.SIMPLE, TaskAttr.ORDERED, TaskAttr.HEAD_OF_QUEUE, TaskAttr.ACA,
];

/** SCSI Response / Data-In byte 1. */
export const Rsp = { BIDI_OVERFLOW: 0x10, BIDI_UNDERFLOW: 0x08, OVERFLOW: 0x04, UNDERFLOW: 0x02, STATUS: 0x01, ACK: 0x40 } as const;
/** SCSI Response and Data-In offsets: the response (SCSI Response only) and the status. */
export const RSP_RESPONSE = 2;
export const RSP_STATUS = 3;
/** SCSI Response byte 2. */
export const RSP_COMPLETED = 0x00;
export const RSP_TARGET_FAILURE = 0x01;

/** Login request/response byte 1, and the stages. */
export const Login = { TRANSIT: 0x80, CONTINUE: 0x40, CSG_SHIFT: 2, STAGE_MASK: 0x03 } as const;
export const Stage = { SECURITY: 0, OPERATIONAL: 1, FULL_FEATURE: 3 } as const;
/** Login PDU offsets: version, ISID, TSIH, CID, status. */
export const L = { VERSION_MAX: 2, VERSION_MIN: 3, ISID: 8, TSIH: 14, CID: 20, STATUS_CLASS: 36, STATUS_DETAIL: 37 } as const;

/** Login status (class << 8 | detail), RFC 7143 11.13.5. */
export const LoginStatus = {
  SUCCESS: 0x0000,
  INITIATOR_ERROR: 0x0200,
  /** Authentication failure (CHAP). */
  AUTH_FAILED: 0x0201,
  /** Authorization failure: no ACL admits the initiator. */
  FORBIDDEN: 0x0202,
  NOT_FOUND: 0x0203,
  TARGET_REMOVED: 0x0204,
  UNSUPPORTED_VERSION: 0x0205,
  TOO_MANY_CONNECTIONS: 0x0206,
  MISSING_PARAMETER: 0x0207,
  CANT_INCLUDE_IN_SESSION: 0x0208,
  SESSION_TYPE_UNSUPPORTED: 0x0209,
  NO_SESSION: 0x020a,
  INVALID_DURING_LOGIN: 0x020b,
  TARGET_ERROR: 0x0300,
  SERVICE_UNAVAILABLE: 0x0301,
  OUT_OF_RESOURCES: 0x0302,
} as const;

/** Text request/response byte 1. */
export const TEXT_CONTINUE = 0x40;

/** TMF request byte 1 (function) and response byte 2 (RFC 7143 11.5, 11.6). */
export const TMF_FUNCTION_MASK = 0x7f;
export const TmfFn = {
  ABORT_TASK: 1,
  ABORT_TASK_SET: 2,
  CLEAR_ACA: 3,
  CLEAR_TASK_SET: 4,
  LUN_RESET: 5,
  TARGET_WARM_RESET: 6,
  TARGET_COLD_RESET: 7,
  TASK_REASSIGN: 8,
} as const;
export const TmfRsp = {
  COMPLETE: 0,
  NO_TASK: 1,
  NO_LUN: 2,
  STILL_ALLEGIANT: 3,
  NO_REASSIGN: 4,
  NOT_SUPPORTED: 5,
  AUTH_FAILED: 6,
  REJECTED: 255,
} as const;
/** TMF response offset of the response code. */
export const TMF_RESPONSE = 2;

/** Logout request byte 1 reason, response byte 2 code, response Time2Wait/Time2Retain. */
export const LOGOUT_REASON_MASK = 0x7f;
export const LogoutReason = { CLOSE_SESSION: 0, CLOSE_CONNECTION: 1, REMOVE_FOR_RECOVERY: 2 } as const;
export const LogoutRsp = { OK: 0, NO_CID: 1, NO_RECOVERY: 2, FAILED: 3 } as const;
export const LO = { CID: 20, RESPONSE: 2, TIME2WAIT: 40, TIME2RETAIN: 42 } as const;

/** Asynchronous message (RFC 7143 11.9). */
export const AsyncEvent = { SCSI: 0, LOGOUT_REQUEST: 1, DROP_CONNECTION: 2, DROP_SESSION: 3, NEGOTIATE: 4 } as const;
export const AS = { EVENT: 36, VCODE: 37, PARAM1: 38, PARAM2: 40, PARAM3: 42 } as const;

/** Reject reasons (RFC 7143 11.17.1). */
export const RejectReason = {
  DATA_DIGEST: 0x02,
  SNACK: 0x03,
  PROTOCOL_ERROR: 0x04,
  NOT_SUPPORTED: 0x05,
  IMMEDIATE_REJECT: 0x06,
  TASK_IN_PROGRESS: 0x07,
  INVALID_DATA_ACK: 0x08,
  INVALID_FIELD: 0x09,
  OUT_OF_RESOURCES: 0x0a,
  WAITING_FOR_LOGOUT: 0x0c,
} as const;
export const REJECT_REASON = 2;

/** SNACK byte 1: the type (RFC 7143 11.16.1). */
export const SNACK_TYPE_MASK = 0x0f;
export const SnackType = { DATA_R2T: 0, STATUS: 1, DATA_ACK: 2, R_DATA: 3 } as const;
/** SNACK offsets: SNACK Tag (R-Data) or TTT (DataACK), BegRun, RunLength. */
export const SN = { TAG: 20, BEG_RUN: 40, RUN_LENGTH: 44 } as const;
/** SCSI Response offsets at ERL >= 1: the SNACK Tag of an R-Data SNACK and ExpDataSN. */
export const RSP_SNACK_TAG = 20;
export const RSP_EXP_DATA_SN = 36;

/**
 * Additional header segments (RFC 7143 11.2.2): after the BHS, each one is
 * AHSLength (2 bytes: the bytes after the type byte), AHSType, then its
 * specific bytes, padded to 4.
 */
export const Ahs = { LENGTH: 0, TYPE: 2, SPECIFIC: 3, TYPE_MASK: 0x3f, HEADER: 3 } as const;
export const AhsType = { EXTENDED_CDB: 1, BIDI_READ_LENGTH: 2 } as const;
/** Extended CDB AHS: a reserved byte, then CDB bytes 16 and on. */
export const AHS_EXT_CDB = 4;
/** Bidirectional Read Expected Data Transfer Length AHS: a reserved byte, then the length. */
export const AHS_BIDI_LENGTH = 4;
const AHS_BIDI_AHSLENGTH = 5;

export interface AhsContents {
  /** CDB bytes beyond the 16 of the BHS. */
  cdbTail?: Buffer;
  bidiReadLength?: number;
}

/**
 * The AHS of a SCSI Command whose header (BHS and AHS) is h; undefined when
 * malformed: segments that do not add up to TotalAHSLength, a type given
 * twice, a length its type does not allow, a type we do not know.
 */
export function parseAhs(h: Buffer): AhsContents | undefined {
  const end = BHS_LEN + ahsLengthOf(h);
  if (h.length < end) return undefined;
  const out: AhsContents = {};
  let off = BHS_LEN;
  while (off < end) {
    if (end - off < Ahs.HEADER + 1) return undefined;
    const len = h.readUInt16BE(off + Ahs.LENGTH);
    const type = h[off + Ahs.TYPE] & Ahs.TYPE_MASK;
    const size = Ahs.HEADER + len + pad4(Ahs.HEADER + len);
    if (off + size > end) return undefined;
    if (type === AhsType.EXTENDED_CDB) {
      // AHSLength = CDB length - 15: the reserved byte and at least one CDB byte past 16.
      if (out.cdbTail !== undefined || len < 2) return undefined;
      out.cdbTail = h.subarray(off + AHS_EXT_CDB, off + Ahs.HEADER + len);
    } else if (type === AhsType.BIDI_READ_LENGTH) {
      if (out.bidiReadLength !== undefined || len !== AHS_BIDI_AHSLENGTH) return undefined;
      out.bidiReadLength = h.readUInt32BE(off + AHS_BIDI_LENGTH);
    } else return undefined;
    off += size;
  }
  return out;
}

export const opcodeOf = (h: Buffer): number => h[H.OPCODE] & OPCODE_MASK;
export const isImmediate = (h: Buffer): boolean => (h[H.OPCODE] & IMMEDIATE) !== 0;
export const dataLengthOf = (h: Buffer): number => (h[H.DATA_LEN] << 16) | (h[H.DATA_LEN + 1] << 8) | h[H.DATA_LEN + 2];
export const ahsLengthOf = (h: Buffer): number => h[H.TOTAL_AHS] * 4;
export const pad4 = (n: number): number => (4 - (n & 3)) & 3;

export function setDataLength(h: Buffer, n: number): void {
  h[H.DATA_LEN] = n >>> 16;
  h[H.DATA_LEN + 1] = (n >>> 8) & 0xff;
  h[H.DATA_LEN + 2] = n & 0xff;
}

/**
 * The LUN field (SAM-5 4.7): peripheral addressing below 256, flat space
 * above. Returns -1 for forms we do not give out (the core then answers
 * LOGICAL UNIT NOT SUPPORTED through an out-of-range number).
 */
export function decodeLun(h: Buffer): number {
  const b0 = h[H.LUN];
  const method = b0 >> 6;
  if (method === 0) return b0 === 0 ? h[H.LUN + 1] : 0x10000 + b0;
  if (method === 1) return ((b0 & 0x3f) << 8) | h[H.LUN + 1];
  return 0x20000;
}

export function encodeLun(h: Buffer, lun: number): void {
  h.fill(0, H.LUN, H.LUN + 8);
  if (lun < 256) h[H.LUN + 1] = lun;
  else {
    h[H.LUN] = 0x40 | ((lun >> 8) & 0x3f);
    h[H.LUN + 1] = lun & 0xff;
  }
}

/** A fresh target BHS with opcode and flags (room for a header digest after it). */
export function newHeader(opcode: number, flags: number, digest: boolean): Buffer {
  const h = Buffer.alloc(digest ? BHS_LEN + DIGEST_LEN : BHS_LEN);
  h[H.OPCODE] = opcode;
  h[H.FLAGS] = flags;
  return h;
}

/** The ISID as 12 hex digits. */
export const isidOf = (h: Buffer): string => h.toString('hex', L.ISID, L.ISID + 6);

/** RFC 1982 serial arithmetic on 32-bit sequence numbers: a < b. */
export function snLess(a: number, b: number): boolean {
  return a !== b && ((a < b && b - a < 0x80000000) || (a > b && a - b > 0x80000000));
}
