// The back-end half of one vhost-user connection (QEMU 7.2's message order and
// semantics): messages, feature negotiation, the memory table, vring setup,
// kicks and calls. It knows no device type: a VirtioDevice (virtio-scsi today)
// gets the chains its queues carry and completes them here, as libvhost-user's
// VuDevIface and SPDK's vhost.c beside vhost_scsi.c / vhost_blk.c split it.

import { closeSync } from 'node:fs';
import { log } from '../../src/core/log';
import { FdWatcher, eventfdRead, memfdCreate, mmapFd, recvMessage, sendMessage, unmap } from '../../native';
import { GuestMemory, MappedRegion, unmapRegions } from './guest-memory';
import { Chain, ChainError, DeviceQueue, inflightRegionSize } from './virtqueue';
import {
  Feature, Flag, Hdr, InflightMsg, MAX_MEM_SLOTS, MemRegMsg, MemTable, ProtoFeature, Region, Req, SlaveReq, U64, VRING_IDX_MASK,
  VRING_NOFD_MASK, VhostConfig, VringAddr, VringState, bit, message, reqName, u64, u64Payload,
} from './vhost-user-proto';

/** The ring features every device gets: only what we serve (QEMU uses every bit offered). */
export const RING_FEATURES =
  bit(Feature.VERSION_1) | bit(Feature.PROTOCOL_FEATURES) | bit(Feature.INDIRECT_DESC) | bit(Feature.EVENT_IDX);
export const PROTOCOL_FEATURES =
  bit(ProtoFeature.MQ) | bit(ProtoFeature.REPLY_ACK) | bit(ProtoFeature.CONFIGURE_MEM_SLOTS) | bit(ProtoFeature.RESET_DEVICE);

/**
 * What a device type gives the back end, which never learns more of it. The
 * device answers through the back end's pop(), complete(), flush() and features.
 */
export interface VirtioDevice {
  /** The device type's own feature bits; the back end offers them with RING_FEATURES. */
  readonly features: bigint;
  /**
   * Protocol features beyond PROTOCOL_FEATURES: CONFIG (with config()) and
   * SLAVE_REQ (configChanged()) for a device whose config space is its own
   * (virtio-blk; QEMU synthesizes virtio-scsi's and warns when offered CONFIG).
   */
  readonly protocolFeatures?: bigint;
  /** GET_CONFIG: the config space's bytes [offset, offset + size). */
  config?(offset: number, size: number): Buffer;
  /**
   * A front-end asking for in-flight records reconnects: true for virtio-blk (QEMU's vhost-user-blk got both
   * together); absent for virtio-scsi, whose QEMU 7.2 front-end asks for them yet cannot reconnect (8.2 can).
   */
  readonly recordsMeanReconnect?: boolean;
  /** Queues the device has (GET_QUEUE_NUM). */
  readonly queueCount: number;
  /**
   * A kick on a queue the device fills on its own schedule (virtio-scsi's event
   * queue) is the device's to handle: true. False for the queues whose chains
   * the back end pops and hands to request().
   */
  ownKick(q: DeviceQueue): boolean;
  /** A chain popped from q: the device completes it, now or later, with VhostUserBackend.complete(). */
  request(q: DeviceQueue, chain: Chain): void;
  /** RESET_DEVICE: the device forgets what it kept for the driver. */
  reset(): void;
  /** Connection end: requests still running finish into guest memory, which is unmapped afterwards. */
  close(): Promise<void>;
}

/**
 * The daemon's polling setting (tsiod --poll-max-ns): how long, at most, a
 * connection polls its rings after a pass before sleeping on its kick
 * eventfds; 0 (default) never polls.
 */
export const vhostPolling = { maxNs: 0 };
/** The first poll window, as QEMU's (4 µs). */
const POLL_START_NS = 4000;
/** Microtask turns a poll yields for requests in flight before it yields a loop turn. */
const MICRO_YIELDS = 8;

class ProtocolError extends Error {}
/** A front-end asking for more queues than the device has: the connection ends. */
class QueueLimit extends ProtocolError {}

let nextConnection = 1;

