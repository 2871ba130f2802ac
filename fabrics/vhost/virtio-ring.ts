// The split virtqueue's layouts and numbers (virtio 1.2 2.7), the same for
// every device type. One module: the device side (virtqueue.ts) and the
// frontend tool's driver side read the same named offsets.

/** Descriptor: le64 addr, le32 len, le16 flags, le16 next. */
export const Desc = { ADDR: 0, LEN: 8, FLAGS: 12, NEXT: 14, SIZE: 16 } as const;
export const DescFlag = { NEXT: 1, WRITE: 2, INDIRECT: 4 } as const;

/** Available ring: le16 flags, le16 idx, le16 ring[num], le16 used_event. */
export const Avail = { FLAGS: 0, IDX: 2, RING: 4, ENTRY: 2 } as const;
export const AVAIL_F_NO_INTERRUPT = 1;

/** Used ring: le16 flags, le16 idx, {le32 id, le32 len}[num], le16 avail_event. */
export const Used = { FLAGS: 0, IDX: 2, RING: 4, ENTRY: 8, ID: 0, LEN: 4 } as const;
export const USED_F_NO_NOTIFY = 1;

export const availSize = (num: number): number => Avail.RING + Avail.ENTRY * num + 2;
export const usedSize = (num: number): number => Used.RING + Used.ENTRY * num + 2;

/** virtio's vring_need_event: notify when new_idx has passed event_idx since old. */
export function needEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

/** Largest queue the split ring allows. */
export const MAX_QUEUE_SIZE = 32768;
