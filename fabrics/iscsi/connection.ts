// One iSCSI connection: the TCP socket, the PDU framer (partial reads,
// header and data digests), the send path, and the dispatch of each PDU to
// the login state machine or, in full feature phase, to the session.

import type { Socket } from 'node:net';
import { crc32c, dupFd, setRcvLowat } from '../../native';
import type { Sgl } from '../../src/core/sgl';
import { log } from '../../src/core/log';
import { BHS_LEN, DIGEST_LEN, H, NO_TAG, Op, RejectReason, dataLengthOf, newHeader, opcodeOf, pad4 } from './pdu';
import { NO_WINDOW, rejectPdu, type SnWindow } from './pdu-builders';
import { rxPool, slabSocket, type ReadPlan, type RxSlab } from './rx-slab';

const PAD = Buffer.alloc(4);
/** Login PDUs carry at most this much text (RFC 7143 13.12: the default before negotiation). */
const LOGIN_MRDSL = 8192;
/** Bytes queued for the socket above which reading from it pauses until they drain. */
const WRITE_BACKLOG = 64 << 20;
/** Most a connection waits to have queued before it is woken (a few bursts: the R2Ts they free go out together). */
const LOWAT_MAX = 1 << 20;
/** Below this a raised threshold saves too few wake-ups to pay for the setsockopt calls (small writes). */
const LOWAT_MIN = 16 << 10;
/**
 * How long a raised wake-up threshold may go without a read before it drops
 * back to one byte: data an initiator was asked for may never come (the task
 * was aborted), and a PDU behind it must not wait for it.
 */
const LOWAT_GRACE_MS = 10;
/** Data segments at least this long are read to their end and no further (ReadPlan in rx-slab.ts): the next PDU then starts aligned. */
const LARGE_SEGMENT = 64 << 10;

/** What the connection needs to know of a command it sent R2Ts for (scsi-task.ts Task). */
export interface Soliciting {
  readonly done: boolean;
  readonly r2tOutstanding: number;
  /** End of what its R2Ts asked for, and how much of the data-out has come. */
  readonly r2tNext: number;
  readonly received: number;
}

/** Where PDUs go before full feature phase: the login (login.ts). */
export interface LoginPhase {
  receive(h: Buffer, data: Sgl): void;
  /** The connection closed during login. */
  dispose(): void;
}

/** Where PDUs go in full feature phase: the session the connection joined (iscsi-session.ts). */
export interface SessionLink {
  /** Its command window: every target PDU reports it. */
  readonly window: SnWindow;
  receive(c: Connection, h: Buffer, data: Sgl): void;
  /** A PDU whose header is sound but whose data digest failed. */
  dataDigestError(c: Connection, h: Buffer): void;
  /** `graceful`: logged out (or replaced by a login with its CID), not failed. */
  connectionClosed(c: Connection, graceful: boolean): void;
}

let nextConnId = 1;

export class Connection implements ReadPlan {
  readonly id = nextConnId++;
  /** Connection ID the initiator chose at login. */
  cid = 0;
  session: SessionLink | undefined;
  /** In full feature phase (login done). */
  ffp = false;
  closed = false;
  statSN = 0;
  headerDigest = false;
  dataDigest = false;
  maxRecvDataSegmentLength = LOGIN_MRDSL;
  maxXmitDataSegmentLength = LOGIN_MRDSL;
  /** When the last PDU arrived (idle pings). */
  lastRx = Date.now();
  /** Outstanding target NOP-In ping: its TTT and when it was sent. */
  pingTtt = NO_TAG;
  pingSent = 0;
  /** Where the next read should land (planRead()). */
  lead = -1;
  limit = 0;
  fit = 0;
  /** Set by whoever accepted the connection, before its first read. */
  login: LoginPhase | undefined;
  readonly connectedAt = Date.now();

