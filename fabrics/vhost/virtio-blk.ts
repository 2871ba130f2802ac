// virtio-blk's layouts and numbers (virtio 1.2, device-types/blk), as far as
// the frontend tool speaks it today. One module: a virtio-blk device beside
// virtio-scsi-device.ts and the tool read the same named offsets.

/** Sectors are 512 bytes whatever the device's block size. */
export const SECTOR_SIZE = 512;

/** Request header (device-readable): {le32 type, le32 ioprio, le64 sector}; then data; then a status byte. */
export const BlkReq = { TYPE: 0, IOPRIO: 4, SECTOR: 8, LENGTH: 16 } as const;
export const BlkType = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8 } as const;
export const BlkStatus = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;

/** Config space (GET_CONFIG): le64 capacity in sectors first. */
export const BlkConfig = { CAPACITY: 0 } as const;
