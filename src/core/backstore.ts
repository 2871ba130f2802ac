// The interface between the SCSI core and where blocks live. A backstore moves
// bytes; every SCSI rule (ranges, protection, caching policy, sense) is the
// core's. Offsets and lengths are in bytes, always multiples of the logical
// block size. Methods may finish synchronously (return undefined) or return a
// promise; none may block the event loop.

import type { Sgl } from './sgl';
import type { DataDir, MaybePromise } from './types';

export type { MaybePromise } from './types';

export interface BackstoreCaps {
  /** UNMAP / WRITE SAME with UNMAP deallocate, and the range reads back zeros. */
  unmap: boolean;
  /** writeZeroes is cheaper than writing a zero buffer. */
  writeZeroes: boolean;
  /** lbaStatus reports real allocation (GET LBA STATUS). */
  lbaStatus: boolean;
  /** SANITIZE service actions the store can carry out. */
  sanitizeOverwrite: boolean;
  sanitizeBlockErase: boolean;
  /** flush() reaches stable storage (false for RAM, where it is a no-op by nature). */
  persistent: boolean;
  /** Non-rotational medium (VPD B1); an attribute may still override. */
  nonRotational: boolean;
}

export interface LbaExtent {
  /** true: the range holds no data (reads zeros, costs no space). */
  deallocated: boolean;
  /** Bytes from the asked offset that share this state (> 0). */
  length: number;
}

/** What a pass-through device answered to one command. */
export interface PassthroughResult {
  /** SCSI status byte. */
  status: number;
  /** Host adapter status (Linux DID_*): non-zero when the command did not complete at the device. */
  hostStatus: number;
  /** Bytes of the transfer that did not move. */
  resid: number;
  /** The device's sense data, as it returned it. */
  sense?: Buffer;
}

/** A real SCSI device that commands pass through to (pscsi). */
export interface ScsiDevice {
  /** Peripheral device type from the device's INQUIRY (0 disk, 1 tape, 5 CD/DVD...). */
  readonly deviceType: number;
  /** Tape: block length of fixed-block READ/WRITE (0: variable blocks); kept current after MODE SELECT. */
  tapeBlockLength: number;
  /** Sends one CDB; length bytes move through sgl in place (dir NONE: no data). */
  execute(cdb: Buffer, dir: DataDir, sgl: Sgl | undefined, length: number): Promise<PassthroughResult>;
}

/**
 * A small record every gateway serving one shared store (an rbd image exported by several tsiod
 * processes) keeps in the store's cluster: the unit's persistent reservations, its ALUA state.
 * Every change is a compare-and-swap on the record's version, and a notify reaches every gateway
 * before the change counts as done.
 */
export interface SharedRecord {
  /** This gateway's id among those sharing the record (what notify() lists). */
  readonly self: string;
  /** The record and its version (version 0, data undefined: there is none yet). */
  read(): Promise<{ version: number; data: Buffer | undefined }>;
  /** Replaces the record if it is still at version (0: none yet); the new version, or undefined when another writer came first. */
  swap(version: number, data: Buffer): Promise<number | undefined>;
  /**
   * Hands msg to every other gateway's listener and resolves once each has handled it, with the
   * ids of the gateways that did (this one included); a gateway that does not answer in time is
   * fenced (cut off from the cluster) first.
   */
  notify(msg: Buffer): Promise<string[]>;
  /** Fences a gateway (by its id) that is gone or cut off: it can no longer reach the store. */
  fence(gateway: string): Promise<void>;
  /**
   * Starts listening: onMessage runs for each other gateway's notify (the notifier waits for the
   * promise); onResync when messages may have been missed (the watch was lost and set up again, or
   * the gateway has a new client after a fence); onFenced when this gateway learns it was fenced
   * (until the onResync that follows, it must serve nothing from the store).
   */
  listen(onMessage: (msg: Buffer) => Promise<void>, onResync: () => void, onFenced?: () => void): Promise<void>;
  /**
   * Makes the record (empty) when missing and announces this gateway on it, before it listens: a
   * gateway that starts later and writes the record after this one read it makes its swap fail.
   */
  announce?(): Promise<void>;
  /** The other gateways listening now (each answers a probe; a silent one is fenced and not counted). */
  peers?(): Promise<string[]>;
}

export interface Backstore {
  readonly plugin: string;
  /** Capacity in bytes (a multiple of blockSize). */
  readonly size: number;
  /** Logical block size in bytes: 512 or 4096. */
  readonly blockSize: number;
  /** Physical block size, for READ CAPACITY(16)'s exponent; defaults to blockSize. */
  readonly physicalBlockSize: number;
  readonly caps: BackstoreCaps;

