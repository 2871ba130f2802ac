// Scatter-gather lists: the data buffers a command carries. A fabric owns them
// (socket buffers for iSCSI, views of guest memory for vhost); the core and the
// backstores read and write through them in place. Nothing here copies unless
// its name says copy.

export type Sgl = readonly Buffer[];

export function sglLength(sgl: Sgl): number {
  let n = 0;
  for (let i = 0; i < sgl.length; i++) n += sgl[i].length;
  return n;
}

/** Views of bytes [offset, offset+length) of the list, sharing memory. */
export function sglSlice(sgl: Sgl, offset: number, length: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < sgl.length && length > 0; i++) {
    const b = sgl[i];
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    const n = Math.min(b.length - offset, length);
    out.push(offset === 0 && n === b.length ? b : b.subarray(offset, offset + n));
    length -= n;
    offset = 0;
  }
  return out;
}

/** Copies src into the list at offset; returns the bytes copied. */
export function sglCopyIn(sgl: Sgl, offset: number, src: Uint8Array): number {
  let done = 0;
  for (let i = 0; i < sgl.length && done < src.length; i++) {
    const b = sgl[i];
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    const n = Math.min(b.length - offset, src.length - done);
    b.set(done === 0 && n === src.length ? src : src.subarray(done, done + n), offset);
    done += n;
    offset = 0;
  }
  return done;
}

/** Copies length bytes from the list at offset into dst at dstOffset; returns the bytes copied. */
export function sglCopyOut(sgl: Sgl, offset: number, dst: Uint8Array, dstOffset = 0, length = dst.length - dstOffset): number {
  let done = 0;
  for (let i = 0; i < sgl.length && done < length; i++) {
    const b = sgl[i];
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    const n = Math.min(b.length - offset, length - done);
    b.copy(dst, dstOffset + done, offset, offset + n);
    done += n;
    offset = 0;
  }
  return done;
}

/** The bytes [offset, offset+length) as one Buffer: a view when they lie in one segment, else a copy. */
export function sglFlatten(sgl: Sgl, offset = 0, length = sglLength(sgl) - offset): Buffer {
  for (let i = 0; i < sgl.length; i++) {
    const b = sgl[i];
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    if (offset + length <= b.length) return b.subarray(offset, offset + length);
    break;
  }
  const out = Buffer.allocUnsafe(length);
  const n = sglCopyOut(sgl, offset, out, 0, length);
  return n === length ? out : out.subarray(0, n);
}

export function sglFill(sgl: Sgl, offset: number, length: number, value = 0): void {
  for (const b of sglSlice(sgl, offset, length)) b.fill(value);
}

/** Offset of the first differing byte between the list at offset and ref, or -1. */
export function sglCompare(sgl: Sgl, offset: number, ref: Uint8Array): number {
  let done = 0;
  for (const b of sglSlice(sgl, offset, ref.length)) {
    const r = ref.subarray(done, done + b.length);
    if (!b.equals(r)) {
      for (let i = 0; i < b.length; i++) if (b[i] !== r[i]) return done + i;
    }
    done += b.length;
  }
  return done < ref.length ? done : -1;
}

/** True when every byte of the range is zero. */
export function sglIsZero(sgl: Sgl, offset: number, length: number): boolean {
  for (const b of sglSlice(sgl, offset, length)) {
    for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  }
  return true;
}
