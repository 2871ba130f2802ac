// rbd: a Ceph RBD image as a logical unit, through librbd's async C API
// (native/rbd.cc). Data moves between librbd and the command's own buffers;
// completions come back in batches through the image's eventfd, drained on
// the loop. What RADOS does atomically is offloaded: COMPARE AND WRITE (one
// OSD op, so atomic across gateways), WRITE SAME, zeroing (whole objects are
// removed: thin), and GET LBA STATUS reads the object map (fast-diff).
// Cluster faults: an operation waits for a down OSD up to the connection's
// timeout, then fails with a sense that says the unit lost its storage.
// Reads bypass librbd where that returns the same bytes (native/rados-read.cc:
// no parent data, default striping, no journal): RADOS reads of the data
// objects straight into the command's buffers, completed in the same batches.
// Everything that changes the image stays on librbd (exclusive lock, object map).

import os from 'node:os';

import type { Backstore, BackstoreCaps, BackstoreOptions, LbaExtent, SharedRecord } from '../src/core/backstore';
import { Asc, ScsiError, SenseKey, aluaTransitioning } from '../src/core/sense';
import { sglLength, sglSlice, type Sgl } from '../src/core/sgl';
import { log } from '../src/core/log';
import { FdWatcher, errnoError, eventfdRead, rbdConstants, type RadosCluster, type RbdImage } from '../native';
import { acquireCluster, releaseCluster, renewCluster, type ClusterParams } from './rbd-cluster';
import { RadosRecords } from './rbd-shared';

const DEFAULT_BLOCK_SIZE = 512;
/** Seconds an operation waits on the cluster (an OSD or mon that is down) before it fails. */
const DEFAULT_TIMEOUT = 30;
/** What native poll() drains at most per call (kBatch in native/rbd.cc). */
const POLL_BATCH = 256;
/** librbd takes at most IOV_MAX iovecs per call. */
const IOV_MAX = 1024;
/** How much of the image one allocation walk covers (object map reads, no object I/O). */
const LBA_STATUS_WINDOW = 1 << 30;

const ERRNO_NAMES = new Map(Object.entries(os.constants.errno).map(([k, v]) => [v, k as keyof typeof os.constants.errno]));
const { ETIMEDOUT, EILSEQ } = os.constants.errno;
/** Linux ESHUTDOWN, librados' EBLOCKLISTED (this client fenced); Node's table lacks it. */
const ESHUTDOWN = 108;

/** Per-operation state until poll() reports it: the promise, and the buffers librbd is using. */
interface Pending {
  /** Plain operations settle with undefined, compare-and-write with the miscompare offset or -1. */
  resolve(v?: number): void;
  reject(e: Error): void;
  /** Referenced so the memory stays alive while librbd reads or writes it. */
  keep: unknown;
  /** compare-and-write: -EILSEQ resolves with the miscompare offset. */
  caw: boolean;
  /** Image offset of the operation (compare-and-write's miscompare is relative to it). */
  offset: number;
  call: string;
}

/**
 * The failure of one librbd operation as the command should see it. A timeout is the cluster
 * not answering (an OSD or mon down for longer than the timeout): ABORTED COMMAND, LOGICAL UNIT
 * COMMUNICATION TIME-OUT, which initiators retry and then fail. ESHUTDOWN is this client fenced
 * (blocklisted): the gateway makes a new client and joins again, meanwhile NOT READY, ASYMMETRIC
 * ACCESS STATE TRANSITION, which initiators retry (or try on another path). Others keep their errno (EIO: MEDIUM
 * ERROR, ENOSPC: out of space, EROFS: write protected) for the core's usual mapping.
 */
export function rbdError(errno: number, call: string, what: string): Error {
  if (errno === ETIMEDOUT) {
    return new ScsiError(SenseKey.ABORTED_COMMAND, Asc.LU_COMMUNICATION_TIMEOUT);
  }
  if (errno === ESHUTDOWN) return aluaTransitioning();
  const name = ERRNO_NAMES.get(errno) ?? 'EIO';
  return errnoError(name, call, what);
}

