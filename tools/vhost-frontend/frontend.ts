// A vhost-user front-end (what QEMU is to a back-end), for tests and
// benchmarks without a guest: guest-like shared memory (a memfd), the
// protocol in QEMU 7.2's order, split rings driven from this side, and
// virtio-scsi and virtio-blk requests on them. It can also post malformed
// descriptors on purpose (hostile-guest tests).

import { closeSync, openSync } from 'node:fs';
import {
  FdWatcher, eventfd, eventfdRead, eventfdWrite, fence, memfdCreate, mmapFd, recvMessage, sendMessage, unixConnect, unmap,
} from '../../native';
import {
  Feature, Flag, Hdr, InflightMsg, MemRegMsg, VhostConfig, MemTable, ProtoFeature, Region, Req, U64, VringAddr, VringState, bit, message, reqName,
  u64Payload,
} from '../../fabrics/vhost/vhost-user-proto';
import {
  AVAIL_F_NO_INTERRUPT, Avail, Desc, DescFlag, USED_F_NO_NOTIFY, Used, availSize, needEvent, usedSize,
} from '../../fabrics/vhost/virtio-ring';
import { AnReq, AnResp, CmdReq, Event, VQ, CmdResp, decodeLun, encodeLun } from '../../fabrics/vhost/virtio-scsi';
import { BlkReq, BlkType } from '../../fabrics/vhost/virtio-blk';

export interface FrontendOptions {
  /** Guest RAM size in bytes (default 64 MiB). */
  memory?: number;
  /** Guest physical address of RAM (default an odd high value, to exercise translation). */
  gpaBase?: number;
  /** Use ADD_MEM_REG when the back-end offers CONFIGURE_MEM_SLOTS (default true). */
  memSlots?: boolean;
  /** Virtio features to ask for beyond VERSION_1 (e.g. EVENT_IDX, INDIRECT_DESC); default: what is offered. */
  features?: bigint;
  /**
   * In-flight records (INFLIGHT_SHMFD): 'acked', the bit acked but no records asked for (a front-end that
   * cannot reconnect); 'kept', as QEMU 7.2's vhost-user-blk and vhost-user-scsi (GET_INFLIGHT_FD and
   * SET_INFLIGHT_FD before the rings start). Default: the bit is not acked.
   */
  inflight?: 'acked' | 'kept';
  /**
   * With inflight 'kept': the records an earlier connection kept, handed to this back end with SET_INFLIGHT_FD
   * and no GET_INFLIGHT_FD, as QEMU does when it reconnects.
   */
  handOver?: { fd: number; msg: Buffer };
}

/** A descriptor as posted raw: guest physical address, length, flags, next. */
export interface RawDesc {
  addr: number;
  len: number;
  flags: number;
  next?: number;
}

/** Front-end virtual address of RAM in the messages (QEMU's own mapping address, here made up). */
const UADDR_BASE = 0x7f12_3400_0000;

export class GuestRam {
  readonly fd: number;
  readonly buf: Buffer;
  private next = 0;

  constructor(
    readonly size: number,
    readonly gpa: number,
  ) {
    this.fd = memfdCreate('tsio-frontend-ram', size);
    this.buf = mmapFd(this.fd, size);
  }

  /** Carves out len bytes aligned to align; returns the guest physical address. */
  alloc(len: number, align = 64): number {
    this.next = Math.ceil(this.next / align) * align;
    if (this.next + len > this.size) throw new RangeError('frontend guest RAM exhausted');
    const off = this.next;
    this.next += len;
    return this.gpa + off;
  }

  view(gpa: number, len: number): Buffer {
    if (gpa < this.gpa || gpa + len > this.gpa + this.size) return Buffer.alloc(0);
    return this.buf.subarray(gpa - this.gpa, gpa - this.gpa + len);
  }

  uaddr(gpa: number): number {
    return UADDR_BASE + (gpa - this.gpa);
  }

  close(): void {
    unmap(this.buf);
    closeSync(this.fd);
  }
}