export class VhostUserBackend {
  readonly id = nextConnection++;
  readonly mem = new GuestMemory();
  readonly queues: DeviceQueue[] = [];
  private device!: VirtioDevice;
  private watcher: FdWatcher | undefined;
  private acked = 0n;
  private protocolFeatures = 0n;
  private busy: Promise<void> | undefined;
  private backlog: { data: Buffer; fds: number[] }[] = [];
  /** Regions taken out of the table while requests still used them. */
  private retired: MappedRegion[] = [];
  private flushScheduled = false;
  /** The front-end's channel for our requests (SET_SLAVE_REQ_FD), or -1. */
  private slaveFd = -1;
  /** The in-flight records (SET_INFLIGHT_FD), mapped whole, and each queue's share. */
  private inflightMap: Buffer | undefined;
  /** Heads a previous back end left in flight, per queue, served again once the queue runs. */
  private readonly resubmit = new Map<DeviceQueue, number[]>();
  private inKick = false;
  private closed = false;
  /** The front-end hung up (not us): it knows the connection is gone and warns nobody needs. */
  private hungUp = false;
  /** When the front-end connected (ms since the epoch). */
  readonly since = Date.now();
  /** This connection's front-end asked for fresh in-flight records (GET_INFLIGHT_FD). */
  private askedInflight = false;
  /** Records a previous back end filled came with SET_INFLIGHT_FD (no GET): the front-end has reconnected. */
  private handedOver = false;
  /** The current poll window (adaptive, at most vhostPolling.maxNs); 0: sleep at once. */
  private pollNs = 0;
  private polling = false;
  private pollUntil = 0;
  /** Microtask turns yielded in a row while polling (MICRO_YIELDS). */
  private microYields = 0;
  /** When the loop last went to sleep on the kicks (performance.now()), 0 when unknown. */
  private sleptAt = 0;
  /** Poll windows opened, and turns of them that found requests. */
  readonly pollStats = { windows: 0, hits: 0 };
  /** Resolved when the connection has ended. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    readonly fd: number,
    readonly name: string,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  /** Serves the connection for device: reads messages from now on. */
  start(device: VirtioDevice): void {
    this.device = device;
    this.watcher = new FdWatcher(this.fd, () => this.onReadable());
    log.info(`vhost ${this.name}: front-end connected (connection ${this.id})`);
  }

  private get offeredProtocolFeatures(): bigint {
    return PROTOCOL_FEATURES | (this.device.protocolFeatures ?? 0n);
  }

  /**
   * Tells the front-end the config space changed (virtio-blk's capacity): it
   * reads it again with GET_CONFIG and interrupts the guest. False when the
   * front-end gave no channel for it.
   */
  configChanged(): boolean {
    if (this.slaveFd < 0 || this.closed) return false;
    try {
      sendMessage(this.slaveFd, message(SlaveReq.CONFIG_CHANGE_MSG, Flag.VERSION));
      return true;
    } catch (e) {
      log.warn(`vhost ${this.name}: config change notice failed: ${(e as Error).message}`);
      return false;
    }
  }

  /** The virtio features the front-end acked (SET_FEATURES). */
  get features(): bigint {
    return this.acked;
  }

  /** The front-end keeps in-flight records (SET_INFLIGHT_FD): what the next back end needs to serve it across a restart. */
  get keepsInflight(): boolean {
    return this.inflightMap !== undefined;
  }

  /**
   * Whether the front-end reconnects to the next tsiod, from what it did on this connection: 'no' without
   * in-flight records; 'yes' with records a previous back end filled (it has reconnected), or fresh ones for
   * a device whose front-ends ask for them only to reconnect (virtio-blk); else 'unknown' (virtio-scsi:
   * QEMU 7.2 asks for records too, and cannot reconnect).
   */
  get reconnects(): 'yes' | 'no' | 'unknown' {
    if (!this.keepsInflight) return 'no';
    return this.handedOver || this.device.recordsMeanReconnect === true ? 'yes' : 'unknown';
  }

  /** What the front-end negotiated, for the control API. */
  frontend(): FrontendInfo {
    return {
      connection: this.id,
      since: new Date(this.since).toISOString(),
      protocol_features: namedBits(this.protocolFeatures, ProtoFeature),
      features: namedBits(this.acked, Feature),
      queues: this.queues.filter((q) => q?.started).length,
      inflight: this.keepsInflight,
      reconnects: this.reconnects,
      ...this.counts(),
    };
  }

  /** Requests returned, kicks taken and calls sent on every ring of this connection so far. */
  counts(): { requests: number; kicks: number; calls: number } {
    const c = { requests: 0, kicks: 0, calls: 0 };
    for (const q of this.queues) {
      if (!q) continue;
      c.requests += q.counts.requests;
      c.kicks += q.counts.kicks;
      c.calls += q.counts.calls;
    }
    return c;
  }

  // ---------- messages ----------