  // Framer state: received chunks not yet consumed, and the slab of each (it holds a reference on it).
  private chunks: Buffer[] = [];
  private chunkSlabs: (RxSlab | undefined)[] = [];
  /** Slabs of chunks consumed during this read: released once what was dispatched from them took its holds. */
  private spent: RxSlab[] = [];
  private head = 0; // consumed bytes of chunks[0]
  private avail = 0;
  private hdr: Buffer | undefined;
  /** hdr is our own copy, not a view of a chunk (it must be, to outlive the read it came in). */
  private hdrOwned = false;
  private need = 0;
  private dataLen = 0;
  /** Bytes still to throw away (the data of a PDU we rejected on its header). */
  private skip = 0;
  private paused = false;
  /** Inside frame(): views of the current read are in use. */
  private framing = false;
  readonly socket: Socket;
  /** The socket's fd, to set its wake-up threshold (-1: a socket without a handle of its own). */
  private readonly fd: number;
  /** Commands with R2Ts outstanding on this connection: the data they are owed is sure to come. */
  readonly soliciting = new Set<Soliciting>();
  /** The socket's SO_RCVLOWAT as last set. */
  private lowat = 1;
  private lowatTimer: NodeJS.Timeout | undefined;
  /**
   * Sends made outside a read (asynchronous completions: fileio, block) are
   * corked until the event loop's check phase, so the completions of one poll
   * phase leave in one writev instead of a write per header and per buffer.
   */
  private corkedTillCheck = false;
  private readonly uncorkAtCheck = (): void => {
    this.corkedTillCheck = false;
    if (!this.socket.destroyed) this.socket.uncork();
  };

  constructor(
    accepted: Socket,
    /** Called once when it closes (its portal forgets it). */
    private readonly forget: (c: Connection) => void,
  ) {
    const socket = (this.socket = slabSocket(accepted, (b, slab) => this.onData(b, slab), this));
    this.fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd ?? -1;
    socket.setNoDelay(true);
    socket.on('error', (e) => log.debug(`iscsi: connection ${this.id}: ${e.message}`));
    socket.on('close', () => this.onClose());
  }

  get localAddress(): string {
    return this.socket.localAddress ?? '';
  }

  get localPort(): number {
    return this.socket.localPort ?? 0;
  }

  /** Target PDUs carry a header digest (negotiated, and in full feature phase). */
  get sendsHeaderDigest(): boolean {
    return this.headerDigest && this.ffp;
  }

  private onData(b: Buffer, slab: RxSlab | undefined): void {
    if (this.closed) return;
    this.lastRx = Date.now();
    if (this.skip > 0) {
      const n = Math.min(this.skip, b.length);
      this.skip -= n;
      if (n === b.length) return;
      b = b.subarray(n);
    }
    this.chunks.push(b);
    this.chunkSlabs.push(slab);
    if (slab !== undefined) rxPool.ref(slab);
    this.avail += b.length;
    // Everything answered while this read is processed (commands completing at once, as on RAM) leaves
    // in one writev rather than one per PDU.
    const s = this.socket;
    s.cork();
    this.framing = true;
    try {
      this.frame();
    } catch (e) {
      log.warn(`iscsi: connection ${this.id}: ${(e as Error).stack ?? e}`);
      this.destroy();
    } finally {
      this.framing = false;
      if (!s.destroyed) s.uncork();
      if (this.spent.length > 0) rxPool.releaseAll(this.spent);
    }
    if (!this.closed) this.wakeWhenOwedArrives();
    // An initiator that does not read what it asked for stops being read from: its data-in cannot pile up.
    if (s.writableLength > WRITE_BACKLOG && !this.paused) {
      this.paused = true;
      s.pause();
      s.once('drain', () => {
        this.paused = false;
        s.resume();
      });
    }
  }

  /**
   * Sets how much must be queued before the socket polls readable again: the
   * rest of a PDU already begun, and the Data-Out that outstanding R2Ts were
   * promised (their headers included, counted low). An initiator sends a burst
   * as 8 KiB PDUs that arrive a few segments at a time; waking for each costs
   * more CPU than everything done with the data (a context switch, an
   * epoll_wait and a read per wake-up).
   */
  private wakeWhenOwedArrives(): void {
    let owed = 0;
    let pdus = 0;
    const mrdsl = this.maxRecvDataSegmentLength;
    for (const t of this.soliciting) {
      const rest = t.r2tNext - t.received;
      if (t.done || t.r2tOutstanding === 0 || rest <= 0) {
        this.soliciting.delete(t);
        continue;
      }
      owed += rest;
      pdus += Math.ceil(rest / mrdsl);
    }
    // A socket without a handle of its own has no fd to set (the loop above still forgot ended commands).
    if (this.fd < 0) return;
    // A PDU whose header was framed comes with no further header.
    if (this.hdr !== undefined && pdus > 0) pdus--;
    const perPdu = BHS_LEN + (this.headerDigest ? DIGEST_LEN : 0) + (this.dataDigest ? DIGEST_LEN : 0);
    let want = owed + pdus * perPdu - this.avail;
    if (this.hdr !== undefined) want = Math.max(want, this.need - this.avail);
    want = want < LOWAT_MIN ? 1 : Math.min(want, LOWAT_MAX);
    if (want !== this.lowat) this.setLowat(want);
    if (want > 1) {
      if (this.lowatTimer === undefined) {
        this.lowatTimer = setTimeout(() => this.setLowat(1), LOWAT_GRACE_MS);
        this.lowatTimer.unref();
      } else this.lowatTimer.refresh();
    }
  }