/** The driver side of one split ring. */
export class DriverQueue {
  readonly descGpa: number;
  readonly availGpa: number;
  readonly usedGpa: number;
  readonly desc: Buffer;
  readonly avail: Buffer;
  readonly used: Buffer;
  readonly kickFd = eventfd();
  readonly callFd = eventfd();
  private free: number[] = [];
  private availIdx = 0;
  private lastUsed = 0;
  private kickedAt = 0;
  eventIdx = false;
  /** Per head: how many descriptors it took, and the caller's completion. */
  private readonly heads = new Map<number, { n: number; done: (len: number) => void }>();
  private watcher: FdWatcher | undefined;
  kicks = 0;
  calls = 0;

  constructor(
    readonly ram: GuestRam,
    readonly index: number,
    readonly num: number,
  ) {
    this.descGpa = ram.alloc(Desc.SIZE * num, 4096);
    this.availGpa = ram.alloc(availSize(num), 4096);
    this.usedGpa = ram.alloc(usedSize(num), 4096);
    this.desc = ram.view(this.descGpa, Desc.SIZE * num);
    this.avail = ram.view(this.availGpa, availSize(num));
    this.used = ram.view(this.usedGpa, usedSize(num));
    for (let i = 0; i < num; i++) this.free.push(i);
  }

  get freeCount(): number {
    return this.free.length;
  }

  get outstanding(): number {
    return this.heads.size;
  }

  /** Posts a chain of readable then writable buffers; done(len) when the device returns it. */
  add(out: [number, number][], inb: [number, number][], done: (len: number) => void): number {
    const all = [...out.map(([a, l]) => [a, l, 0]), ...inb.map(([a, l]) => [a, l, DescFlag.WRITE])];
    if (all.length > this.free.length) throw new RangeError('ring full');
    const ids = this.free.splice(0, all.length);
    for (let i = 0; i < all.length; i++) {
      const o = ids[i] * Desc.SIZE;
      this.writeDesc(o, all[i][0], all[i][1], all[i][2] | (i + 1 < all.length ? DescFlag.NEXT : 0), i + 1 < all.length ? ids[i + 1] : 0);
    }
    this.heads.set(ids[0], { n: all.length, done });
    this.publish(ids[0]);
    return ids[0];
  }

  /** Posts one indirect descriptor pointing at a table of the given chain (in guest RAM at tableGpa). */
  addIndirect(tableGpa: number, chain: RawDesc[], done: (len: number) => void): number {
    const t = this.ram.view(tableGpa, chain.length * Desc.SIZE);
    // A table outside RAM (hostile tests) is posted without being written.
    if (t.length === chain.length * Desc.SIZE) chain.forEach((d, i) => this.writeDescIn(t, i * Desc.SIZE, d.addr, d.len, d.flags, d.next ?? 0));
    const [id] = this.free.splice(0, 1);
    this.writeDesc(id * Desc.SIZE, tableGpa, chain.length * Desc.SIZE, DescFlag.INDIRECT, 0);
    this.heads.set(id, { n: 1, done });
    this.publish(id);
    return id;
  }

  /** Posts descriptors exactly as given (hostile tests): they occupy slots first..; head is slot `head`. */
  addRaw(descs: RawDesc[], head: number, done: (len: number) => void): void {
    descs.forEach((d, i) => this.writeDesc(i * Desc.SIZE, d.addr, d.len, d.flags, d.next ?? 0));
    this.free = this.free.filter((i) => i >= descs.length);
    this.heads.set(head, { n: 0, done });
    this.publish(head);
  }

  /** Publishes a head index as it is, even out of range (hostile tests). */
  publishRaw(head: number): void {
    this.publish(head);
  }

  private writeDesc(o: number, addr: number, len: number, flags: number, next: number): void {
    this.writeDescIn(this.desc, o, addr, len, flags, next);
  }

  private writeDescIn(t: Buffer, o: number, addr: number, len: number, flags: number, next: number): void {
    t.writeUInt32LE(addr % 0x1_0000_0000, o + Desc.ADDR);
    t.writeUInt32LE(Math.floor(addr / 0x1_0000_0000), o + Desc.ADDR + 4);
    t.writeUInt32LE(len, o + Desc.LEN);
    t.writeUInt16LE(flags, o + Desc.FLAGS);
    t.writeUInt16LE(next, o + Desc.NEXT);
  }

