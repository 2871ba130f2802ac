// The virtio-blk device behind one vhost-user connection (QEMU's
// vhost-user-blk-pci): one TPG with exactly one LUN, one I_T nexus on it.
// Every request becomes a SCSI command through the engine (IN READ(16), OUT
// WRITE(16), FLUSH SYNCHRONIZE CACHE(16), DISCARD UNMAP, WRITE_ZEROES WRITE
// SAME(16) with NDOB), so reservations, unit attentions, statistics, queue
// depth and thin provisioning stay one state whichever fabric a command comes
// from: a write from this guest to a unit another initiator reserved fails as
// it would over iSCSI. Unit attentions, which virtio-blk cannot carry, are
// taken and the command retried, as an initiator's midlayer does; a capacity
// change is told to the front-end (config change), which tells the guest. The
// config space is the device's own (GET_CONFIG), from the unit.

import type { Tpg } from '../../src/model/target';
import type { Session } from '../../src/core/session';
import type { LogicalUnit } from '../../src/core/logical-unit';
import type { Completion } from '../../src/core/command';
import { log } from '../../src/core/log';
import { SenseKey, Status, decodeSense } from '../../src/core/sense';
import { sglCopyIn, sglFlatten, sglSlice } from '../../src/core/sgl';
import type { VhostUserBackend, VirtioDevice } from './vhost-user-backend';
import type { Chain, DeviceQueue } from './virtqueue';
import { ProtoFeature, bit } from './vhost-user-proto';
import {
  BLK_ID_BYTES, BLK_SEGMENT_F_UNMAP, BlkConfig, BlkFeature, BlkReq, BlkSegment, BlkStatus, BlkType, SECTOR_SIZE,
} from './virtio-blk';

/** The SCSI commands a virtio-blk request becomes (SBC-4). */
const Op = { UNMAP: 0x42, READ_16: 0x88, WRITE_16: 0x8a, SYNCHRONIZE_CACHE_16: 0x91, WRITE_SAME_16: 0x93 } as const;
const WRITE_SAME_UNMAP = 0x08;
const WRITE_SAME_NDOB = 0x01;

/** Descriptors per request the guest may use (a ring of 128 less header and status, as QEMU's virtio-blk). */
const SEG_MAX = 126;
/** Unit attentions taken in a row before a request fails. */
const UA_RETRIES = 8;

/** A blk request on its way through the engine. */
interface BlkRequest {
  q: DeviceQueue;
  chain: Chain;
  /** Where the status byte goes: the last writable byte. */
  statusAt: number;
  tries: number;
}

export class VirtioBlkDevice implements VirtioDevice {
  readonly features: bigint;
  /** CONFIG and SLAVE_REQ for the config space and its change; INFLIGHT_SHMFD so a QEMU that reconnects after a restart loses nothing. */
  readonly protocolFeatures = bit(ProtoFeature.CONFIG) | bit(ProtoFeature.SLAVE_REQ) | bit(ProtoFeature.INFLIGHT_SHMFD);
  readonly recordsMeanReconnect = true;
  readonly queueCount: number;
  private session: Session | undefined;
  private readonly lun: number;
  private readonly lu: LogicalUnit;
  private lastCapacity: number;
  private inflight = 0;
  private closed = false;
  private readonly onCapacity = (): void => this.refresh();

  constructor(
    readonly backend: VhostUserBackend,
    readonly tpg: Tpg,
    numQueues: number,
  ) {
    if (tpg.luns.size !== 1) throw new Error(`a virtio-blk TPG serves exactly one LUN; ${tpg.portName} has ${tpg.luns.size}`);
    this.queueCount = numQueues;
    const session = tpg.openSession({ name: tpg.attributes.nexus !== undefined ? String(tpg.attributes.nexus) : tpg.target.wwn });
    const [lun, itl] = [...session.itls][0] ?? [];
    if (itl === undefined) {
      void session.close();
      throw new Error(`${tpg.portName}: the nexus sees no LUN`);
    }
    this.session = session;
    this.lun = lun;
    this.lu = itl.lu;
    this.lastCapacity = this.capacitySectors();
    this.lu.capacityListeners.add(this.onCapacity);
    const a = this.lu.so.attributes;
    let f = bit(BlkFeature.SEG_MAX) | bit(BlkFeature.BLK_SIZE) | bit(BlkFeature.TOPOLOGY) | bit(BlkFeature.MQ) | bit(BlkFeature.WRITE_ZEROES);
    if (a.emulate_write_cache) f |= bit(BlkFeature.FLUSH);
    if (a.emulate_tpu) f |= bit(BlkFeature.DISCARD);
    if (itl.writeProtect || this.lu.writeProtected) f |= bit(BlkFeature.RO);
    this.features = f;
  }