  /** Reads length bytes at offset into sgl, from its start. */
  read(offset: number, length: number, sgl: Sgl): MaybePromise<void>;
  /**
   * Views of length bytes at offset of the backstore's own memory (RAM), for
   * a fabric that sends them without copying. They keep reading as they read
   * now (later writes and unmaps go to other memory) until release() is called.
   */
  lend?(offset: number, length: number): { sgl: Sgl; release: () => void };
  /** Writes length bytes from sgl at offset. fua: on stable storage before it resolves. */
  write(offset: number, length: number, sgl: Sgl, fua: boolean): MaybePromise<void>;
  /** Everything written so far reaches stable storage. */
  flush(): MaybePromise<void>;
  /** Deallocates the range; it reads back zeros afterwards. Only when caps.unmap. */
  unmap(offset: number, length: number): MaybePromise<void>;
  /** Zeroes the range, deallocating where cheaper if allowed. Always available. */
  writeZeroes(offset: number, length: number): MaybePromise<void>;
  /** Allocation state at offset, at most maxLength bytes long. */
  lbaStatus(offset: number, maxLength: number): MaybePromise<LbaExtent>;
  /** Optional hint that a range will be read soon (PRE-FETCH). */
  prefetch?(offset: number, length: number): MaybePromise<void>;
  /** SANITIZE: overwrite every block with the pattern repeated; block erase deallocates all. */
  sanitize?(kind: 'overwrite' | 'block-erase', pattern?: Buffer): Promise<void>;
  /** Grows or shrinks the store (rd_mcp, fileio); the core raises CAPACITY DATA HAS CHANGED. */
  resize?(size: number): Promise<void>;
  /**
   * WRITE SAME offload: block (one logical block) repeated over the range. Without it the core
   * writes the pattern out chunk by chunk. fua: as for write.
   */
  writeSame?(offset: number, length: number, block: Buffer, fua: boolean): MaybePromise<void>;
  /**
   * COMPARE AND WRITE offload, atomic in the store itself (so across every client of shared
   * storage, not only under this unit's range lock): compares the medium at offset with compare
   * and, only when equal, writes data (as long). Resolves -1 when it wrote, else the offset of the
   * first differing byte from offset (the sense INFORMATION).
   */
  compareAndWrite?(offset: number, compare: Buffer, data: Buffer, fua: boolean): Promise<number>;
  /**
   * Called once by the unit's owner: the store calls onChange after its size changed from
   * outside (another client of shared storage grew it), once size reads the new value.
   */
  watchCapacity?(onChange: () => void): void;
  /**
   * Called once by the unit's owner: the store calls onLost when it learns, outside any command, that its
   * storage is gone (the backing file was deleted), with why. Errors of commands tell the rest (ENXIO...).
   */
  watchHealth?(onLost: (why: string) => void): void;
  /**
   * Asked after a command failed with an errno: whether the storage itself is gone (a removed device
   * reports EIO or ENOSPC too), and why; undefined when it is still there.
   */
  lost?(): string | undefined;
  /**
   * Thin stores that know their space (fileio: the file's blocks and its file system's free space): bytes
   * the store holds allocated, and bytes it could still allocate. The provisioning thresholds read it.
   */
  space?(): Promise<{ used: number; free: number }>;
  /**
   * Shared storage served by several gateways: the record `name` (pr, alua) of this store, kept in
   * its cluster. Absent: the store has one server, and its state stays in this process.
   */
  shared?(name: string): SharedRecord;
  /** Shared storage: this gateway's client, its connection and the image's exclusive lock, as management shows them. */
  clusterStatus?(): Promise<Record<string, string | number | boolean>>;
  /** Shared storage: the ALUA target port group this gateway is for the unit (configured); absent: one group. */
  readonly gatewayGroup?: number;
  /** Shared storage: this gateway's group is standby, not active/non-optimized, while another group owns the unit (configured). */
  readonly nonOwnerStandby?: boolean;
  /**
   * Memory stores (rd_mcp): the contents as structured-cloneable data, shared and not copied, which the same
   * plugin's factory on another thread takes as `adopt` (a unit re-homed live, io_threads > 1). Called after the
   * unit drained, right before close(); stores without it are reopened from their device.
   */
  handOver?(): unknown;
  /** Flushes what is cached and releases the store. */
  close(): Promise<void>;
  /** pscsi: the device itself; the unit then uses a pass-through command table for its type. */
  readonly passthrough?: ScsiDevice;
}

/** What every plugin's factory receives: the storage object's config, sizes already in bytes. */
export interface BackstoreOptions {
  name: string;
  /** Bytes; required for rd_mcp, optional for fileio (file size), ignored for block. */
  size?: number;
  blockSize?: number;
  /** rd_mcp: physical block size to report; default blockSize. */
  physicalBlockSize?: number;
  /** fileio, block, pscsi: a path. */
  dev?: string;
  /** rd_mcp: discard writes and read nothing. */
  nullio?: boolean;
  /** fileio: open with O_DIRECT. */
  direct?: boolean;
  /** block/fileio: refuse writes at the store level. */
  readonly?: boolean;
  /** The plugin's own fields beyond these, by their spec names (rbd: pool, image, conf...). */
  params?: Readonly<Record<string, string | number | boolean>>;
  /** What handOver() of this unit's instance on another thread gave: served instead of an empty store. */
  adopt?: unknown;
}

export type BackstoreFactory = (opts: BackstoreOptions) => Promise<Backstore>;