  private publish(head: number): void {
    this.avail.writeUInt16LE(head, Avail.RING + Avail.ENTRY * (this.availIdx % this.num));
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.avail.writeUInt16LE(this.availIdx, Avail.IDX);
  }

  /** Kicks the device if it asked for it (EVENT_IDX) or unconditionally without it. */
  kick(): void {
    if (this.availIdx === this.kickedAt) return;
    fence();
    const old = this.kickedAt;
    this.kickedAt = this.availIdx;
    if (this.eventIdx) {
      const ev = this.used.readUInt16LE(usedSize(this.num) - 2);
      if (!needEvent(ev, this.availIdx, old)) return;
    } else if ((this.used.readUInt16LE(Used.FLAGS) & USED_F_NO_NOTIFY) !== 0) {
      return;
    }
    this.kicks++;
    eventfdWrite(this.kickFd);
  }

  /** Collects what the device returned; returns how many. */
  reap(): number {
    let n = 0;
    for (;;) {
      const idx = this.used.readUInt16LE(Used.IDX);
      if (idx === this.lastUsed) {
        if (!this.eventIdx) break;
        // Ask for a call at the next completion, then look again: one may have landed meanwhile.
        this.avail.writeUInt16LE(this.lastUsed, availSize(this.num) - 2);
        fence();
        if (this.used.readUInt16LE(Used.IDX) === this.lastUsed) break;
        continue;
      }
      const o = Used.RING + Used.ENTRY * (this.lastUsed % this.num);
      const id = this.used.readUInt32LE(o + Used.ID);
      const len = this.used.readUInt32LE(o + Used.LEN);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
      const h = this.heads.get(id);
      if (h === undefined) continue;
      this.heads.delete(id);
      // Return the chain's descriptors to the free list.
      let i = id;
      for (let k = 0; k < h.n; k++) {
        this.free.push(i);
        i = this.desc.readUInt16LE(i * Desc.SIZE + Desc.NEXT);
      }
      n++;
      h.done(len);
    }
    return n;
  }

  /** Interrupt mode: reap whenever the device signals the call eventfd. */
  watch(): void {
    this.watcher ??= new FdWatcher(this.callFd, () => {
      eventfdRead(this.callFd);
      this.calls++;
      this.reap();
      // Completions usually post the next requests: one kick for all of them.
      this.kick();
    });
  }

  /** Asks the device not to signal (polling mode, without EVENT_IDX). */
  set noInterrupt(v: boolean) {
    this.avail.writeUInt16LE(v ? AVAIL_F_NO_INTERRUPT : 0, Avail.FLAGS);
  }

  close(): void {
    this.watcher?.stop();
    this.watcher = undefined;
    closeSync(this.kickFd);
    closeSync(this.callFd);
  }
}

export interface ScsiResult {
  response: number;
  status: number;
  sense: Buffer;
  residual: number;
  /** Bytes the device says it wrote (used length). */
  usedLen: number;
  data: Buffer;
}

/** The front-end's end of one vhost-user connection. */
export class VhostUserFrontend {
  readonly fd: number;
  readonly ram: GuestRam;
  features = 0n;
  protocolFeatures = 0n;
  queueNum = 0;
  readonly queues: DriverQueue[] = [];
  /** Messages sent, by name (protocol tests). */
  readonly sent: string[] = [];
  /** Ring positions GET_VRING_BASE returned, for the next start. */
  private bases: number[] = [];
  /** The fds of the last reply (GET_INFLIGHT_FD's). */
  private replyFds: number[] = [];
  /** The in-flight records' fd, kept for the life of the connection as QEMU keeps it, or -1. */
  inflightFd = -1;
  /** GET_INFLIGHT_FD's answer (size, offset, queues), what SET_INFLIGHT_FD sends again. */
  inflightMsg: Buffer | undefined;

  constructor(
    readonly socketPath: string,
    readonly opts: FrontendOptions = {},
  ) {
    this.fd = unixConnect(socketPath);
    this.ram = new GuestRam(opts.memory ?? 64 * 1024 * 1024, opts.gpaBase ?? 0x1_2345_0000);
  }