  private get name(): string {
    return this.backend.name;
  }

  private capacitySectors(): number {
    return (this.lu.blocks * this.lu.blockSize) / SECTOR_SIZE;
  }

  // ---------- config space ----------

  config(offset: number, size: number): Buffer {
    const c = Buffer.alloc(Math.max(BlkConfig.LENGTH, offset + size));
    const lu = this.lu;
    const a = lu.so.attributes;
    const perBlock = lu.blockSize / SECTOR_SIZE;
    const u32 = (n: number) => Math.min(0xffff_ffff, Math.max(0, Math.floor(n)));
    c.writeBigUInt64LE(BigInt(this.capacitySectors()), BlkConfig.CAPACITY);
    c.writeUInt32LE(SEG_MAX, BlkConfig.SEG_MAX);
    c.writeUInt32LE(lu.blockSize, BlkConfig.BLK_SIZE);
    c[BlkConfig.PHYSICAL_BLOCK_EXP] = Math.max(0, Math.log2(lu.backstore.physicalBlockSize / lu.blockSize) | 0);
    c.writeUInt16LE(1, BlkConfig.MIN_IO_SIZE);
    c.writeUInt32LE(u32(a.optimal_sectors), BlkConfig.OPT_IO_SIZE);
    c[BlkConfig.WRITEBACK] = a.emulate_write_cache ? 1 : 0;
    c.writeUInt16LE(this.queueCount, BlkConfig.NUM_QUEUES);
    if (a.emulate_tpu) {
      c.writeUInt32LE(u32(a.max_unmap_lba_count * perBlock), BlkConfig.MAX_DISCARD_SECTORS);
      c.writeUInt32LE(u32(Math.max(1, Math.min(a.max_unmap_block_desc_count, 256))), BlkConfig.MAX_DISCARD_SEG);
      c.writeUInt32LE(u32(Math.max(1, a.unmap_granularity) * perBlock), BlkConfig.DISCARD_SECTOR_ALIGNMENT);
    }
    c.writeUInt32LE(u32(a.max_write_same_len * perBlock), BlkConfig.MAX_WRITE_ZEROES_SECTORS);
    c.writeUInt32LE(1, BlkConfig.MAX_WRITE_ZEROES_SEG);
    c[BlkConfig.WRITE_ZEROES_MAY_UNMAP] = a.emulate_tpws ? 1 : 0;
    return c.subarray(offset, offset + size);
  }

  // ---------- requests ----------

  ownKick(): boolean {
    return false;
  }

  reset(): void {}