  private onReadable(): void {
    if (this.closed) return;
    for (;;) {
      let m;
      try {
        m = recvMessage(this.fd);
      } catch (e) {
        log.warn(`vhost ${this.name}: ${(e as Error).message}; dropping the connection`);
        void this.close();
        return;
      }
      if (m === null) return;
      if (m.data.length === 0) {
        log.info(`vhost ${this.name}: front-end disconnected (connection ${this.id})`);
        this.hungUp = true;
        void this.close();
        return;
      }
      this.backlog.push(m);
      if (this.busy === undefined) this.drainBacklog();
    }
  }

  /** Handles messages in order; one that must wait (GET_VRING_BASE) holds the rest back. */
  private drainBacklog(): void {
    while (this.backlog.length > 0 && this.busy === undefined && !this.closed) {
      const m = this.backlog.shift()!;
      const r = this.handle(m.data, m.fds);
      if (r instanceof Promise) {
        this.busy = r.then(
          () => {
            this.busy = undefined;
            this.drainBacklog();
          },
          (e) => {
            this.busy = undefined;
            log.warn(`vhost ${this.name}: ${(e as Error).message}`);
            void this.close();
          },
        );
      }
    }
  }

  private reply(request: number, payload: Buffer): void {
    sendMessage(this.fd, message(request, Flag.VERSION | Flag.REPLY, payload));
  }

  private handle(data: Buffer, fds: number[]): void | Promise<void> {
    const request = data.readUInt32LE(Hdr.REQUEST);
    const flags = data.readUInt32LE(Hdr.FLAGS);
    const p = data.subarray(Hdr.LENGTH);
    const ack = (flags & Flag.NEED_REPLY) !== 0 && (this.protocolFeatures & bit(ProtoFeature.REPLY_ACK)) !== 0n;
    if ((flags & Flag.VERSION_MASK) !== Flag.VERSION) {
      for (const f of fds) closeSync(f);
      throw new ProtocolError(`message with version ${flags & Flag.VERSION_MASK}`);
    }
    log.debug(`vhost ${this.name}: ${reqName[request] ?? request} (${p.length} bytes, ${fds.length} fds)`);
    let r: void | Promise<void>;
    try {
      r = this.dispatch(request, p, fds);
    } catch (e) {
      for (const f of fds) {
        try {
          closeSync(f);
        } catch {
          /* already taken */
        }
      }
      if (e instanceof QueueLimit) {
        log.error(`vhost ${this.name}: ${e.message}; dropping the connection`);
        void this.close();
        return;
      }
      log.warn(`vhost ${this.name}: ${reqName[request] ?? request} refused: ${(e as Error).message}`);
      if (ack) this.reply(request, u64Payload(1));
      else if (e instanceof ProtocolError) throw e;
      return;
    }
    if (r instanceof Promise) return r;
    if (ack && !HAS_OWN_REPLY.has(request)) this.reply(request, u64Payload(0));
  }

  private payload(p: Buffer, n: number, what: string): void {
    if (p.length < n) throw new ProtocolError(`${what}: payload of ${p.length} bytes, expected ${n}`);
  }

  private queue(index: number): DeviceQueue {
    // QEMU 7.2's vhost-user-scsi does not hold its num_queues to GET_QUEUE_NUM (the guest's config space is
    // QEMU's): a ring beyond what we offer ends the connection, so that QEMU fails to start instead of giving
    // the guest queues the device was told not to serve. QEMU names every ring at connect (SET_VRING_CALL).
    if (index >= this.device.queueCount) {
      throw new QueueLimit(`the front-end sets up queue ${index}, but the device has ${this.device.queueCount} (num_queues); configure the front-end with fewer`);
    }
    let q = this.queues[index];
    if (!q) q = this.queues[index] = new DeviceQueue(index);
    return q;
  }