  /** Sends a message; with `reply`, waits for and returns its payload. */
  request(req: number, payload?: Buffer, fds?: number[], opts: { reply?: boolean; needAck?: boolean } = {}): Buffer | undefined {
    const ack = opts.needAck && (this.protocolFeatures & bit(ProtoFeature.REPLY_ACK)) !== 0n;
    const flags = Flag.VERSION | (ack ? Flag.NEED_REPLY : 0);
    this.sent.push(reqName[req]);
    sendMessage(this.fd, message(req, flags, payload), fds);
    if (!opts.reply && !ack) return undefined;
    const m = recvMessage(this.fd);
    if (m === null || m.data.length === 0) throw new Error(`back-end closed the connection after ${reqName[req]}`);
    this.replyFds = m.fds;
    const r = m.data.readUInt32LE(Hdr.REQUEST);
    const f = m.data.readUInt32LE(Hdr.FLAGS);
    if (r !== req || f !== (Flag.VERSION | Flag.REPLY)) throw new Error(`bad reply to ${reqName[req]}: request ${r} flags ${f}`);
    const p = m.data.subarray(Hdr.LENGTH);
    if (ack && !opts.reply && p.readBigUInt64LE(0) !== 0n) throw new Error(`${reqName[req]} failed (REPLY_ACK ${p.readBigUInt64LE(0)})`);
    return p;
  }

  private u64(req: number): bigint {
    return this.request(req, undefined, undefined, { reply: true })!.readBigUInt64LE(U64.VALUE);
  }

  /** Connect sequence of QEMU 7.2 (vhost_user_backend_init + vhost_dev_init). */
  negotiate(numQueues: number): void {
    this.features = this.u64(Req.GET_FEATURES);
    if ((this.features & bit(Feature.PROTOCOL_FEATURES)) !== 0n) {
      const offered = this.u64(Req.GET_PROTOCOL_FEATURES);
      const want = bit(ProtoFeature.MQ) | bit(ProtoFeature.REPLY_ACK) | bit(ProtoFeature.CONFIGURE_MEM_SLOTS) |
        bit(ProtoFeature.RESET_DEVICE) | bit(ProtoFeature.CONFIG) | bit(ProtoFeature.INFLIGHT_SHMFD);
      this.protocolFeatures = offered & want & (this.opts.inflight ? ~0n : ~bit(ProtoFeature.INFLIGHT_SHMFD));
      this.request(Req.SET_PROTOCOL_FEATURES, u64Payload(this.protocolFeatures));
      if ((this.protocolFeatures & bit(ProtoFeature.MQ)) !== 0n) this.queueNum = Number(this.u64(Req.GET_QUEUE_NUM));
      if ((this.protocolFeatures & bit(ProtoFeature.CONFIGURE_MEM_SLOTS)) !== 0n) this.u64(Req.GET_MAX_MEM_SLOTS);
    }
    this.request(Req.SET_OWNER);
    this.u64(Req.GET_FEATURES);
    for (let i = 0; i < numQueues; i++) {
      const q = new DriverQueue(this.ram, i, 128);
      this.queues.push(q);
      this.request(Req.SET_VRING_CALL, u64Payload(i), [q.callFd]);
    }
  }

