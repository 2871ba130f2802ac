// virtio-blk's layouts and numbers (virtio 1.2, device-types/blk). One module:
// the virtio-blk device (virtio-blk-device.ts) and the frontend tool read the
// same named offsets.

/** Sectors are 512 bytes whatever the device's block size. */
export const SECTOR_SIZE = 512;

/** Request header (device-readable): {le32 type, le32 ioprio, le64 sector}; then data; then a status byte. */
export const BlkReq = { TYPE: 0, IOPRIO: 4, SECTOR: 8, LENGTH: 16 } as const;
export const BlkType = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8, GET_LIFETIME: 10, DISCARD: 11, WRITE_ZEROES: 13, SECURE_ERASE: 14 } as const;
export const BlkStatus = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;

/** GET_ID answers this many bytes (the serial, NUL padded, no terminator when it fills them). */
export const BLK_ID_BYTES = 20;

/** DISCARD and WRITE_ZEROES payload: segments of {le64 sector, le32 num_sectors, le32 flags}. */
export const BlkSegment = { SECTOR: 0, NUM_SECTORS: 8, FLAGS: 12, LENGTH: 16 } as const;
export const BLK_SEGMENT_F_UNMAP = 1;

/** virtio-blk feature bits. */
export const BlkFeature = {
  SIZE_MAX: 1n,
  SEG_MAX: 2n,
  GEOMETRY: 4n,
  RO: 5n,
  BLK_SIZE: 6n,
  FLUSH: 9n,
  TOPOLOGY: 10n,
  CONFIG_WCE: 11n,
  MQ: 12n,
  DISCARD: 13n,
  WRITE_ZEROES: 14n,
} as const;

/** Config space (GET_CONFIG), little endian. */
export const BlkConfig = {
  CAPACITY: 0, // le64, in 512-byte sectors
  SIZE_MAX: 8,
  SEG_MAX: 12,
  GEOMETRY: 16,
  BLK_SIZE: 20,
  PHYSICAL_BLOCK_EXP: 24, // u8
  ALIGNMENT_OFFSET: 25, // u8
  MIN_IO_SIZE: 26, // le16, in blocks
  OPT_IO_SIZE: 28, // le32, in blocks
  WRITEBACK: 32, // u8
  NUM_QUEUES: 34, // le16
  MAX_DISCARD_SECTORS: 36,
  MAX_DISCARD_SEG: 40,
  DISCARD_SECTOR_ALIGNMENT: 44,
  MAX_WRITE_ZEROES_SECTORS: 48,
  MAX_WRITE_ZEROES_SEG: 52,
  WRITE_ZEROES_MAY_UNMAP: 56, // u8
  /** Through the secure-erase fields (virtio 1.2): what QEMU 7.2 asks for. */
  LENGTH: 72,
} as const;