/** Submits operations on one image and settles them from the batches poll() drains. */
class ImageIo {
  private next = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly watcher: FdWatcher;
  private idle: (() => void) | undefined;
  /** The client was fenced: nothing more reaches this image (a new ImageIo replaces it). */
  dead = false;
  /** An operation failed because this client is fenced. */
  onFenced: (() => void) | undefined;
  /** Reads go to the data objects with RADOS (stat() found the image fit for it and the setting allows it). */
  direct = false;
  /** Why reads go through librbd, when they do. */
  why = 'not checked yet';

  constructor(
    readonly image: RbdImage,
    private readonly what: string,
  ) {
    this.watcher = new FdWatcher(image.fd, () => this.drain());
  }

  /** Starts one operation; resolves once librbd reports it done, rejects with rbdError. */
  submit(call: string, offset: number, keep: unknown, start: (id: number) => void): Promise<void> {
    return this.start(call, offset, keep, start, false) as Promise<void>;
  }

  /** Starts a compare-and-write; resolves with the miscompare offset, or -1 when it wrote. */
  submitCompare(offset: number, keep: unknown, start: (id: number) => void): Promise<number> {
    return this.start('rbd_aio_compare_and_write', offset, keep, start, true) as Promise<number>;
  }

  private start(call: string, offset: number, keep: unknown, start: (id: number) => void, caw: boolean): Promise<number | void> {
    if (this.dead) return Promise.reject(aluaTransitioning());
    const id = this.next;
    this.next = id >= 0x7fffffff ? 1 : id + 1;
    return new Promise<number | void>((resolve, reject) => {
      try {
        start(id);
      } catch (e) {
        reject(e);
        return;
      }
      this.pending.set(id, { resolve, reject, keep, caw, offset, call });
    });
  }

  private drain(): void {
    const img = this.image;
    try {
      let n: number;
      do {
        n = img.poll();
        for (let i = 0; i < n; i++) {
          const id = img.ids[i];
          const p = this.pending.get(id);
          if (p === undefined) continue;
          this.pending.delete(id);
          const r = img.results[i];
          if (r === -ESHUTDOWN) this.onFenced?.();
          if (p.caw) {
            if (r === -EILSEQ) p.resolve(img.aux[i]);
            else if (r < 0) p.reject(rbdError(-r, p.call, `${this.what} at byte ${p.offset}`));
            else p.resolve(-1);
          } else if (r < 0) p.reject(rbdError(-r, p.call, `${this.what} at byte ${p.offset}`));
          else p.resolve();
        }
      } while (n === POLL_BATCH);
    } catch (e) {
      log.error(`rbd ${this.what}: draining completions failed`, e);
    }
    if (this.pending.size === 0 && this.idle) this.idle();
  }

  /** Resolves once nothing is in flight (librbd cannot cancel; its timeout bounds the wait). */
  settled(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.idle = () => {
        this.idle = undefined;
        resolve();
      };
    });
  }

  stop(): void {
    this.watcher.stop();
  }
}

/** Exactly length bytes of sgl, as at most IOV_MAX-buffer pieces with their offsets from the start. */
function pieces(sgl: Sgl, length: number): { bufs: readonly Buffer[]; at: number }[] {
  const bufs = sgl.length === 1 && sgl[0].length === length ? sgl : sglLength(sgl) === length ? sgl : sglSlice(sgl, 0, length);
  if (bufs.length <= IOV_MAX) return [{ bufs, at: 0 }];
  const out: { bufs: readonly Buffer[]; at: number }[] = [];
  for (let i = 0, at = 0; i < bufs.length; i += IOV_MAX) {
    const part = bufs.slice(i, i + IOV_MAX);
    out.push({ bufs: part, at });
    at += sglLength(part);
  }
  return out;
}