  /** Start sequence of QEMU 7.2 (vhost_dev_start): features, memory, rings, enable. */
  start(queueSize = 128): void {
    if (this.opts.inflight === 'kept' && this.inflightFd < 0 && (this.protocolFeatures & bit(ProtoFeature.INFLIGHT_SHMFD)) !== 0n) {
      // vhost_user_blk_start: the records come before the device starts, and are kept across back ends.
      const h = this.opts.handOver;
      if (h) {
        this.inflightFd = openSync(`/proc/self/fd/${h.fd}`, 'r+');
        this.inflightMsg = h.msg;
      } else {
        const p = Buffer.alloc(InflightMsg.LENGTH);
        p.writeUInt16LE(this.queues.length, InflightMsg.NUM_QUEUES);
        p.writeUInt16LE(queueSize, InflightMsg.QUEUE_SIZE);
        this.inflightMsg = Buffer.from(this.request(Req.GET_INFLIGHT_FD, p, undefined, { reply: true })!);
        if (this.replyFds.length !== 1) throw new Error(`GET_INFLIGHT_FD answered with ${this.replyFds.length} fds`);
        this.inflightFd = this.replyFds[0];
      }
      this.request(Req.SET_INFLIGHT_FD, this.inflightMsg, [this.inflightFd]);
    }
    const want = this.opts.features ?? this.features;
    const acked = (want & this.features) | bit(Feature.VERSION_1);
    this.request(Req.SET_FEATURES, u64Payload(acked));
    this.sendMemory();
    for (let i = 0; i < this.queues.length; i++) {
      if (queueSize !== this.queues[i].num) {
        this.queues[i] = new DriverQueue(this.ram, i, queueSize);
        this.bases[i] = 0;
      }
      const q = this.queues[i];
      q.eventIdx = (acked & bit(Feature.EVENT_IDX)) !== 0n;
      this.request(Req.SET_VRING_NUM, vringState(i, q.num));
      // Where the last GET_VRING_BASE left the ring (0 for a fresh one), as QEMU does.
      this.request(Req.SET_VRING_BASE, vringState(i, this.bases[i] ?? 0));
      const a = Buffer.alloc(VringAddr.LENGTH);
      a.writeUInt32LE(i, VringAddr.INDEX);
      a.writeBigUInt64LE(BigInt(this.ram.uaddr(q.descGpa)), VringAddr.DESC);
      a.writeBigUInt64LE(BigInt(this.ram.uaddr(q.usedGpa)), VringAddr.USED);
      a.writeBigUInt64LE(BigInt(this.ram.uaddr(q.availGpa)), VringAddr.AVAIL);
      this.request(Req.SET_VRING_ADDR, a);
      this.request(Req.SET_VRING_KICK, u64Payload(i), [q.kickFd]);
      this.request(Req.SET_VRING_CALL, u64Payload(i), [q.callFd]);
    }
    for (let i = 0; i < this.queues.length; i++) this.request(Req.SET_VRING_ENABLE, vringState(i, 1), undefined, { needAck: true });
  }

  /** SET_MEM_TABLE with the one region, whatever was negotiated (a table change mid-run). */
  sendMemoryTable(): void {
    const slots = this.opts.memSlots;
    (this.opts as FrontendOptions).memSlots = false;
    try {
      this.sendMemory();
    } finally {
      (this.opts as FrontendOptions).memSlots = slots;
    }
  }

  /** The memory table: one region (ADD_MEM_REG with CONFIGURE_MEM_SLOTS, else SET_MEM_TABLE). */
  sendMemory(): void {
    const region = Buffer.alloc(Region.LENGTH);
    region.writeBigUInt64LE(BigInt(this.ram.gpa), Region.GPA);
    region.writeBigUInt64LE(BigInt(this.ram.size), Region.SIZE);
    region.writeBigUInt64LE(BigInt(this.ram.uaddr(this.ram.gpa)), Region.UADDR);
    region.writeBigUInt64LE(0n, Region.MMAP_OFFSET);
    if ((this.protocolFeatures & bit(ProtoFeature.CONFIGURE_MEM_SLOTS)) !== 0n && this.opts.memSlots !== false) {
      const p = Buffer.alloc(MemRegMsg.LENGTH);
      region.copy(p, MemRegMsg.REGION);
      this.request(Req.ADD_MEM_REG, p, [this.ram.fd], { needAck: true });
    } else {
      const p = Buffer.alloc(MemTable.REGIONS + Region.LENGTH);
      p.writeUInt32LE(1, MemTable.NREGIONS);
      region.copy(p, MemTable.REGIONS);
      this.request(Req.SET_MEM_TABLE, p, [this.ram.fd], { needAck: true });
    }
  }

  /** GET_CONFIG (virtio-blk): size bytes of the device's config space. */
  getConfig(size: number): Buffer {
    const p = Buffer.alloc(VhostConfig.PAYLOAD + size);
    p.writeUInt32LE(0, VhostConfig.OFFSET);
    p.writeUInt32LE(size, VhostConfig.SIZE);
    const r = this.request(Req.GET_CONFIG, p, undefined, { reply: true })!;
    if (r.readUInt32LE(VhostConfig.SIZE) !== size) throw new Error('GET_CONFIG refused');
    return r.subarray(VhostConfig.PAYLOAD, VhostConfig.PAYLOAD + size);
  }

