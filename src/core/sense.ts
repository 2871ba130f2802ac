// Sense data: the one place where a typed SCSI error becomes bytes (SPC-5 4.4).
// Handlers throw ScsiError (or reject with it); the engine encodes it in the
// format the logical unit's D_SENSE bit selects.

export const Status = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  CONDITION_MET: 0x04,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  ACA_ACTIVE: 0x30,
  TASK_ABORTED: 0x40,
} as const;

export const SenseKey = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  BLANK_CHECK: 0x8,
  COPY_ABORTED: 0xa,
  ABORTED_COMMAND: 0xb,
  VOLUME_OVERFLOW: 0xd,
  MISCOMPARE: 0xe,
} as const;

/** Additional sense code and qualifier, packed as (ASC << 8) | ASCQ. */
export const Asc = {
  NO_ADDITIONAL_SENSE: 0x0000,
  LUN_NOT_READY_CAUSE_NOT_REPORTABLE: 0x0400,
  LUN_NOT_READY_MANUAL_INTERVENTION: 0x0403,
  LUN_NOT_READY_FORMAT_IN_PROGRESS: 0x0404,
  LUN_NOT_READY_SANITIZE_IN_PROGRESS: 0x041b,
  LUN_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION: 0x040a,
  LUN_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE: 0x040b,
  WRITE_ERROR: 0x0c00,
  READ_ERROR: 0x1100,
  MISCOMPARE_DURING_VERIFY: 0x1d00,
  DEFECT_LIST_NOT_FOUND: 0x1c00,
  SANITIZE_COMMAND_FAILED: 0x3103,
  PARAMETER_LIST_LENGTH_ERROR: 0x1a00,
  INVALID_OPCODE: 0x2000,
  LBA_OUT_OF_RANGE: 0x2100,
  INVALID_FIELD_IN_CDB: 0x2400,
  LUN_NOT_SUPPORTED: 0x2500,
  INVALID_FIELD_IN_PARAMETER_LIST: 0x2600,
  PARAMETER_NOT_SUPPORTED: 0x2601,
  PARAMETER_VALUE_INVALID: 0x2602,
  TOO_MANY_TARGET_DESCRIPTORS: 0x2606,
  UNSUPPORTED_TARGET_DESCRIPTOR_TYPE: 0x2607,
  TOO_MANY_SEGMENT_DESCRIPTORS: 0x2608,
  UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE: 0x2609,
  WRITE_PROTECTED: 0x2700,
  NOT_READY_TO_READY_CHANGE: 0x2800,
  POWER_ON_RESET: 0x2900,
  POWER_ON_OCCURRED: 0x2901,
  BUS_DEVICE_RESET_OCCURRED: 0x2903,
  I_T_NEXUS_LOSS_OCCURRED: 0x2907,
  PARAMETERS_CHANGED: 0x2a00,
  MODE_PARAMETERS_CHANGED: 0x2a01,
  RESERVATIONS_PREEMPTED: 0x2a03,
  RESERVATIONS_RELEASED: 0x2a04,
  REGISTRATIONS_PREEMPTED: 0x2a05,
  ASYMMETRIC_ACCESS_STATE_CHANGED: 0x2a06,
  CAPACITY_DATA_CHANGED: 0x2a09,
  COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: 0x2f00,
  COMMANDS_CLEARED_BY_DEVICE_SERVER: 0x2f02,
  SET_TARGET_PORT_GROUPS_COMMAND_FAILED: 0x670a,
  SAVING_PARAMETERS_NOT_SUPPORTED: 0x3900,
  MEDIUM_NOT_PRESENT: 0x3a00,
  MEDIUM_REMOVAL_PREVENTED: 0x5302,
  REPORTED_LUNS_DATA_CHANGED: 0x3f0e,
  INQUIRY_DATA_CHANGED: 0x3f03,
  INTERNAL_TARGET_FAILURE: 0x4400,
  SPACE_ALLOCATION_FAILED_WRITE_PROTECT: 0x2707,
  THIN_PROVISIONING_SOFT_THRESHOLD_REACHED: 0x3807,
  LU_COMMUNICATION_FAILURE: 0x0800,
  LU_COMMUNICATION_TIMEOUT: 0x0801,
  INVALID_MESSAGE_ERROR: 0x4900,
  INVALID_FIELD_IN_COMMAND_IU: 0x0e03,
  OVERLAPPED_COMMANDS_ATTEMPTED: 0x4e00,
  DATA_PHASE_ERROR: 0x4b00,
  /** A data digest (CRC32C) error the transport could not recover (iSCSI at ERL 0). */
  PROTOCOL_SERVICE_CRC_ERROR: 0x4705,
  SYSTEM_RESOURCE_FAILURE: 0x5500,
  INSUFFICIENT_REGISTRATION_RESOURCES: 0x5504,
  LOGICAL_BLOCK_GUARD_CHECK_FAILED: 0x1001,
  COPY_TARGET_DEVICE_NOT_REACHABLE: 0x0d02,
} as const;