  private setLowat(n: number): void {
    if (this.closed || n === this.lowat) return;
    try {
      setRcvLowat(this.fd, n);
      this.lowat = n;
    } catch (e) {
      log.debug(`iscsi: connection ${this.id}: ${(e as Error).message}`);
    }
  }

  /**
   * Steers the next read (rx-slab.ts ReadPlan) so that data segments land on
   * a page: one that begins a PDU (or the rest of its header) starts where the
   * data after a header without AHS falls on the boundary; one that begins a
   * data segment starts on it; one inside a segment continues it. A segment of
   * LARGE_SEGMENT or more is read to its end and no further; while R2Ts are
   * owed on a connection that takes such segments, a header is read alone
   * (two reads per large PDU, none more for small ones otherwise).
   */
  planRead(): void {
    this.lead = -1;
    this.limit = 0;
    this.fit = 0;
    if (this.closed || this.skip > 0) return;
    if (this.hdr === undefined) {
      if (this.avail >= BHS_LEN) return; // an AHS still to come: its length is unknown
      const hlen = BHS_LEN + (this.headerDigest ? DIGEST_LEN : 0) - this.avail;
      this.lead = hlen;
      const mrdsl = this.maxRecvDataSegmentLength;
      // Room for the largest PDU: its segment, begun in this read, must not continue in another slab.
      this.fit = hlen + mrdsl + (this.dataDigest ? DIGEST_LEN : 0);
      // Large Data-Out is owed: the header alone, so that its segment starts the next read, on a page, whatever
      // its length (R2Ts of several commands and new commands interleave: the next PDU's length is a guess).
      if (mrdsl >= LARGE_SEGMENT && this.soliciting.size > 0) this.limit = hlen;
      return;
    }
    if (this.avail === 0) this.lead = 0;
    if (this.need >= LARGE_SEGMENT) this.limit = this.fit = this.need - this.avail;
  }

  /** Cuts complete PDUs out of what arrived and dispatches them. */
  private frame(): void {
    for (;;) {
      if (this.closed) return;
      if (this.hdr === undefined) {
        if (this.avail < BHS_LEN) return;
        const first = this.chunks[0];
        // Peek at the AHS length without consuming.
        const ahsByte = first.length - this.head > H.TOTAL_AHS ? first[this.head + H.TOTAL_AHS] : this.byteAt(H.TOTAL_AHS);
        const hlen = BHS_LEN + ahsByte * 4 + (this.headerDigest ? DIGEST_LEN : 0);
        if (this.avail < hlen) return;
        const h = this.take(hlen);
        if (this.headerDigest) {
          const end = hlen - DIGEST_LEN;
          if (crc32c(h.subarray(0, end)) !== h.readUInt32LE(end)) {
            // Nothing in a header we cannot trust can be acted on, not even its length: at every ERL the
            // connection drops (without markers the next PDU cannot be found; see recovery.ts).
            log.warn(`iscsi: connection ${this.id}: header digest error; dropping the connection`);
            this.destroy();
            return;
          }
        }
        const dlen = dataLengthOf(h);
        const seg = dlen + pad4(dlen) + (this.dataDigest && dlen > 0 ? DIGEST_LEN : 0);
        if (dlen > this.maxRecvDataSegmentLength) {
          // A protocol error we can step over: the length is trustworthy (digest ok).
          this.reject(h, RejectReason.PROTOCOL_ERROR);
          this.discard(seg);
          continue;
        }
        this.hdr = h;
        this.hdrOwned = false;
        this.dataLen = dlen;
        this.need = seg;
      }
      if (this.avail < this.need) {
        // The header waits for its data past this read, whose slab may then be released.
        if (!this.hdrOwned) {
          this.hdr = Buffer.from(this.hdr);
          this.hdrOwned = true;
        }
        return;
      }
      const h = this.hdr;
      this.hdr = undefined;
      let data: Sgl = this.need === 0 ? [] : this.takeSgl(this.need);
      if (this.need > 0) {
        if (this.dataDigest && this.dataLen > 0) {
          const end = this.need - DIGEST_LEN;
          let crc = 0;
          for (const b of sglHead(data, end)) crc = crc32c(b, crc);
          const got = sglTailU32(data, end);
          if (crc !== got) {
            if (this.ffp) this.session!.dataDigestError(this, h);
            else this.reject(h, RejectReason.DATA_DIGEST);
            continue;
          }
        }
        if (this.need !== this.dataLen) data = sglHead(data, this.dataLen);
      }
      this.dispatch(h, data);
    }
  }