  /** Stop sequence of QEMU 7.2: disable, GET_VRING_BASE each ring, RESET_DEVICE. Returns the bases. */
  stop(): number[] {
    for (let i = 0; i < this.queues.length; i++) this.request(Req.SET_VRING_ENABLE, vringState(i, 0));
    const bases = this.queues.map((_q, i) => this.request(Req.GET_VRING_BASE, vringState(i, 0), undefined, { reply: true })!.readUInt32LE(VringState.NUM));
    this.bases = bases;
    return bases;
  }

  /** A guest reset after stop(): RESET_DEVICE, and the rings start over from 0. */
  reset(): void {
    if ((this.protocolFeatures & bit(ProtoFeature.RESET_DEVICE)) !== 0n) this.request(Req.RESET_DEVICE);
    this.bases = [];
  }

  close(): void {
    if (this.inflightFd >= 0) closeSync(this.inflightFd);
    this.inflightFd = -1;
    for (const q of this.queues) q.close();
    closeSync(this.fd);
    this.ram.close();
  }
}

function vringState(index: number, num: number): Buffer {
  const b = Buffer.alloc(VringState.LENGTH);
  b.writeUInt32LE(index, VringState.INDEX);
  b.writeUInt32LE(num, VringState.NUM);
  return b;
}

/** A virtio-scsi request slot: header, response and data in guest RAM, reused per request. */
export class ScsiSlot {
  readonly reqGpa: number;
  readonly respGpa: number;
  readonly dataGpa: number;
  readonly req: Buffer;
  readonly resp: Buffer;
  readonly data: Buffer;

  constructor(
    ram: GuestRam,
    readonly dataSize: number,
  ) {
    this.reqGpa = ram.alloc(CmdReq.LENGTH);
    this.respGpa = ram.alloc(CmdResp.LENGTH);
    this.dataGpa = ram.alloc(Math.max(dataSize, 1), 4096);
    this.req = ram.view(this.reqGpa, CmdReq.LENGTH);
    this.resp = ram.view(this.respGpa, CmdResp.LENGTH);
    this.data = ram.view(this.dataGpa, dataSize);
  }

  /** Fills the header and posts the request: data-out when `write`, else data-in of `len` bytes. */
  post(q: DriverQueue, lun: number, cdb: Buffer | number[], len: number, write: boolean, id: bigint, done: (r: ScsiResult) => void, target = 0): void {
    this.req.fill(0);
    this.req[CmdReq.LUN] = 1;
    this.req[CmdReq.LUN + 1] = target;
    this.req[CmdReq.LUN + 2] = 0x40 | (lun >> 8);
    this.req[CmdReq.LUN + 3] = lun & 0xff;
    this.req.writeBigUInt64LE(id, CmdReq.ID);
    Buffer.from(cdb).copy(this.req, CmdReq.CDB);
    this.resp.fill(0xee);
    const out: [number, number][] = [[this.reqGpa, CmdReq.LENGTH]];
    const inb: [number, number][] = [[this.respGpa, CmdResp.LENGTH]];
    if (len > 0) (write ? out : inb).push([this.dataGpa, len]);
    q.add(out, inb, (usedLen) => done(this.result(usedLen, write ? 0 : len)));
  }

  result(usedLen: number, inLen: number): ScsiResult {
    const senseLen = this.resp.readUInt32LE(CmdResp.SENSE_LEN);
    return {
      response: this.resp[CmdResp.RESPONSE],
      status: this.resp[CmdResp.STATUS],
      sense: Buffer.from(this.resp.subarray(CmdResp.SENSE, CmdResp.SENSE + Math.min(senseLen, CmdResp.SENSE_SIZE))),
      residual: this.resp.readUInt32LE(CmdResp.RESIDUAL),
      usedLen,
      data: this.data.subarray(0, inLen),
    };
  }
}

/** A virtio-blk request slot in guest RAM. */
export class BlkSlot {
  readonly hdrGpa: number;
  readonly dataGpa: number;
  readonly statusGpa: number;
  readonly hdr: Buffer;
  readonly data: Buffer;
  readonly status: Buffer;

  constructor(ram: GuestRam, readonly dataSize: number) {
    this.hdrGpa = ram.alloc(BlkReq.LENGTH);
    this.statusGpa = ram.alloc(1);
    this.dataGpa = ram.alloc(Math.max(dataSize, 1), 4096);
    this.hdr = ram.view(this.hdrGpa, BlkReq.LENGTH);
    this.data = ram.view(this.dataGpa, dataSize);
    this.status = ram.view(this.statusGpa, 1);
  }