/** Where a sense-key-specific field pointer points (SPC-5 4.4.2.4.2). */
export interface FieldPointer {
  /** true: the byte is in the CDB; false: in the parameter list. */
  inCdb: boolean;
  byte: number;
  /** Bit 0..7 of that byte, when one bit is at fault. */
  bit?: number;
}

export interface ScsiErrorOptions {
  /** The INFORMATION field (an LBA, a miscompare offset...). */
  info?: number | bigint;
  field?: FieldPointer;
  /** Sense-key-specific progress indication (NOT READY during format/sanitize), 0..65535. */
  progress?: number;
  /** The command-specific information field. */
  commandInfo?: number | bigint;
  /** Stream (tape) sense bits (SSC-4 4.2.x): a filemark was met, end of medium or partition, incorrect length. */
  filemark?: boolean;
  eom?: boolean;
  ili?: boolean;
  /** Bytes of data-in that moved before the command stopped (a short tape block read): sent with the sense. */
  dataIn?: number;
}

/** A command that ends with something other than GOOD. */
export class ScsiError extends Error {
  constructor(
    readonly key: number,
    readonly asc: number,
    readonly opts: ScsiErrorOptions = {},
    readonly status: number = Status.CHECK_CONDITION,
  ) {
    super(describe(key, asc));
  }
  get ascq(): number {
    return this.asc & 0xff;
  }
}

/**
 * A pass-through device's own answer (pscsi): its status and sense bytes go
 * back to the initiator as the device gave them, with the data that moved
 * before it stopped (a tape READ of a shorter block). Our own errors never use it.
 */
export class DeviceSense extends ScsiError {
  constructor(
    readonly raw: Buffer,
    status: number,
    readonly dataInLength = 0,
  ) {
    const d = decodeSense(raw);
    super(d.key, (d.asc << 8) | d.ascq, {}, status);
  }
}

/** A status without sense data: RESERVATION CONFLICT, BUSY, TASK SET FULL. */
export function statusOnly(status: number): ScsiError {
  return new ScsiError(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE, {}, status);
}

// The common errors, named so that handlers read as the standard does.
export const invalidOpcode = (): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_OPCODE, { field: { inCdb: true, byte: 0 } });
export const invalidCdbField = (byte: number, bit?: number): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, { field: { inCdb: true, byte, bit } });
export const invalidParamField = (byte: number, bit?: number): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST, { field: { inCdb: false, byte, bit } });
export const paramListLengthError = (): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR);
export const lbaOutOfRange = (lba?: number | bigint): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE, lba === undefined ? {} : { info: lba });
export const writeProtected = (): ScsiError => new ScsiError(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED);
export const lunNotSupported = (): ScsiError => new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.LUN_NOT_SUPPORTED);
export const mediumNotPresent = (): ScsiError => new ScsiError(SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT);
export const miscompare = (offset: number): ScsiError =>
  new ScsiError(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY, { info: offset });
export const internalFailure = (): ScsiError =>
  new ScsiError(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE);
export const reservationConflict = (): ScsiError => statusOnly(Status.RESERVATION_CONFLICT);
export const taskSetFull = (): ScsiError => statusOnly(Status.TASK_SET_FULL);
export const unitAttention = (asc: number): ScsiError => new ScsiError(SenseKey.UNIT_ATTENTION, asc);
export const savingNotSupported = (byte = 1, bit = 0): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.SAVING_PARAMETERS_NOT_SUPPORTED, { field: { inCdb: true, byte, bit } });
/** NO SENSE: what REQUEST SENSE reports when nothing is pending. */
export const noSense = (): ScsiError => new ScsiError(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE);