  request(q: DeviceQueue, chain: Chain): void {
    if (chain.readLen < BlkReq.LENGTH || chain.writeLen < 1) {
      log.warn(`vhost ${this.name}: queue ${q.index}: request ${chain.head} too short (${chain.readLen} readable, ${chain.writeLen} writable bytes)`);
      return this.backend.complete(q, chain.head, 0);
    }
    const hdr = chain.readable[0].length >= BlkReq.LENGTH ? chain.readable[0] : sglFlatten(chain.readable, 0, BlkReq.LENGTH);
    const type = hdr.readUInt32LE(BlkReq.TYPE);
    const hi = hdr.readUInt32LE(BlkReq.SECTOR + 4);
    const sector = hi >= 0x200000 ? -1 : hi * 0x1_0000_0000 + hdr.readUInt32LE(BlkReq.SECTOR);
    const r: BlkRequest = { q, chain, statusAt: chain.writeLen - 1, tries: 0 };
    const bs = this.lu.blockSize;
    switch (type) {
      case BlkType.IN:
      case BlkType.OUT: {
        const len = type === BlkType.IN ? chain.writeLen - 1 : chain.readLen - BlkReq.LENGTH;
        const byteOff = sector * SECTOR_SIZE;
        if (sector < 0 || len % bs !== 0 || byteOff % bs !== 0) return this.finish(r, BlkStatus.IOERR, 0);
        const cdb = rw16(type === BlkType.IN ? Op.READ_16 : Op.WRITE_16, byteOff / bs, len / bs, q.cdbSlot(chain.head, 16));
        if (type === BlkType.IN) return this.submit(r, cdb, undefined, len > 0 ? sglSlice(chain.writable, 0, len) : undefined, len);
        return this.submit(r, cdb, len > 0 ? sglSlice(chain.readable, BlkReq.LENGTH, len) : undefined, undefined, 0);
      }
      case BlkType.FLUSH:
        return this.submit(r, rw16(Op.SYNCHRONIZE_CACHE_16, 0, 0, q.cdbSlot(chain.head, 16)), undefined, undefined, 0);
      case BlkType.GET_ID: {
        const id = Buffer.alloc(BLK_ID_BYTES);
        id.write(this.lu.so.serial.slice(0, BLK_ID_BYTES), 'latin1');
        const n = Math.min(BLK_ID_BYTES, chain.writeLen - 1);
        sglCopyIn(chain.writable, 0, id.subarray(0, n));
        return this.finish(r, BlkStatus.OK, n);
      }
      case BlkType.DISCARD:
      case BlkType.WRITE_ZEROES:
        return this.ranges(r, type, sector);
      default:
        return this.finish(r, BlkStatus.UNSUPP, 0);
    }
  }

  /** DISCARD (one UNMAP with every segment) and WRITE_ZEROES (one WRITE SAME per segment). */
  private ranges(r: BlkRequest, type: number, sector: number): void {
    const len = r.chain.readLen - BlkReq.LENGTH;
    if (sector !== 0 || len === 0 || len % BlkSegment.LENGTH !== 0) return this.finish(r, BlkStatus.IOERR, 0);
    const p = sglFlatten(r.chain.readable, BlkReq.LENGTH, len);
    const bs = this.lu.blockSize;
    const segs: { lba: number; blocks: number; unmap: boolean }[] = [];
    for (let o = 0; o < len; o += BlkSegment.LENGTH) {
      const hi = p.readUInt32LE(o + BlkSegment.SECTOR + 4);
      const byteOff = (hi * 0x1_0000_0000 + p.readUInt32LE(o + BlkSegment.SECTOR)) * SECTOR_SIZE;
      const bytes = p.readUInt32LE(o + BlkSegment.NUM_SECTORS) * SECTOR_SIZE;
      if (hi >= 0x200000 || byteOff % bs !== 0 || bytes % bs !== 0) return this.finish(r, BlkStatus.IOERR, 0);
      segs.push({ lba: byteOff / bs, blocks: bytes / bs, unmap: (p.readUInt32LE(o + BlkSegment.FLAGS) & BLK_SEGMENT_F_UNMAP) !== 0 });
    }
    if (type === BlkType.DISCARD) {
      if (!this.lu.so.attributes.emulate_tpu) return this.finish(r, BlkStatus.UNSUPP, 0);
      // UNMAP parameter list (SBC-4 5.32.2): 8-byte header, 16 bytes per block descriptor, big endian.
      const list = Buffer.alloc(8 + 16 * segs.length);
      list.writeUInt16BE(list.length - 2, 0);
      list.writeUInt16BE(16 * segs.length, 2);
      segs.forEach((s, i) => {
        list.writeBigUInt64BE(BigInt(s.lba), 8 + 16 * i);
        list.writeUInt32BE(s.blocks, 16 + 16 * i);
      });
      const cdb = Buffer.alloc(10);
      cdb[0] = Op.UNMAP;
      cdb.writeUInt16BE(list.length, 7);
      return this.submit(r, cdb, [list], undefined, 0);
    }
    // WRITE_ZEROES: segments one after another (the config space asks for one per request).
    const tpws = this.lu.so.attributes.emulate_tpws;
    const next = (i: number): void => {
      if (i === segs.length) return this.finish(r, BlkStatus.OK, 0);
      const s = segs[i];
      const cdb = rw16(Op.WRITE_SAME_16, s.lba, s.blocks, r.q.cdbSlot(r.chain.head, 16));
      cdb[1] = WRITE_SAME_NDOB | (s.unmap && tpws ? WRITE_SAME_UNMAP : 0);
      this.submit(r, cdb, undefined, undefined, 0, () => next(i + 1));
    };
    next(0);
  }