  post(q: DriverQueue, type: number, sector: number, len: number, done: (status: number) => void): void {
    this.hdr.writeUInt32LE(type, BlkReq.TYPE);
    this.hdr.writeUInt32LE(0, BlkReq.IOPRIO);
    this.hdr.writeBigUInt64LE(BigInt(sector), BlkReq.SECTOR);
    this.status[0] = 0xff;
    const out: [number, number][] = [[this.hdrGpa, BlkReq.LENGTH]];
    const inb: [number, number][] = [];
    // Data the device reads: OUT's blocks, DISCARD's and WRITE_ZEROES's segments; the rest it writes.
    const readable = type === BlkType.OUT || type === BlkType.DISCARD || type === BlkType.WRITE_ZEROES;
    if (len > 0) (readable ? out : inb).push([this.dataGpa, len]);
    inb.push([this.statusGpa, 1]);
    q.add(out, inb, () => done(this.status[0]));
  }
}

/** An event the device returned on virtio-scsi's event queue. */
export interface ScsiEvent {
  event: number;
  target: number;
  lun: number;
  reason: number;
}

/**
 * virtio-scsi's control and event queues from the driver's side: asynchronous notification requests
 * (which Linux never sends), and event buffers kept posted as a driver keeps them (re-posted once read).
 */
export class ScsiEvents {
  readonly events: ScsiEvent[] = [];
  private readonly reqGpa: number;
  private readonly respGpa: number;
  private waiter: (() => void) | undefined;

  constructor(
    readonly fe: VhostUserFrontend,
    buffers: number,
  ) {
    this.reqGpa = fe.ram.alloc(AnReq.LENGTH);
    this.respGpa = fe.ram.alloc(8);
    const q = fe.queues[VQ.EVENT];
    for (let i = 0; i < buffers; i++) this.post(fe.ram.alloc(Event.LENGTH));
    q.kick();
  }

  private post(gpa: number): void {
    const q = this.fe.queues[VQ.EVENT];
    q.add([], [[gpa, Event.LENGTH]], (len) => {
      const b = this.fe.ram.view(gpa, Event.LENGTH);
      if (len >= Event.LENGTH) {
        const addr = decodeLun(b, Event.LUN);
        this.events.push({ event: b.readUInt32LE(Event.EVENT), target: addr?.target ?? -1, lun: addr?.lun ?? -1, reason: b.readUInt32LE(Event.REASON) });
      }
      this.post(gpa);
      q.kick();
      this.waiter?.();
    });
  }

  /** Resolves once n events have come back (or rejects after ms). */
  async wait(n: number, ms = 5000): Promise<ScsiEvent[]> {
    const deadline = Date.now() + ms;
    while (this.events.length < n) {
      if (Date.now() > deadline) throw new Error(`${this.events.length} events of ${n} after ${ms} ms: ${JSON.stringify(this.events)}`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 50);
      });
    }
    return this.events.slice(0, n);
  }

  /** AN_QUERY (1) or AN_SUBSCRIBE (2) of the given classes for target:lun on the control queue. */
  an(type: number, target: number, lun: number, requested: number): Promise<{ actual: number; response: number }> {
    const req = this.fe.ram.view(this.reqGpa, AnReq.LENGTH);
    const resp = this.fe.ram.view(this.respGpa, AnResp.LENGTH);
    req.fill(0);
    req.writeUInt32LE(type, AnReq.TYPE);
    encodeLun(req, AnReq.LUN, target, lun);
    req.writeUInt32LE(requested, AnReq.EVENT_REQUESTED);
    resp.fill(0xee);
    const ctl = this.fe.queues[VQ.CONTROL];
    return new Promise((resolve) => {
      ctl.add([[this.reqGpa, AnReq.LENGTH]], [[this.respGpa, AnResp.LENGTH]], () =>
        resolve({ actual: resp.readUInt32LE(AnResp.EVENT_ACTUAL), response: resp[AnResp.RESPONSE] }),
      );
      ctl.kick();
    });
  }
}