  private dispatch(request: number, p: Buffer, fds: number[]): void | Promise<void> {
    switch (request) {
      case Req.GET_FEATURES:
        return this.reply(request, u64Payload(RING_FEATURES | this.device.features));
      case Req.SET_FEATURES: {
        this.payload(p, U64.LENGTH, 'SET_FEATURES');
        const f = p.readBigUInt64LE(U64.VALUE);
        if ((f & bit(Feature.RING_PACKED)) !== 0n) throw new RangeError('packed rings were not offered');
        this.acked = f;
        for (const q of this.queues) if (q) q.eventIdx = (f & bit(Feature.EVENT_IDX)) !== 0n;
        return;
      }
      case Req.GET_PROTOCOL_FEATURES:
        return this.reply(request, u64Payload(this.offeredProtocolFeatures));
      case Req.SET_PROTOCOL_FEATURES:
        this.payload(p, U64.LENGTH, 'SET_PROTOCOL_FEATURES');
        this.protocolFeatures = p.readBigUInt64LE(U64.VALUE) & this.offeredProtocolFeatures;
        return;
      case Req.GET_CONFIG: {
        this.payload(p, VhostConfig.PAYLOAD, 'GET_CONFIG');
        const offset = p.readUInt32LE(VhostConfig.OFFSET);
        const size = p.readUInt32LE(VhostConfig.SIZE);
        const b = Buffer.alloc(VhostConfig.PAYLOAD + Math.min(size, VhostConfig.MAX));
        b.writeUInt32LE(offset, VhostConfig.OFFSET);
        // A size of 0 in the reply is how the front-end hears of a refusal.
        if (this.device.config === undefined || size > VhostConfig.MAX || offset + size > VhostConfig.MAX) {
          log.warn(`vhost ${this.name}: GET_CONFIG of ${size} bytes at ${offset} refused`);
          return this.reply(request, b.subarray(0, VhostConfig.PAYLOAD));
        }
        b.writeUInt32LE(size, VhostConfig.SIZE);
        this.device.config(offset, size).copy(b, VhostConfig.PAYLOAD);
        return this.reply(request, b);
      }
      case Req.SET_CONFIG:
        // Nothing in our config spaces is writable (virtio-blk's writeback needs CONFIG_WCE, not offered).
        throw new RangeError('the config space is read-only');
      case Req.GET_INFLIGHT_FD: {
        // Fresh, zeroed records for the front-end to keep and hand back to whoever serves it next.
        this.askedInflight = true;
        this.payload(p, InflightMsg.LENGTH, 'GET_INFLIGHT_FD');
        const nq = p.readUInt16LE(InflightMsg.NUM_QUEUES);
        const size = p.readUInt16LE(InflightMsg.QUEUE_SIZE);
        if (nq === 0 || nq > this.device.queueCount || size === 0 || size > 32768) throw new RangeError(`GET_INFLIGHT_FD for ${nq} queues of ${size}`);
        const bytes = inflightRegionSize(size) * nq;
        const fd = memfdCreate('tsio-vhost-inflight', bytes);
        try {
          const b = Buffer.alloc(InflightMsg.LENGTH);
          b.writeBigUInt64LE(BigInt(bytes), InflightMsg.MMAP_SIZE);
          b.writeBigUInt64LE(0n, InflightMsg.MMAP_OFFSET);
          b.writeUInt16LE(nq, InflightMsg.NUM_QUEUES);
          b.writeUInt16LE(size, InflightMsg.QUEUE_SIZE);
          sendMessage(this.fd, message(request, Flag.VERSION | Flag.REPLY, b), [fd]);
        } finally {
          closeSync(fd);
        }
        return;
      }
      case Req.SET_INFLIGHT_FD: {
        this.payload(p, InflightMsg.LENGTH, 'SET_INFLIGHT_FD');
        if (fds.length !== 1) throw new ProtocolError(`SET_INFLIGHT_FD with ${fds.length} fds`);
        const size = u64(p, InflightMsg.MMAP_SIZE);
        const offset = u64(p, InflightMsg.MMAP_OFFSET);
        const nq = p.readUInt16LE(InflightMsg.NUM_QUEUES);
        const qsize = p.readUInt16LE(InflightMsg.QUEUE_SIZE);
        const per = inflightRegionSize(qsize);
        if (nq > this.device.queueCount || per * nq > size) throw new RangeError(`SET_INFLIGHT_FD: ${size} bytes for ${nq} queues of ${qsize}`);
        let map: Buffer;
        try {
          map = mmapFd(fds[0], offset + size);
        } finally {
          closeSync(fds[0]);
        }
        this.dropInflight();
        this.inflightMap = map;
        this.handedOver = !this.askedInflight;
        for (let i = 0; i < nq; i++) this.queue(i).inflightRegion = map.subarray(offset + i * per, offset + (i + 1) * per);
        log.info(`vhost ${this.name}: front-end keeps in-flight records (${nq} queues of ${qsize})`);
        return;
      }
      case Req.SET_SLAVE_REQ_FD:
        if (fds.length !== 1) throw new ProtocolError(`SET_SLAVE_REQ_FD with ${fds.length} fds`);
        if (this.slaveFd >= 0) closeSync(this.slaveFd);
        this.slaveFd = fds[0];
        return;
      case Req.GET_QUEUE_NUM:
        return this.reply(request, u64Payload(this.device.queueCount));
      case Req.GET_MAX_MEM_SLOTS:
        return this.reply(request, u64Payload(MAX_MEM_SLOTS));
      case Req.SET_OWNER:
        return;
      case Req.RESET_OWNER:
      case Req.RESET_DEVICE:
        return this.resetDevice();
      case Req.SET_MEM_TABLE:
        return this.setMemTable(p, fds);
      case Req.ADD_MEM_REG: {
        this.payload(p, MemRegMsg.LENGTH, 'ADD_MEM_REG');
        if (fds.length !== 1) throw new ProtocolError(`ADD_MEM_REG with ${fds.length} fds`);
        const spec = readRegion(p, MemRegMsg.REGION);
        if (this.mem.has(spec)) {
          closeSync(fds[0]); // a front-end replaying its table after a reset: already mapped
          return;
        }
        if (this.mem.regions.length >= MAX_MEM_SLOTS) throw new RangeError('no free memory slot');
        this.mem.add(spec, fds[0]);
        this.remapRings();
        return;
      }
      case Req.REM_MEM_REG: {
        this.payload(p, MemRegMsg.LENGTH, 'REM_MEM_REG');
        for (const f of fds) closeSync(f); // QEMU 7.2 may send one by mistake
        const r = this.mem.remove(readRegion(p, MemRegMsg.REGION));
        if (!r) throw new RangeError('REM_MEM_REG of a region that is not mapped');
        this.retire([r]);
        this.remapRings();
        return;
      }
      case Req.SET_VRING_NUM: {
        this.payload(p, VringState.LENGTH, 'SET_VRING_NUM');
        this.queue(p.readUInt32LE(VringState.INDEX)).setNum(p.readUInt32LE(VringState.NUM));
        return;
      }
      case Req.SET_VRING_BASE: {
        this.payload(p, VringState.LENGTH, 'SET_VRING_BASE');
        this.queue(p.readUInt32LE(VringState.INDEX)).setBase(p.readUInt32LE(VringState.NUM));
        return;
      }
      case Req.SET_VRING_ADDR: {
        this.payload(p, VringAddr.LENGTH, 'SET_VRING_ADDR');
        const q = this.queue(p.readUInt32LE(VringAddr.INDEX));
        q.descAddr = u64(p, VringAddr.DESC);
        q.usedAddr = u64(p, VringAddr.USED);
        q.availAddr = u64(p, VringAddr.AVAIL);
        if (!q.map(this.mem)) throw new RangeError(`queue ${q.index}: rings are not in mapped memory`);
        // A ring set up afresh continues from the used index the driver sees.
        q.syncUsed();
        if (q.usedIdx !== q.lastAvail && q.inflight === 0) q.usedIdx = q.lastAvail;
        return;
      }
      case Req.GET_VRING_BASE:
        this.payload(p, VringState.LENGTH, 'GET_VRING_BASE');
        return this.stopQueue(this.queue(p.readUInt32LE(VringState.INDEX)));
      case Req.SET_VRING_KICK:
      case Req.SET_VRING_CALL:
      case Req.SET_VRING_ERR: {
        this.payload(p, U64.LENGTH, reqName[request]);
        const v = p.readUInt32LE(U64.VALUE);
        const q = this.queue(v & VRING_IDX_MASK);
        const nofd = (v & VRING_NOFD_MASK) !== 0;
        if (nofd !== (fds.length === 0) || fds.length > 1) throw new ProtocolError(`${reqName[request]} with ${fds.length} fds`);
        const fd = nofd ? -1 : fds[0];
        if (request === Req.SET_VRING_CALL) {
          if (q.callFd >= 0) closeSync(q.callFd);
          q.callFd = fd;
          // QEMU swaps call fds while the ring runs (MSI-X mask/unmask during the guest's probe) without
          // waiting for us: a completion we signalled on the old fd after QEMU last looked at it is lost,
          // and EVENT_IDX then suppresses every later call (used_event is behind signalledUsed), so the
          // guest waits forever. Like libvhost-user, signal the new fd once; a spurious interrupt is harmless.
          q.callChanged();
        } else if (request === Req.SET_VRING_ERR) {
          if (q.errFd >= 0) closeSync(q.errFd);
          q.errFd = fd;
        } else {
          if (nofd) throw new RangeError('polling rings (no kick fd) are not supported');
          q.stopWatching();
          if (q.kickFd >= 0) closeSync(q.kickFd);
          q.kickFd = fd;
          q.eventIdx = (this.acked & bit(Feature.EVENT_IDX)) !== 0n;
          q.started = true;
          // Without F_PROTOCOL_FEATURES a ring runs as soon as it is kicked; with it, on SET_VRING_ENABLE.
          if ((this.acked & bit(Feature.PROTOCOL_FEATURES)) === 0n) q.enabled = true;
          q.kickWatcher = new FdWatcher(fd, () => this.onKick(q));
          // A ring a previous back end served: what it left in flight is served first (INFLIGHT_SHMFD).
          const heads = q.takeInflight();
          if (heads.length > 0) {
            log.info(`vhost ${this.name}: queue ${q.index}: ${heads.length} requests left in flight by the last back end, served again`);
            this.resubmit.set(q, heads);
          }
          this.onKick(q);
        }
        return;
      }
      case Req.SET_VRING_ENABLE: {
        this.payload(p, VringState.LENGTH, 'SET_VRING_ENABLE');
        const q = this.queue(p.readUInt32LE(VringState.INDEX));
        q.enabled = p.readUInt32LE(VringState.NUM) !== 0;
        if (q.enabled) this.onKick(q);
        return;
      }
      default:
        for (const f of fds) closeSync(f);
        throw new RangeError(`request ${reqName[request] ?? request} is not supported`);
    }
  }