  /**
   * Runs cdb through the engine; a unit attention is taken and the command
   * sent again. Completes the request (or calls then on GOOD).
   */
  private submit(r: BlkRequest, cdb: Buffer, dataOut: Buffer[] | undefined, dataIn: Buffer[] | undefined, inLen: number, then?: () => void): void {
    const session = this.session;
    if (session === undefined) return this.finish(r, BlkStatus.IOERR, 0);
    this.inflight++;
    session.submit(
      {
        cdb,
        lun: this.lun,
        tag: (r.q.index << 16) | r.chain.head,
        taskAttr: 0,
        expectedLength: dataOut ? dataOut.reduce((n, b) => n + b.length, 0) : inLen,
        dataOut,
        dataIn,
      },
      (c: Completion) => {
        this.inflight--;
        if (c.status === Status.GOOD) {
          if (c.dataInLength > 0 && c.dataIn !== undefined && c.dataIn !== dataIn) {
            let off = 0;
            for (const b of c.dataIn) {
              if (off >= c.dataInLength) break;
              off += sglCopyIn(r.chain.writable, off, b.subarray(0, c.dataInLength - off));
            }
          }
          c.release?.();
          if (then) return then();
          return this.finish(r, BlkStatus.OK, c.dataInLength);
        }
        c.release?.();
        if (c.status === Status.CHECK_CONDITION && c.sense !== undefined && decodeSense(c.sense).key === SenseKey.UNIT_ATTENTION && r.tries++ < UA_RETRIES) {
          return this.submit(r, cdb, dataOut, dataIn, inLen, then);
        }
        log.debug(`vhost ${this.name}: opcode ${cdb[0].toString(16)} status ${c.status}${c.sense ? ' sense ' + c.sense.subarray(0, 18).toString('hex') : ''}`);
        this.finish(r, BlkStatus.IOERR, 0);
      },
    );
  }

  /** Writes the status byte after `written` bytes of data and returns the chain. */
  private finish(r: BlkRequest, status: number, written: number): void {
    STATUS[0] = status;
    sglCopyIn(r.chain.writable, r.statusAt, STATUS);
    this.backend.complete(r.q, r.chain.head, written + 1);
  }

  // ---------- changes ----------

  /** The unit's capacity changed: the front-end re-reads the config space and interrupts the guest. */
  refresh(): void {
    if (this.closed) return;
    const cap = this.capacitySectors();
    if (cap === this.lastCapacity) return;
    this.lastCapacity = cap;
    if (!this.backend.configChanged()) log.warn(`vhost ${this.name}: capacity changed, but the front-end gave no channel to say so`);
  }

  /**
   * Connection end (a stopping tsiod too): the back end pops nothing more, and
   * what was popped finishes before the nexus closes, so every request the
   * guest posted is either in the used ring or still unpopped. A QEMU that
   * reconnects (vhost-user-blk, reconnect=N) restarts the ring at the used
   * index and loses nothing; aborting them instead would fail them in the guest.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.lu.capacityListeners.delete(this.onCapacity);
    const deadline = Date.now() + 10_000;
    while (this.inflight > 0 && Date.now() < deadline) await new Promise<void>((res) => setTimeout(res, 1));
    const s = this.session;
    this.session = undefined;
    if (s) await s.close();
  }
}

/** A status byte on its way into guest memory (copied at once). */
const STATUS = Buffer.alloc(1);

/**
 * A 16-byte CDB with a 64-bit LBA at byte 2 and a 32-bit length at byte 10
 * (READ, WRITE, SYNCHRONIZE CACHE, WRITE SAME), written into cdb. The LBA is
 * below 2^53 (a Number), written as two 32-bit halves.
 */
function rw16(op: number, lba: number, blocks: number, cdb: Buffer): Buffer {
  cdb.fill(0);
  cdb[0] = op;
  cdb.writeUInt32BE(Math.floor(lba / 0x1_0000_0000), 2);
  cdb.writeUInt32BE(lba >>> 0, 6);
  cdb.writeUInt32BE(blocks, 10);
  return cdb;
}