/** The storage under the unit is gone (device removed, backing file deleted): it needs someone to act. */
export const storageGone = (): ScsiError => new ScsiError(SenseKey.NOT_READY, Asc.LUN_NOT_READY_MANUAL_INTERVENTION);
/** The path's target port group is in an ALUA transition (ownership moving, a fenced gateway rejoining): retry. */
export const aluaTransitioning = (): ScsiError =>
  new ScsiError(SenseKey.NOT_READY, Asc.LUN_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION);
/** The path's target port group is in the standby state (SPC-4 5.15.2.4.4): the command needs an active path. */
export const aluaStandby = (): ScsiError =>
  new ScsiError(SenseKey.NOT_READY, Asc.LUN_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE);
/** A well-formed SET TARGET PORT GROUPS the unit could not carry out (the group's gateway is gone): SPC-5 6.50. */
export const setTargetPortGroupsFailed = (): ScsiError =>
  new ScsiError(SenseKey.HARDWARE_ERROR, Asc.SET_TARGET_PORT_GROUPS_COMMAND_FAILED);
/** The store could not allocate a block for a write (full file system, quota, allocation limit: SBC-4 4.7.3.7). */
export const spaceAllocationFailed = (): ScsiError =>
  new ScsiError(SenseKey.DATA_PROTECT, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT);
/** UNRECOVERED READ ERROR or WRITE ERROR; lba: the first block that failed (INFORMATION, VALID set). */
export const mediumError = (write: boolean, lba?: number | bigint): ScsiError =>
  new ScsiError(SenseKey.MEDIUM_ERROR, write ? Asc.WRITE_ERROR : Asc.READ_ERROR, lba === undefined ? {} : { info: lba });

/**
 * Errnos of a store that is no longer there: a removed device, a stale handle. (Not EBADF: the kernel keeps
 * a descriptor valid whatever happens below it, so that one is ours, an internal failure.)
 */
const GONE = new Set(['ENXIO', 'ENODEV', 'ESTALE', 'ENOMEDIUM']);
/** Errnos of a store that could not allocate: a full file system, a quota. */
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);
/** Errnos of data the device could not move: a failed sector, a checksum the integrity layer refused (EILSEQ). */
const MEDIUM = new Set(['EIO', 'EILSEQ', 'EREMOTEIO']);
/** Syscalls that write (a failed fdatasync is a write that did not reach the medium, whoever asked). */
const WRITING = /write|sync|fallocate|truncate|ioctl/;

/** Whether an error from a store is a failed read or write of the medium (the kind worth locating by LBA). */
export function isMediumFailure(e: unknown): boolean {
  return !(e instanceof ScsiError) && MEDIUM.has((e as NodeJS.ErrnoException | undefined)?.code ?? '');
}

/**
 * Maps an I/O failure from a backstore (an errno, from whichever I/O path) to a sense condition: the one
 * place that does. write: the command writes; lba: the block the failure is known to be at.
 */
export function fromIoError(e: unknown, write: boolean, lba?: number | bigint): ScsiError {
  if (e instanceof ScsiError) return e;
  const err = e as NodeJS.ErrnoException | undefined;
  const code = err?.code ?? '';
  if (code === 'EROFS' || code === 'EPERM' || code === 'EACCES') return writeProtected();
  if (NO_SPACE.has(code)) return spaceAllocationFailed();
  if (MEDIUM.has(code)) return mediumError(write || WRITING.test(err?.syscall ?? ''), lba);
  if (GONE.has(code)) return storageGone();
  return internalFailure();
}

export const FIXED_SENSE_LEN = 18;

function sksBytes(e: ScsiError): number[] | undefined {
  const f = e.opts.field;
  if (f) {
    const b0 = 0x80 | (f.inCdb ? 0x40 : 0) | (f.bit !== undefined ? 0x08 | (f.bit & 7) : 0);
    return [b0, (f.byte >> 8) & 0xff, f.byte & 0xff];
  }
  if (e.opts.progress !== undefined) return [0x80, (e.opts.progress >> 8) & 0xff, e.opts.progress & 0xff];
  return undefined;
}

/** FILEMARK, EOM and ILI as fixed sense byte 2 (and the stream descriptor's byte 3) carry them. */
function streamBits(e: ScsiError): number {
  const o = e.opts;
  return (o.filemark ? 0x80 : 0) | (o.eom ? 0x40 : 0) | (o.ili ? 0x20 : 0);
}