  private setMemTable(p: Buffer, fds: number[]): void {
    this.payload(p, MemTable.REGIONS, 'SET_MEM_TABLE');
    const n = p.readUInt32LE(MemTable.NREGIONS);
    if (n > MemTable.MAX_REGIONS || n !== fds.length) throw new ProtocolError(`SET_MEM_TABLE: ${n} regions, ${fds.length} fds`);
    this.payload(p, MemTable.REGIONS + n * Region.LENGTH, 'SET_MEM_TABLE');
    this.retire(this.mem.clear());
    const taken = [...fds];
    try {
      for (let i = 0; i < n; i++) this.mem.add(readRegion(p, MemTable.REGIONS + i * Region.LENGTH), taken.shift()!);
    } finally {
      for (const f of taken) closeSync(f);
    }
    this.remapRings();
  }

  /** Regions leave only when no request still points into them. */
  private retire(regions: MappedRegion[]): void {
    this.retired.push(...regions);
    this.releaseRetired();
  }

  private releaseRetired(): void {
    // Every request a device holds was popped from a queue and counts there until completed.
    if (this.retired.length === 0) return;
    for (const q of this.queues) if (q && q.inflight > 0) return;
    unmapRegions(this.retired);
    this.retired = [];
  }

  private remapRings(): void {
    for (const q of this.queues) if (q && q.descAddr !== 0) q.map(this.mem);
  }

