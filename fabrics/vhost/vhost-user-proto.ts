// The vhost-user protocol's message layouts and numbers, as QEMU's
// docs/interop/vhost-user.rst defines them (native byte order: little endian
// on every host tsio runs on). One module, so both the backend and the
// frontend tool read the same named offsets.

/** Message header: u32 request, u32 flags, u32 size. */
export const Hdr = { REQUEST: 0, FLAGS: 4, SIZE: 8, LENGTH: 12 } as const;

export const Flag = {
  VERSION: 0x1,
  VERSION_MASK: 0x3,
  REPLY: 0x4,
  NEED_REPLY: 0x8,
} as const;

/** Front-end to back-end requests. */
export const Req = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_SLAVE_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  RESET_DEVICE: 34,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
} as const;

/** Back-end to front-end requests, on the channel SET_SLAVE_REQ_FD gives. */
export const SlaveReq = { IOTLB_MSG: 1, CONFIG_CHANGE_MSG: 2 } as const;

export const reqName: Record<number, string> = Object.fromEntries(Object.entries(Req).map(([k, v]) => [v, k]));

/** Virtio feature bits (64-bit: kept as bigint). */
export const Feature = {
  NOTIFY_ON_EMPTY: 24n,
  INDIRECT_DESC: 28n,
  EVENT_IDX: 29n,
  /** vhost-user's own bit: the back-end speaks GET/SET_PROTOCOL_FEATURES. */
  PROTOCOL_FEATURES: 30n,
  VERSION_1: 32n,
  RING_PACKED: 34n,
} as const;

/** Protocol feature bits. */
export const ProtoFeature = {
  MQ: 0n,
  LOG_SHMFD: 1n,
  REPLY_ACK: 3n,
  SLAVE_REQ: 5n,
  CONFIG: 9n,
  INFLIGHT_SHMFD: 12n,
  RESET_DEVICE: 13n,
  CONFIGURE_MEM_SLOTS: 15n,
  STATUS: 16n,
} as const;

export const bit = (b: bigint): bigint => 1n << b;

/** u64 payload (features, queue count, acks, mem slots). */
export const U64 = { VALUE: 0, LENGTH: 8 } as const;

/** vring state: {u32 index, u32 num}. */
export const VringState = { INDEX: 0, NUM: 4, LENGTH: 8 } as const;

/** vring address: {u32 index, u32 flags, u64 desc, u64 used, u64 avail, u64 log}. */
export const VringAddr = { INDEX: 0, FLAGS: 4, DESC: 8, USED: 16, AVAIL: 24, LOG: 32, LENGTH: 40 } as const;

/** SET_VRING_KICK/CALL/ERR u64: queue index in bits 0-7; bit 8 = no fd (polling). */
export const VRING_IDX_MASK = 0xff;
export const VRING_NOFD_MASK = 0x100;

/** Device config (GET_CONFIG/SET_CONFIG): {u32 offset, u32 size, u32 flags, bytes[size]}. */
export const VhostConfig = { OFFSET: 0, SIZE: 4, FLAGS: 8, PAYLOAD: 12, MAX: 256 } as const;

/** One memory region: {u64 guest_phys_addr, u64 size, u64 userspace_addr, u64 mmap_offset}. */
export const Region = { GPA: 0, SIZE: 8, UADDR: 16, MMAP_OFFSET: 24, LENGTH: 32 } as const;

/** SET_MEM_TABLE: {u32 nregions, u32 padding, regions[8]}. */
export const MemTable = { NREGIONS: 0, REGIONS: 8, MAX_REGIONS: 8 } as const;

/** ADD_MEM_REG / REM_MEM_REG: {u64 padding, region}. */
export const MemRegMsg = { REGION: 8, LENGTH: 8 + Region.LENGTH } as const;

/** GET_INFLIGHT_FD / SET_INFLIGHT_FD: {u64 mmap_size, u64 mmap_offset, u16 num_queues, u16 queue_size}. */
export const InflightMsg = { MMAP_SIZE: 0, MMAP_OFFSET: 8, NUM_QUEUES: 16, QUEUE_SIZE: 18, LENGTH: 24 } as const;

/** Slots offered with CONFIGURE_MEM_SLOTS (QEMU caps it at 512). */
export const MAX_MEM_SLOTS = 32;

export function u64(b: Buffer, off: number): number {
  // Guest addresses above 2^53 cannot be exact in a number; callers refuse them as out of memory.
  const hi = b.readUInt32LE(off + 4);
  return hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * 0x1_0000_0000 + b.readUInt32LE(off);
}

/** Builds a message: header and payload in one Buffer. */
export function message(request: number, flags: number, payload?: Buffer): Buffer {
  const n = payload?.length ?? 0;
  const b = Buffer.alloc(Hdr.LENGTH + n);
  b.writeUInt32LE(request, Hdr.REQUEST);
  b.writeUInt32LE(flags, Hdr.FLAGS);
  b.writeUInt32LE(n, Hdr.SIZE);
  if (payload) payload.copy(b, Hdr.LENGTH);
  return b;
}

export function u64Payload(v: bigint | number): Buffer {
  const b = Buffer.alloc(U64.LENGTH);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}