class RbdBackstore implements Backstore {
  readonly plugin = 'rbd';
  readonly caps: BackstoreCaps;
  private capacityListener: (() => void) | undefined;
  private updates: FdWatcher;
  /** Set while this gateway, found fenced, moves to a new client. */
  private recovering: Promise<void> | undefined;
  private closed = false;
  /** Pool work on the image (stat, walks, resize): close() waits for it, so rbd_close never races it. */
  private readonly busy = new Set<Promise<unknown>>();
  private readonly records = new Map<string, SharedRecord>();
  /** Configured (non_owner_state): this gateway's ALUA group is standby while another owns the image. */
  nonOwnerStandby = false;
  /** Reads served from the data objects directly (statistics; `info` shows it). */
  private directReads = 0;

  constructor(
    private io: ImageIo,
    /** What every gateway of this image shares: its persistent reservations, its ALUA state. */
    private readonly shares: RadosRecords,
    private readonly cluster: ClusterParams,
    private readonly what: string,
    private _size: number,
    readonly gatewayGroup: number | undefined,
    readonly blockSize: number,
    readonly physicalBlockSize: number,
    fastDiff: boolean,
    /** Opens the image again through a new connection (after a fence). */
    private readonly reopen: (c: RadosCluster) => Promise<RbdImage>,
    /** The direct_reads setting: reads may bypass librbd where the image allows it. */
    private readonly directAllowed: boolean,
    /** stat().direct at open. */
    direct: string,
  ) {
    this.readPath(direct);
    this.caps = {
      // Zeroing removes whole objects and zeroes the rest: deallocated ranges read zeros.
      unmap: true,
      writeZeroes: true,
      // Allocation from the object map; without fast-diff every object would have to be asked.
      lbaStatus: fastDiff,
      sanitizeOverwrite: true,
      sanitizeBlockErase: true,
      persistent: true,
      nonRotational: false,
    };
    this.updates = this.watchUpdates(io.image);
    io.onFenced = () => this.fenced();
    shares.onFenced = () => this.fenced();
  }

  private watchUpdates(img: RbdImage): FdWatcher {
    return new FdWatcher(img.updateFd, () => {
      eventfdRead(img.updateFd);
      void this.refreshSize();
    });
  }

  /**
   * This gateway's client was fenced (blocklisted: another gateway declared it dead). It serves
   * nothing more from the old image (commands fail NOT READY, transitioning), closes it, makes a
   * new client (a new address), opens the image with it and lets its records' listeners join
   * again (ALUA: as non-optimized).
   */
  private fenced(): void {
    if (this.closed || this.io.dead) return;
    this.io.dead = true;
    this.shares.noticeFenced();
    const t = Date.now();
    this.recovering = this.recover(t)
      .catch((e) => log.error(`rbd ${this.what}: joining again after the fence failed`, e))
      .finally(() => (this.recovering = undefined));
  }