  /** GET_VRING_BASE: stops the ring, waits for its requests, answers the next avail index. */
  private async stopQueue(q: DeviceQueue): Promise<void> {
    q.started = false;
    q.stopWatching();
    if (q.inflight > 0) log.debug(`vhost ${this.name}: GET_VRING_BASE ${q.index} waits for ${q.inflight} requests`);
    while (q.inflight > 0) await new Promise<void>((r) => setTimeout(r, 1));
    this.flush();
    const b = Buffer.alloc(VringState.LENGTH);
    b.writeUInt32LE(q.index, VringState.INDEX);
    b.writeUInt32LE(q.lastAvail, VringState.NUM);
    if (q.kickFd >= 0) closeSync(q.kickFd);
    q.kickFd = -1;
    q.unmapRings();
    this.reply(Req.GET_VRING_BASE, b);
    this.releaseRetired();
  }

  private dropInflight(): void {
    for (const q of this.queues) if (q) q.inflightRegion = undefined;
    if (this.inflightMap) unmap(this.inflightMap);
    this.inflightMap = undefined;
    this.resubmit.clear();
  }

  private resetDevice(): void {
    for (const q of this.queues) {
      if (!q) continue;
      q.started = false;
      q.enabled = false;
      q.stopWatching();
      q.setBase(0);
    }
    this.device.reset();
    this.dropInflight();
    this.acked = 0n;
  }

  // ---------- queues ----------

  private onKick(q: DeviceQueue): void {
    if (q.kickFd >= 0) q.counts.kicks += eventfdRead(q.kickFd);
    if (!q.ready || this.closed) return;
    const device = this.device;
    if (this.sleptAt > 0) this.adaptPoll(performance.now() - this.sleptAt);
    this.inKick = true;
    try {
      if (device.ownKick(q)) {
        q.deviceOwned = true;
        return;
      }
      this.drain(q);
    } finally {
      this.inKick = false;
    }
    this.flush();
    this.idle();
  }