/** Encodes sense data: fixed format (0x70) or descriptor format (0x72). */
export function encodeSense(e: ScsiError, descriptor: boolean): Buffer {
  if (e instanceof DeviceSense) return e.raw; // the device's bytes, in the device's format
  const asc = e.asc >> 8;
  const ascq = e.asc & 0xff;
  const sks = sksBytes(e);
  const info = e.opts.info === undefined ? undefined : BigInt(e.opts.info);
  const cmdInfo = e.opts.commandInfo === undefined ? undefined : BigInt(e.opts.commandInfo);
  if (!descriptor) {
    const b = Buffer.alloc(FIXED_SENSE_LEN);
    b[0] = 0x70;
    b[2] = (e.key & 0x0f) | streamBits(e);
    if (info !== undefined && info <= 0xffffffffn) {
      b[0] |= 0x80; // VALID: the INFORMATION field holds the value
      b.writeUInt32BE(Number(info), 3);
    }
    b[7] = FIXED_SENSE_LEN - 8;
    if (cmdInfo !== undefined) b.writeUInt32BE(Number(cmdInfo & 0xffffffffn), 8);
    b[12] = asc;
    b[13] = ascq;
    if (sks) b.set(sks, 15);
    return b;
  }
  const parts: number[] = [];
  if (info !== undefined) {
    // Information descriptor (type 00h): VALID set, 64-bit value.
    const d = Buffer.alloc(12);
    d[0] = 0x00;
    d[1] = 0x0a;
    d[2] = 0x80;
    d.writeBigUInt64BE(info, 4);
    parts.push(...d);
  }
  if (cmdInfo !== undefined) {
    const d = Buffer.alloc(12);
    d[0] = 0x01;
    d[1] = 0x0a;
    d.writeBigUInt64BE(cmdInfo, 4);
    parts.push(...d);
  }
  if (sks) parts.push(0x02, 0x06, 0, 0, ...sks, 0);
  // Stream commands descriptor (type 04h, SPC-5 4.4.2.6).
  if (streamBits(e) !== 0) parts.push(0x04, 0x02, 0, streamBits(e));
  const b = Buffer.alloc(8 + parts.length);
  b[0] = 0x72;
  b[1] = e.key & 0x0f;
  b[2] = asc;
  b[3] = ascq;
  b[7] = parts.length;
  b.set(parts, 8);
  return b;
}

/** Reads key/ASC/ASCQ back from sense data of either format (for tests, logs and initiators). */
export function decodeSense(b: Uint8Array): {
  key: number; asc: number; ascq: number; info?: bigint; field?: FieldPointer; descriptor: boolean; stream?: number;
} {
  const code = b[0] & 0x7f;
  if (code === 0x72 || code === 0x73) {
    const r: ReturnType<typeof decodeSense> = { key: b[1] & 0xf, asc: b[2], ascq: b[3], descriptor: true };
    const view = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    for (let p = 8; p + 2 <= 8 + b[7] && p + 2 <= b.length; p += 2 + b[p + 1]) {
      if (b[p] === 0x00 && p + 12 <= b.length) r.info = view.readBigUInt64BE(p + 4);
      if (b[p] === 0x02 && (b[p + 4] & 0x80)) r.field = fieldOf(b, p + 4);
      if (b[p] === 0x04 && p + 4 <= b.length) r.stream = b[p + 3] & 0xe0;
    }
    return r;
  }
  const r: ReturnType<typeof decodeSense> = { key: b[2] & 0xf, asc: b[12], ascq: b[13], descriptor: false };
  if (b[2] & 0xe0) r.stream = b[2] & 0xe0;
  if (b[0] & 0x80) r.info = BigInt(Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUInt32BE(3));
  if (b.length >= 18 && (b[15] & 0x80)) r.field = fieldOf(b, 15);
  return r;
}

function fieldOf(b: Uint8Array, p: number): FieldPointer {
  const f: FieldPointer = { inCdb: (b[p] & 0x40) !== 0, byte: (b[p + 1] << 8) | b[p + 2] };
  if (b[p] & 0x08) f.bit = b[p] & 7;
  return f;
}

const KEY_NAMES = Object.fromEntries(Object.entries(SenseKey).map(([k, v]) => [v, k]));
const ASC_NAMES = Object.fromEntries(Object.entries(Asc).map(([k, v]) => [v, k]));

export function describe(key: number, asc: number): string {
  const a = ASC_NAMES[asc] ?? `ASC ${(asc >> 8).toString(16)}h/${(asc & 0xff).toString(16)}h`;
  return `${KEY_NAMES[key] ?? key}: ${a}`;
}