  private byteAt(offset: number): number {
    let off = this.head + offset;
    for (const c of this.chunks) {
      if (off < c.length) return c[off];
      off -= c.length;
    }
    return 0;
  }

  /** n bytes as one Buffer: a view when they lie in one chunk, else a copy (headers only). */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first.length - this.head >= n) {
      const v = first.subarray(this.head, this.head + n);
      this.consume(n);
      return v;
    }
    const out = Buffer.allocUnsafe(n);
    let done = 0;
    while (done < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length - this.head, n - done);
      c.copy(out, done, this.head, this.head + k);
      done += k;
      this.consume(k);
    }
    return out;
  }

  /**
   * n bytes as views of the received chunks: data segments are never copied.
   * Reads that continued a segment in the same slab give one view (O_DIRECT
   * takes a view whose length is whole blocks, not the pieces reads made of it).
   */
  private takeSgl(n: number): Buffer[] {
    const out: Buffer[] = [];
    while (n > 0) {
      const c = this.chunks[0];
      const k = Math.min(c.length - this.head, n);
      const last = out.length > 0 ? out[out.length - 1] : undefined;
      if (last !== undefined && last.buffer === c.buffer && last.byteOffset + last.length === c.byteOffset + this.head) {
        out[out.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + k);
      } else out.push(this.head === 0 && k === c.length ? c : c.subarray(this.head, this.head + k));
      n -= k;
      this.consume(k);
    }
    return out;
  }

  private consume(n: number): void {
    this.avail -= n;
    this.head += n;
    if (this.head === this.chunks[0].length) {
      this.chunks.shift();
      const slab = this.chunkSlabs.shift();
      if (slab !== undefined) this.spent.push(slab);
      this.head = 0;
    }
  }

  private discard(n: number): void {
    while (n > 0 && this.avail > 0) {
      const c = this.chunks[0];
      const k = Math.min(c.length - this.head, n);
      this.consume(k);
      n -= k;
    }
    this.skip = n;
  }

  private dispatch(h: Buffer, data: Sgl): void {
    if (!this.ffp) {
      if (opcodeOf(h) !== Op.LOGIN_REQ) {
        // Only login PDUs before full feature phase (RFC 7143 6.3): end the connection.
        log.warn(`iscsi: connection ${this.id}: opcode 0x${opcodeOf(h).toString(16)} before login completed`);
        this.destroy();
        return;
      }
      this.login!.receive(h, data);
      return;
    }
    this.session!.receive(this, h, data);
  }

  /**
   * Sends one PDU (pdu-builders.ts): its header (digest filled in here), then
   * the data buffers as they are, as many bytes as the header's
   * DataSegmentLength, padding and data digest (what is sent while a read
   * is framed leaves in one writev: onData corks around it; other sends are
   * corked until the loop's check phase). onWritten runs once the socket no longer needs any byte
   * of it (written to the kernel, or the socket gone): the data buffers may
   * then be reused.
   */
  send(h: Buffer, data?: Sgl, onWritten?: () => void): void {
    if (this.closed) {
      onWritten?.();
      return;
    }
    const dataLen = dataLengthOf(h);
    const hd = this.headerDigest && this.ffp;
    const s = this.socket;
    if (!this.framing && !this.corkedTillCheck) {
      this.corkedTillCheck = true;
      s.cork();
      setImmediate(this.uncorkAtCheck);
    }
    if (hd) h.writeUInt32LE(crc32c(h.subarray(0, BHS_LEN)), BHS_LEN);
    const hdr = h.length === (hd ? BHS_LEN + DIGEST_LEN : BHS_LEN) ? h : h.subarray(0, hd ? BHS_LEN + DIGEST_LEN : BHS_LEN);
    if (dataLen === 0 || data === undefined) {
      s.write(hdr, onWritten);
      return;
    }
    s.write(hdr);
    let left = dataLen;
    let crc = 0;
    const dd = this.dataDigest && this.ffp;
    const p = pad4(dataLen);
    for (let i = 0; i < data.length && left > 0; i++) {
      let b = data[i];
      if (b.length > left) b = b.subarray(0, left);
      left -= b.length;
      if (dd) crc = crc32c(b, crc);
      // Writes complete in order: the callback of the PDU's last write covers all of it.
      s.write(b, left === 0 && p === 0 && !dd ? onWritten : undefined);
    }
    if (p) {
      s.write(PAD.subarray(0, p), dd ? undefined : onWritten);
      if (dd) crc = crc32c(PAD.subarray(0, p), crc);
    }
    if (dd) {
      const d = Buffer.allocUnsafe(4);
      d.writeUInt32LE(crc >>> 0);
      s.write(d, onWritten);
    }
  }

  /** A header for a target PDU sized for this connection's header digest (a kept header sent again: recovery.ts). */
  header(opcode: number, flags: number): Buffer {
    return newHeader(opcode, flags, this.sendsHeaderDigest);
  }

  /** Reject PDU carrying the offending header (RFC 7143 11.17). */
  reject(bad: Buffer, reason: number): void {
    this.send(rejectPdu(this, this.session?.window ?? NO_WINDOW, reason), [Buffer.from(bad.subarray(0, BHS_LEN))]);
  }

  /** Bytes another thread read from this socket before handing it here (handoff.ts): framed before any read of its own. */
  replay(bytes: Buffer): void {
    if (bytes.length > 0) this.onData(bytes, undefined);
  }

  /**
   * Gives the socket up to another thread (handoff.ts): a duplicate of its fd
   * and a copy of what was read but not framed yet; this side then closes its
   * handle, which reads no further. Undefined: a socket without an fd of its own.
   */
  handOff(): { fd: number; rest: Buffer } | undefined {
    if (this.fd < 0 || this.closed) return undefined;
    const fd = dupFd(this.fd);
    const rest = Buffer.concat(this.chunks.map((c, i) => (i === 0 ? c.subarray(this.head) : c)));
    this.socket.destroy();
    this.onClose();
    return { fd, rest };
  }

  /** Closes gracefully once everything queued is written. */
  end(): void {
    if (this.closed) return;
    this.socket.end();
    this.onClose(true);
  }

  /** graceful: the connection leaves its session in order (replaced by a login with its CID), not failing. */
  destroy(graceful = false): void {
    if (this.closed) return;
    // What was answered before (a task management response ahead of a reset's session drop) still leaves.
    while (this.socket.writableCorked > 0) this.socket.uncork();
    this.socket.destroy();
    this.onClose(graceful);
  }

  private onClose(graceful = false): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.lowatTimer);
    this.soliciting.clear();
    this.chunks = [];
    // Views of the read being framed may still be in use up the stack: those slabs go when it is done.
    for (const slab of this.chunkSlabs) if (slab !== undefined) this.spent.push(slab);
    this.chunkSlabs = [];
    if (!this.framing) rxPool.releaseAll(this.spent);
    this.forget(this);
    this.login?.dispose();
    this.login = undefined;
    if (this.session) this.session.connectionClosed(this, graceful);
  }
}

/** The first n bytes of a list, as views. */
function sglHead(sgl: Sgl, n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of sgl) {
    if (n <= 0) break;
    out.push(b.length <= n ? b : b.subarray(0, n));
    n -= b.length;
  }
  return out;
}

/** The little-endian u32 at offset of a list (the data digest, which may straddle chunks). */
function sglTailU32(sgl: Sgl, offset: number): number {
  const bytes = [0, 0, 0, 0];
  let i = 0;
  for (const b of sgl) {
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    for (let k = offset; k < b.length && i < 4; k++) bytes[i++] = b[k];
    offset = 0;
    if (i === 4) break;
  }
  return (bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (bytes[3] << 24)) >>> 0;
}