  /** Serves what q holds: requests a previous back end left in flight, then the ring until it stays empty. */
  private drain(q: DeviceQueue): void {
    const device = this.device;
    const again = this.resubmit.get(q);
    if (again !== undefined) {
      this.resubmit.delete(q);
      for (const head of again) {
        let chain: Chain;
        try {
          chain = q.readChain(this.mem, head);
        } catch (e) {
          log.warn(`vhost ${this.name}: ${(e as Error).message}; request failed`);
          q.push(head, 0);
          continue;
        }
        device.request(q, chain);
      }
    }
    do {
      let chain: Chain | undefined;
      while ((chain = this.pop(q)) !== undefined) {
        device.request(q, chain);
        if (!q.ready) break;
      }
      // While polling, kicks stay off: the poll finds what the driver posts.
    } while (q.ready && !this.polling && q.armKick());
  }

  // ---------- polling (vhostPolling.maxNs; QEMU's iothread poll-max-ns) ----------

  /**
   * Adapts the poll window to how long the loop slept before this kick, as
   * QEMU's aio_poll does: a wake-up a poll of at most maxNs would have caught
   * grows the window (from 4 µs, doubling), a longer sleep halves it.
   */
  private adaptPoll(sleptMs: number): void {
    this.sleptAt = 0;
    const max = vhostPolling.maxNs;
    if (max <= 0) return;
    const slept = sleptMs * 1e6;
    if (slept <= this.pollNs) return;
    if (slept > max) this.pollNs = this.pollNs < POLL_START_NS ? 0 : Math.floor(this.pollNs / 2);
    else if (this.pollNs < max) this.pollNs = Math.min(max, this.pollNs === 0 ? POLL_START_NS : this.pollNs * 2);
  }

  /** The queues the back end pops (the device's own, such as virtio-scsi's event queue, excluded). */
  private polled(q: DeviceQueue | undefined): q is DeviceQueue {
    return q !== undefined && q.ready && !q.deviceOwned;
  }

  /**
   * After a pass: polls the rings for up to the poll window (kicks off
   * meanwhile) when polling is on, then goes to sleep on the kick eventfds.
   */
  private idle(): void {
    if (this.polling || this.closed) return;
    if (vhostPolling.maxNs <= 0 || this.pollNs <= 0) {
      this.sleptAt = vhostPolling.maxNs > 0 ? performance.now() : 0;
      return;
    }
    this.polling = true;
    this.pollStats.windows++;
    for (const q of this.queues) if (this.polled(q)) q.suppressKicks();
    this.pollUntil = performance.now() + this.pollNs / 1e6;
    this.pollTurn();
  }

  /**
   * One stretch of polling: spins on the avail indexes while nothing is in
   * flight (nothing can complete without the loop), else yields one loop turn
   * at a time (setImmediate) so completions come in. At the deadline, kicks are
   * asked for again and the rings re-checked (no lost wake-up).
   */
  private pollTurn(): void {
    // Completions that came in since the last turn (their own flush may be queued behind this turn) are told first.
    this.flush();
    for (;;) {
      if (this.closed) {
        this.polling = false;
        return;
      }
      let found = false;
      let inflight = false;
      for (const q of this.queues) {
        if (!this.polled(q)) continue;
        if (q.hasAvail()) {
          found = true;
          this.inKick = true;
          try {
            this.drain(q);
          } finally {
            this.inKick = false;
          }
        }
        if (q.inflight > 0) inflight = true;
      }
      const now = performance.now();
      if (found) {
        this.pollStats.hits++;
        this.flush();
        this.pollUntil = now + this.pollNs / 1e6;
      }
      if (now >= this.pollUntil || this.pollNs <= 0) break;
      if (inflight) {
        // Completions the engine delivers in promise jobs come in a few microtask turns, without a trip
        // through the loop (an epoll_wait); those that need the loop (thread pool, io_uring) get one after.
        if (this.microYields++ < MICRO_YIELDS) queueMicrotask(() => this.pollTurn());
        else {
          this.microYields = 0;
          setImmediate(() => this.pollTurn());
        }
        return;
      }
      this.microYields = 0;
    }
    this.polling = false;
    let more = false;
    for (const q of this.queues) if (this.polled(q) && q.armKick()) more = true;
    if (more) {
      // The driver posted while kicks were being turned back on: serve it, and poll on (it is busy).
      for (const q of this.queues) if (this.polled(q) && q.hasAvail()) this.drain(q);
      this.flush();
      this.idle();
      return;
    }
    this.sleptAt = performance.now();
  }