  private async recover(t: number): Promise<void> {
    const old = this.io;
    const oldCluster = this.shares.cluster;
    log.warn(`rbd ${this.what}: fenced; this gateway serves nothing from the image until it has opened it again with a new client`);
    this.updates.stop();
    await this.shares.close().catch((e) => log.warn(`rbd ${this.what}: closing the fenced shared records failed`, e));
    await Promise.allSettled([...this.busy]);
    await old.settled();
    old.stop();
    await old.image.close().catch((e) => log.warn(`rbd ${this.what}: closing the fenced image failed`, e));
    let renewed = false;
    for (let i = 0; !this.closed; i++) {
      try {
        // The first try leaves the fenced connection (its last user shuts it down); later ones only connect.
        const c = renewed ? await acquireCluster(this.cluster) : await renewCluster(this.cluster, oldCluster);
        renewed = true;
        let img: RbdImage;
        try {
          img = await this.reopen(c);
        } catch (e) {
          await releaseCluster(this.cluster, c);
          throw e;
        }
        this.io = new ImageIo(img, this.what);
        this.io.onFenced = () => this.fenced();
        this.updates = this.watchUpdates(img);
        await this.shares.reopen(c);
        log.info(`rbd ${this.what}: joined again as client.${c.instanceId()} (${c.addresses()}), ${Date.now() - t} ms after the fence was noticed`);
        void this.refreshSize();
        return;
      } catch (e) {
        if (i % 10 === 0) log.warn(`rbd ${this.what}: a new client after the fence failed; trying again`, e);
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  get size(): number {
    return this._size;
  }

  read(offset: number, length: number, sgl: Sgl): Promise<void> | void {
    if (length === 0) return;
    const img = this.io.image;
    const parts = pieces(sgl, length);
    if (this.io.direct) {
      this.directReads++;
      if (parts.length === 1) return this.io.submit('rados_aio_read', offset, sgl, (id) => img.readDirect(id, parts[0].bufs, offset));
      return this.all(parts.map((p) => this.io.submit('rados_aio_read', offset + p.at, p.bufs, (id) => img.readDirect(id, p.bufs, offset + p.at))));
    }
    if (parts.length === 1) return this.io.submit('rbd_aio_readv', offset, sgl, (id) => img.readv(id, parts[0].bufs, offset));
    return this.all(parts.map((p) => this.io.submit('rbd_aio_readv', offset + p.at, p.bufs, (id) => img.readv(id, p.bufs, offset + p.at))));
  }

  /** Where reads go, from a fresh stat(): the data objects when the image allows it and the setting does. */
  private readPath(direct: string): void {
    this.io.direct = this.directAllowed && direct === '';
    this.io.why = !this.directAllowed ? 'direct_reads off' : direct;
  }

  /** With rbd_cache off a write completes once the OSDs have it: FUA needs nothing more. */
  write(offset: number, length: number, sgl: Sgl, _fua: boolean): Promise<void> | void {
    if (length === 0) return;
    const img = this.io.image;
    const parts = pieces(sgl, length);
    if (parts.length === 1) return this.io.submit('rbd_aio_writev', offset, sgl, (id) => img.writev(id, parts[0].bufs, offset));
    return this.all(parts.map((p) => this.io.submit('rbd_aio_writev', offset + p.at, p.bufs, (id) => img.writev(id, p.bufs, offset + p.at))));
  }

  flush(): Promise<void> {
    return this.io.submit('rbd_aio_flush', 0, undefined, (id) => this.io.image.flush(id));
  }

  /**
   * librbd's discard may skip the parts of objects it does not cover whole, which would then
   * not read zeros; write-zeroes removes whole objects and zeroes the rest, so UNMAP is that.
   */
  unmap(offset: number, length: number): Promise<void> | void {
    return this.writeZeroes(offset, length);
  }

  writeZeroes(offset: number, length: number): Promise<void> | void {
    if (length === 0) return;
    return this.io.submit('rbd_aio_write_zeroes', offset, undefined, (id) => this.io.image.writeZeroes(id, offset, length));
  }

  writeSame(offset: number, length: number, block: Buffer, _fua: boolean): Promise<void> {
    return this.io.submit('rbd_aio_writesame', offset, block, (id) => this.io.image.writeSame(id, offset, length, block));
  }

  compareAndWrite(offset: number, compare: Buffer, data: Buffer, _fua: boolean): Promise<number> {
    return this.io.submitCompare(offset, [compare, data], (id) => this.io.image.compareAndWrite(id, offset, compare, data));
  }

  /**
   * From the object map (whole objects): an object that exists is mapped, one that does not is
   * deallocated. Zeroing part of an object keeps it mapped; zeroing it whole deallocates it.
   */
  async lbaStatus(offset: number, maxLength: number): Promise<LbaExtent> {
    const window = Math.min(maxLength, LBA_STATUS_WINDOW, this._size - offset);
    if (window <= 0) return { deallocated: false, length: Math.max(maxLength, this.blockSize) };
    const ext = await this.track(this.io.image.allocated(offset, window, true)).catch((e: NodeJS.ErrnoException) => {
      throw rbdError(-(e.errno ?? -5), 'rbd_diff_iterate2', this.what);
    });
    // Extents come in order and may touch; the first says whether offset is mapped.
    let i = 0;
    while (i < ext.length && ext[i] + ext[i + 1] <= offset) i += 2;
    if (i >= ext.length) return { deallocated: true, length: window };
    if (ext[i] > offset) return { deallocated: true, length: ext[i] - offset };
    let end = ext[i] + ext[i + 1];
    for (i += 2; i < ext.length && ext[i] <= end; i += 2) end = Math.max(end, ext[i] + ext[i + 1]);
    return { deallocated: false, length: Math.min(end, offset + window) - offset };
  }

  /** Grows the image; shrinking would cut off data other gateways may still serve, so it is refused. */
  async resize(size: number): Promise<void> {
    if (size < this._size) throw new Error(`rbd ${this.what}: the image is ${this._size} bytes; it is never shrunk (asked ${size})`);
    if (size % this.blockSize !== 0) throw new RangeError(`rbd ${this.what}: size ${size} is not a multiple of the block size ${this.blockSize}`);
    await this.track(this.io.image.resize(size));
    this._size = size;
  }

  shared(name: string): SharedRecord {
    let r = this.records.get(name);
    if (r === undefined) this.records.set(name, (r = this.shares.record(name)));
    return r;
  }

  /** This gateway's client, whether it is connected or fenced (joining again), and the image's exclusive lock. */
  async clusterStatus(): Promise<Record<string, string | number | boolean>> {
    const c = this.shares.cluster;
    const out: Record<string, string | number | boolean> = { client: `client.${c.instanceId()}`, address: c.addresses(), fsid: c.fsid() };
    if (this.io.dead) return { ...out, connection: 'fenced (blocklisted): joining again with a new client' };
    out.connection = 'connected';
    const [owner, holders] = await Promise.all([this.track(this.io.image.isLockOwner()), this.track(this.io.image.lockOwners())]);
    out.exclusive_lock = owner ? 'held by this gateway' : holders.length === 0 ? 'free' : `held by ${holders.join(', ')}`;
    out.reads = this.io.direct ? 'direct from the data objects (RADOS)' : `through librbd (${this.io.why})`;
    out.direct_reads = this.directReads;
    return out;
  }

  watchCapacity(onChange: () => void): void {
    this.capacityListener = onChange;
  }

  /** The header changed (someone resized the image): reads the size and tells the unit. */
  private async refreshSize(): Promise<void> {
    if (this.closed) return;
    try {
      const st = await this.track(this.io.image.stat());
      if (this.closed) return;
      this.readPath(st.direct);
      const size = Math.floor(st.size / this.blockSize) * this.blockSize;
      if (size === this._size || this.closed) return;
      log.info(`rbd ${this.what}: capacity changed from ${this._size} to ${size} bytes`);
      this._size = size;
      this.capacityListener?.();
    } catch (e) {
      log.warn(`rbd ${this.what}: reading the image header after a change failed`, e);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.recovering;
    this.updates.stop();
    await this.shares.close().catch((e) => log.warn(`rbd ${this.what}: closing the shared records failed`, e));
    await Promise.allSettled([...this.busy]);
    await this.io.settled();
    this.io.stop();
    try {
      await this.io.image.close();
    } finally {
      await releaseCluster(this.cluster, this.shares.cluster);
    }
  }

  private track<T>(p: Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`rbd ${this.what}: closed`));
    this.busy.add(p);
    const forget = () => this.busy.delete(p);
    p.then(forget, forget);
    return p;
  }

  private all(ps: Promise<void>[]): Promise<void> {
    return Promise.all(ps).then(() => undefined);
  }
}

function param(opts: BackstoreOptions, name: string): string | number | boolean | undefined {
  return opts.params?.[name];
}

function str(opts: BackstoreOptions, name: string): string | undefined {
  const v = param(opts, name);
  return v === undefined || v === '' ? undefined : String(v);
}

/**
 * Opens pool/namespace/image on the cluster the params name, creating the image with opts.size
 * when it is missing. An existing image is grown to opts.size when smaller, never shrunk: the
 * unit's capacity is the image's size.
 */
export async function createRbd(opts: BackstoreOptions): Promise<Backstore> {
  const image = str(opts, 'image');
  if (image === undefined) throw new Error(`rbd ${opts.name}: image is required`);
  const pool = str(opts, 'pool') ?? 'rbd';
  const namespace = str(opts, 'namespace') ?? '';
  const what = `${pool}/${namespace ? `${namespace}/` : ''}${image}`;
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (blockSize !== 512 && blockSize !== 4096) throw new RangeError(`rbd ${what}: block size ${blockSize} must be 512 or 4096`);
  const physicalBlockSize = opts.physicalBlockSize ?? blockSize;
  if (opts.size !== undefined && (opts.size <= 0 || opts.size % blockSize !== 0)) {
    throw new RangeError(`rbd ${what}: size ${opts.size} must be a positive multiple of the block size ${blockSize}`);
  }
  const timeout = Number(param(opts, 'timeout') ?? DEFAULT_TIMEOUT);
  const cluster: ClusterParams = { conf: str(opts, 'conf'), clientId: str(opts, 'client_id') ?? 'admin', keyring: str(opts, 'keyring'), timeout };
  const readonly = opts.readonly === true;

  const connected = await acquireCluster(cluster).catch((e: Error) => {
    throw new Error(`rbd ${what}: cannot connect to the cluster (${cluster.conf ?? 'default ceph.conf'}, client.${cluster.clientId}): ${e.message}`);
  });
  let img: RbdImage | undefined;
  try {
    img = await openImage(connected, pool, namespace, image, readonly ? 0 : (opts.size ?? 0), readonly, what);
    const st = await img.stat();
    let size = st.size;
    if (opts.size !== undefined && opts.size > size && !readonly) {
      await img.resize(opts.size);
      size = opts.size;
    }
    size = Math.floor(size / blockSize) * blockSize;
    if (size === 0) throw new Error(`rbd ${what}: the image is smaller than one block`);
    const { RBD_FEATURE_FAST_DIFF, RBD_FLAG_FAST_DIFF_INVALID } = rbdConstants;
    // Both bits sit in the low 32 bits, where JS bitwise operators work.
    const fastDiff = (st.features & RBD_FEATURE_FAST_DIFF) !== 0 && (st.flags & RBD_FLAG_FAST_DIFF_INVALID) === 0;
    const shares = new RadosRecords(connected, pool, namespace, image, what);
    const group = param(opts, 'gateway_group');
    const reopen = (c: RadosCluster) => openImage(c, pool, namespace, image, 0, readonly, what);
    const direct = param(opts, 'direct_reads');
    const directAllowed = direct !== false && direct !== 'false';
    const store = new RbdBackstore(new ImageIo(img, what), shares, cluster, what, size, group === undefined ? undefined : Number(group), blockSize, physicalBlockSize, fastDiff, reopen,
      directAllowed, st.direct);
    store.nonOwnerStandby = param(opts, 'non_owner_state') === 'standby';
    return store;
  } catch (e) {
    if (img !== undefined) await img.close().catch(() => undefined);
    await releaseCluster(cluster);
    throw e;
  }
}

async function openImage(c: RadosCluster, pool: string, ns: string, name: string, createSize: number, readonly: boolean, what: string): Promise<RbdImage> {
  try {
    return await c.openImage(pool, ns, name, createSize, readonly);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' && err.syscall === 'rbd_open') {
      throw new Error(`rbd ${what}: no such image${readonly ? '' : ' and no size was given to create it'}`);
    }
    if (err.code === 'ENOENT') throw new Error(`rbd ${what}: no such pool (${err.message})`);
    throw new Error(`rbd ${what}: ${err.message}`);
  }
}