  /**
   * The next well-formed chain of q, or undefined when there is none (or the
   * ring broke: the front-end hears of it on the queue's error fd). A chain that
   * points outside guest memory goes back to the driver empty, as a failed request.
   */
  pop(q: DeviceQueue): Chain | undefined {
    for (;;) {
      try {
        return q.pop(this.mem);
      } catch (e) {
        if (!(e instanceof ChainError)) throw e;
        if (e.fatal) {
          log.warn(`vhost ${this.name}: ${e.message}; queue ${q.index} stopped`);
          q.signalError();
          return undefined;
        }
        // The chain is gone but its head is ours: hand it back empty, the guest sees a failed request.
        log.warn(`vhost ${this.name}: ${e.message}; request failed`);
        q.push(e.head, 0);
      }
    }
  }

  /** Returns a chain to the driver with len bytes written; the call follows within this loop turn. */
  complete(q: DeviceQueue, head: number, len: number): void {
    q.push(head, len);
    if (!this.inKick) this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate: completions finishing in the same loop turn share one notification.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Notifies the driver of every queue with used entries it has not heard of. */
  flush(): void {
    for (const q of this.queues) if (q && q.pending > 0) q.notify();
    if (this.retired.length > 0) this.releaseRetired();
  }

  // ---------- end ----------

  async close(): Promise<void> {
    if (this.closed) return this.done;
    this.closed = true;
    const reconnects = this.reconnects;
    if (!this.hungUp && reconnects !== 'yes' && this.acked !== 0n) {
      const acked = (this.protocolFeatures & bit(ProtoFeature.INFLIGHT_SHMFD)) !== 0n;
      const why = reconnects === 'no'
        ? `keeps no in-flight records (it ${acked ? 'acked INFLIGHT_SHMFD but sent no SET_INFLIGHT_FD' : 'did not negotiate INFLIGHT_SHMFD'}): it cannot reconnect, and`
        : 'keeps in-flight records but has not reconnected before: if it cannot reconnect (QEMU 7.2\'s vhost-user-scsi cannot; 8.2 and later with reconnect-ms can),';
      log.warn(`vhost ${this.name}: closing under a connected front-end that ${why} the guest's I/O on this device will hang until the VM restarts`);
    }
    if (vhostPolling.maxNs > 0) log.info(`vhost ${this.name}: polling: ${this.pollStats.windows} windows, ${this.pollStats.hits} found requests; window ${this.pollNs} ns at the end`);
    this.watcher?.stop();
    this.watcher = undefined;
    for (const q of this.queues) if (q) q.stopWatching();
    await this.device?.close();
    // Requests finished while closing are in the used rings: tell the driver before the call fds go.
    this.flush();
    for (const q of this.queues) if (q) q.closeFds();
    if (this.slaveFd >= 0) closeSync(this.slaveFd);
    this.slaveFd = -1;
    this.dropInflight();
    unmapRegions([...this.retired, ...this.mem.clear()]);
    this.retired = [];
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
    this.resolveDone();
  }
}

/** A connected front-end as the control API shows it. */
export interface FrontendInfo {
  connection: number;
  since: string;
  /** Protocol features it acked (SET_PROTOCOL_FEATURES), by name. */
  protocol_features: string[];
  /** Virtio features it acked (SET_FEATURES): the ring's by name, a device type's as bit numbers. */
  features: string[];
  /** Rings running. */
  queues: number;
  /** It keeps in-flight records, which a front-end needs to reconnect to the next tsiod losing nothing. */
  inflight: boolean;
  /** Whether it reconnects, from what it did (VhostUserBackend.reconnects). */
  reconnects: 'yes' | 'no' | 'unknown';
  /** Requests returned to it, kicks it sent and calls (interrupts) it got, on all its rings so far. */
  requests: number;
  kicks: number;
  calls: number;
}

/** The names of the bits set in v (a table of bit numbers), others as their numbers. */
function namedBits(v: bigint, table: Record<string, bigint>): string[] {
  const out: string[] = [];
  for (let b = 0n; b < 64n; b++) {
    if ((v & (1n << b)) === 0n) continue;
    const name = Object.entries(table).find(([, n]) => n === b)?.[0];
    out.push(name ?? String(b));
  }
  return out;
}

/** Messages that are answered with their own reply, never a REPLY_ACK. */
const HAS_OWN_REPLY = new Set<number>([
  Req.GET_FEATURES, Req.GET_PROTOCOL_FEATURES, Req.GET_QUEUE_NUM, Req.GET_VRING_BASE, Req.GET_MAX_MEM_SLOTS, Req.GET_CONFIG,
  Req.GET_INFLIGHT_FD,
]);

function readRegion(p: Buffer, off: number) {
  return {
    gpa: u64(p, off + Region.GPA),
    size: u64(p, off + Region.SIZE),
    uaddr: u64(p, off + Region.UADDR),
    mmapOffset: u64(p, off + Region.MMAP_OFFSET),
  };
}
