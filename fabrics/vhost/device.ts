// One vhost-user-scsi connection: the back-end half of the vhost-user
// protocol (QEMU 7.2's message order and semantics) and the virtio-scsi
// device behind it. One connection is one virtio-scsi HBA and one I_T nexus
// on the TPG; its request queues hand guest memory views straight to the core.

import { closeSync } from 'node:fs';
import type { Tpg } from '../../src/model/target';
import type { Session } from '../../src/core/session';
import type { LogicalUnit } from '../../src/core/logical-unit';
import type { Completion } from '../../src/core/command';
import type { TmfFunction, TmfResult } from '../../src/core/tmr';
import { log } from '../../src/core/log';
import { sglCopyIn, sglFlatten, sglSlice } from '../../src/core/sgl';
import { FdWatcher, eventfdRead, recvMessage, sendMessage } from '../../native';
import { GuestMemory, MappedRegion, unmapRegions } from './guest-memory';
import { Chain, ChainError, DeviceQueue } from './virtqueue';
import {
  Feature, Flag, Hdr, MAX_MEM_SLOTS, MemRegMsg, MemTable, ProtoFeature, Region, Req, U64, VRING_IDX_MASK,
  VRING_NOFD_MASK, VringAddr, VringState, bit, message, reqName, u64, u64Payload,
} from './vhost-user-proto';
import {
  AnReq, AnResp, CmdReq, CmdResp, CtrlType, Event, EventType, EVENTS_MISSED, ResetReason, Resp, ScsiFeature,
  TmfReq, TmfResp, TmfSubtype, VQ, decodeLun, encodeLun,
} from './virtio-scsi';

/** What we offer: only what we serve (QEMU uses every bit offered). */
export const DEVICE_FEATURES =
  bit(Feature.VERSION_1) | bit(Feature.PROTOCOL_FEATURES) | bit(Feature.INDIRECT_DESC) | bit(Feature.EVENT_IDX) |
  bit(ScsiFeature.HOTPLUG) | bit(ScsiFeature.CHANGE);
export const PROTOCOL_FEATURES =
  bit(ProtoFeature.MQ) | bit(ProtoFeature.REPLY_ACK) | bit(ProtoFeature.CONFIGURE_MEM_SLOTS) | bit(ProtoFeature.RESET_DEVICE);

/** Events kept while the guest has no event buffer posted; beyond that they are reported as missed. */
const MAX_PENDING_EVENTS = 64;

const TMF_FUNCTIONS: Record<number, TmfFunction> = {
  [TmfSubtype.ABORT_TASK]: 'abort-task',
  [TmfSubtype.ABORT_TASK_SET]: 'abort-task-set',
  [TmfSubtype.CLEAR_ACA]: 'clear-aca',
  [TmfSubtype.CLEAR_TASK_SET]: 'clear-task-set',
  [TmfSubtype.I_T_NEXUS_RESET]: 'it-nexus-reset',
  [TmfSubtype.LOGICAL_UNIT_RESET]: 'lun-reset',
  [TmfSubtype.QUERY_TASK]: 'query-task',
};

const TMF_RESPONSE: Record<TmfResult, number> = {
  complete: Resp.OK,
  succeeded: Resp.FUNCTION_SUCCEEDED,
  'no-task': Resp.OK,
  'no-lun': Resp.INCORRECT_LUN,
  'not-supported': Resp.FUNCTION_REJECTED,
  rejected: Resp.FUNCTION_REJECTED,
};

/** A request in flight, found again by the guest's 64-bit id for ABORT TASK and QUERY TASK. */
interface Inflight {
  q: DeviceQueue;
  chain: Chain;
  idLo: number;
  idHi: number;
  lun: number;
  tag: number;
  dataIn: Buffer[] | undefined;
}

class ProtocolError extends Error {}

const DEBUG = process.env.TSIO_LOG === 'debug';

let nextConnection = 1;

export class VhostScsiDevice {
  readonly id = nextConnection++;
  readonly mem = new GuestMemory();
  readonly queues: DeviceQueue[] = [];
  private watcher: FdWatcher | undefined;
  private session: Session | undefined;
  private features = 0n;
  private protocolFeatures = 0n;
  private busy: Promise<void> | undefined;
  private backlog: { data: Buffer; fds: number[] }[] = [];
  /** Regions taken out of the table while requests still used them. */
  private retired: MappedRegion[] = [];
  private readonly inflight = new Map<number, Inflight>();
  private flushScheduled = false;
  private inKick = false;
  /** LUNs the guest was last told about, and their capacities (hot-plug, PARAM_CHANGE). */
  private knownLuns = new Map<number, number>();
  private pendingEvents: Buffer[] = [];
  private eventsMissed = false;
  private closed = false;
  /** Resolved when the device has stopped (connection end). */
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    readonly fd: number,
    readonly tpg: Tpg,
    private readonly numQueues: number,
    private readonly name: string,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
    this.session = tpg.openSession({ name: tpg.attributes.nexus !== undefined ? String(tpg.attributes.nexus) : tpg.target.wwn });
    this.rememberLuns();
    this.watcher = new FdWatcher(fd, () => this.onReadable());
    log.info(`vhost ${this.name}: front-end connected (connection ${this.id})`);
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
    // QEMU 7.2's vhost-user-scsi does not hold its num_queues to GET_QUEUE_NUM: serve what it sets up.
    if (index > VRING_IDX_MASK) throw new RangeError(`queue ${index} does not exist`);
    let q = this.queues[index];
    if (!q) q = this.queues[index] = new DeviceQueue(index);
    return q;
  }

  private dispatch(request: number, p: Buffer, fds: number[]): void | Promise<void> {
    switch (request) {
      case Req.GET_FEATURES:
        return this.reply(request, u64Payload(DEVICE_FEATURES));
      case Req.SET_FEATURES: {
        this.payload(p, U64.LENGTH, 'SET_FEATURES');
        const f = p.readBigUInt64LE(U64.VALUE);
        if ((f & bit(Feature.RING_PACKED)) !== 0n) throw new RangeError('packed rings were not offered');
        this.features = f;
        for (const q of this.queues) if (q) q.eventIdx = (f & bit(Feature.EVENT_IDX)) !== 0n;
        return;
      }
      case Req.GET_PROTOCOL_FEATURES:
        return this.reply(request, u64Payload(PROTOCOL_FEATURES));
      case Req.SET_PROTOCOL_FEATURES:
        this.payload(p, U64.LENGTH, 'SET_PROTOCOL_FEATURES');
        this.protocolFeatures = p.readBigUInt64LE(U64.VALUE) & PROTOCOL_FEATURES;
        return;
      case Req.GET_QUEUE_NUM:
        return this.reply(request, u64Payload(VQ.REQUEST0 + this.numQueues));
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
          q.eventIdx = (this.features & bit(Feature.EVENT_IDX)) !== 0n;
          q.started = true;
          // Without F_PROTOCOL_FEATURES a ring runs as soon as it is kicked; with it, on SET_VRING_ENABLE.
          if ((this.features & bit(Feature.PROTOCOL_FEATURES)) === 0n) q.enabled = true;
          q.kickWatcher = new FdWatcher(fd, () => this.onKick(q));
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
    if (this.retired.length === 0 || this.inflight.size > 0) return;
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

  private resetDevice(): void {
    for (const q of this.queues) {
      if (!q) continue;
      q.started = false;
      q.enabled = false;
      q.stopWatching();
      q.setBase(0);
    }
    this.pendingEvents = [];
    this.eventsMissed = false;
    this.features = 0n;
  }

  // ---------- queues ----------

  private onKick(q: DeviceQueue): void {
    if (q.kickFd >= 0) eventfdRead(q.kickFd);
    if (!q.ready || this.closed) return;
    this.inKick = true;
    try {
      if (q.index === VQ.EVENT) return this.deliverEvents();
      do {
        let chain: Chain | undefined;
        while ((chain = this.popSafe(q)) !== undefined) {
          if (q.index === VQ.CONTROL) this.control(q, chain);
          else this.command(q, chain);
          if (!q.ready) break;
        }
      } while (q.ready && q.armKick());
    } finally {
      this.inKick = false;
    }
    this.flush();
  }

  private popSafe(q: DeviceQueue): Chain | undefined {
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

  private complete(q: DeviceQueue, head: number, len: number): void {
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

  private flush(): void {
    for (const q of this.queues) if (q && q.pending > 0) q.notify();
    if (this.retired.length > 0) this.releaseRetired();
  }

  /** A virtio-scsi command request: header, data-out | response, data-in. */
  private command(q: DeviceQueue, chain: Chain): void {
    if (chain.readLen < CmdReq.LENGTH || chain.writeLen < CmdResp.LENGTH) {
      log.warn(`vhost ${this.name}: queue ${q.index}: request ${chain.head} with a short header (${chain.readLen} readable, ${chain.writeLen} writable bytes)`);
      return this.failRequest(q, chain, Resp.FAILURE);
    }
    const hdr = chain.readable[0].length >= CmdReq.LENGTH ? chain.readable[0] : sglFlatten(chain.readable, 0, CmdReq.LENGTH);
    const addr = decodeLun(hdr, CmdReq.LUN);
    const session = this.session;
    if (DEBUG) log.debug(`vhost ${this.name}: q${q.index} head ${chain.head} lun ${hdr.subarray(0, 8).toString('hex')} cdb ${hdr.subarray(CmdReq.CDB, CmdReq.CDB + 16).toString('hex')} out ${chain.readLen} in ${chain.writeLen}`);
    if (addr === undefined || addr.target !== 0 || session === undefined) {
      return this.failRequest(q, chain, Resp.BAD_TARGET);
    }
    const outLen = chain.readLen - CmdReq.LENGTH;
    const inLen = chain.writeLen - CmdResp.LENGTH;
    if (outLen > 0 && inLen > 0) return this.failRequest(q, chain, Resp.FAILURE); // bidirectional needs INOUT
    const cdbLen = cdbLength(hdr[CmdReq.CDB]);
    const cdb = Buffer.from(hdr.subarray(CmdReq.CDB, CmdReq.CDB + cdbLen)); // the guest may rewrite its copy
    const tag = (q.index << 16) | chain.head;
    const dataIn = inLen > 0 ? sglSlice(chain.writable, CmdResp.LENGTH, inLen) : undefined;
    const f: Inflight = { q, chain, idLo: hdr.readUInt32LE(CmdReq.ID), idHi: hdr.readUInt32LE(CmdReq.ID + 4), lun: addr.lun, tag, dataIn };
    this.inflight.set(tag, f);
    session.submit(
      {
        cdb,
        lun: addr.lun,
        tag,
        taskAttr: (hdr[CmdReq.TASK_ATTR] & 3) as 0 | 1 | 2 | 3,
        expectedLength: outLen > 0 ? outLen : inLen,
        dataOut: outLen > 0 ? sglSlice(chain.readable, CmdReq.LENGTH, outLen) : undefined,
        dataIn,
      },
      (c) => this.commandDone(f, c),
    );
  }

  private commandDone(f: Inflight, c: Completion): void {
    this.inflight.delete(f.tag);
    if (DEBUG && c.status !== 0) log.debug(`vhost ${this.name}: LUN ${f.lun} tag ${f.tag}: status ${c.status}${c.sense ? ' sense ' + c.sense.subarray(0, 18).toString('hex') : ''}`);
    const w = f.chain.writable;
    const resp = w[0].length >= CmdResp.LENGTH ? w[0] : Buffer.alloc(CmdResp.LENGTH);
    const senseLen = c.sense ? Math.min(c.sense.length, CmdResp.SENSE_SIZE) : 0;
    resp.writeUInt32LE(senseLen, CmdResp.SENSE_LEN);
    resp.writeUInt32LE(c.residual > 0 ? c.residual : 0, CmdResp.RESIDUAL);
    resp.writeUInt16LE(0, CmdResp.STATUS_QUALIFIER);
    resp[CmdResp.STATUS] = c.status;
    // Aborted by our own TMF: the guest waits for this request to come back as ABORTED.
    resp[CmdResp.RESPONSE] = c.quiet ? Resp.ABORTED : Resp.OK;
    if (senseLen > 0) c.sense!.copy(resp, CmdResp.SENSE, 0, senseLen);
    if (resp !== w[0]) sglCopyIn(w, 0, resp);
    // Data-in written in place (dataIn views) unless the core built its own buffer.
    if (c.dataInLength > 0 && c.dataIn !== undefined && c.dataIn !== f.dataIn) {
      let off = 0;
      for (const b of c.dataIn) {
        if (off >= c.dataInLength) break;
        off += sglCopyIn(w, CmdResp.LENGTH + off, b.subarray(0, c.dataInLength - off));
      }
    }
    this.complete(f.q, f.chain.head, CmdResp.LENGTH + c.dataInLength);
  }

  private failRequest(q: DeviceQueue, chain: Chain, response: number): void {
    if (chain.writeLen >= CmdResp.LENGTH) {
      const resp = Buffer.alloc(CmdResp.LENGTH);
      resp[CmdResp.RESPONSE] = response;
      sglCopyIn(chain.writable, 0, resp);
      this.complete(q, chain.head, CmdResp.LENGTH);
    } else {
      this.complete(q, chain.head, 0);
    }
  }

  /** Control queue: task management and asynchronous notification requests. */
  private control(q: DeviceQueue, chain: Chain): void {
    const req = chain.readLen >= 4 ? sglFlatten(chain.readable, 0, Math.min(chain.readLen, TmfReq.LENGTH)) : undefined;
    const type = req?.readUInt32LE(0);
    if (type === CtrlType.TMF && req!.length >= TmfReq.LENGTH && chain.writeLen >= TmfResp.LENGTH) {
      void this.tmf(q, chain, req!);
      return;
    }
    if ((type === CtrlType.AN_QUERY || type === CtrlType.AN_SUBSCRIBE) && chain.readLen >= AnReq.LENGTH && chain.writeLen >= AnResp.LENGTH) {
      // No asynchronous notification classes are supported: event_actual 0.
      const resp = Buffer.alloc(AnResp.LENGTH);
      resp[AnResp.RESPONSE] = Resp.OK;
      sglCopyIn(chain.writable, 0, resp);
      return this.complete(q, chain.head, AnResp.LENGTH);
    }
    log.warn(`vhost ${this.name}: control request ${chain.head} of type ${type} malformed or unknown`);
    if (chain.writeLen >= 1) sglCopyIn(chain.writable, 0, Buffer.from([Resp.FAILURE]));
    this.complete(q, chain.head, chain.writeLen >= 1 ? 1 : 0);
  }

  private async tmf(q: DeviceQueue, chain: Chain, req: Buffer): Promise<void> {
    const subtype = req.readUInt32LE(TmfReq.SUBTYPE);
    const addr = decodeLun(req, TmfReq.LUN);
    let response: number;
    const fn = TMF_FUNCTIONS[subtype];
    if (addr === undefined || addr.target !== 0 || this.session === undefined) response = Resp.BAD_TARGET;
    else if (fn === undefined) response = Resp.FUNCTION_REJECTED;
    else {
      let tag: number | undefined;
      if (fn === 'abort-task' || fn === 'query-task') {
        const lo = req.readUInt32LE(TmfReq.ID);
        const hi = req.readUInt32LE(TmfReq.ID + 4);
        for (const f of this.inflight.values()) {
          if (f.idLo === lo && f.idHi === hi && f.lun === addr.lun) tag = f.tag;
        }
        if (tag === undefined) tag = -1;
      }
      const r = await this.session.taskManagement(fn, addr.lun, tag);
      response = TMF_RESPONSE[r];
      if (fn === 'lun-reset' || fn === 'it-nexus-reset' || fn === 'clear-task-set') log.info(`vhost ${this.name}: ${fn} on LUN ${addr.lun}: ${r}`);
    }
    sglCopyIn(chain.writable, 0, Buffer.from([response]));
    this.complete(q, chain.head, TmfResp.LENGTH);
  }

  // ---------- events (hot-plug, capacity change) ----------

  /**
   * Event buffers stay in the avail ring until there is an event for them, so
   * a stopped ring never holds any (GET_VRING_BASE needs nothing in flight).
   */
  private deliverEvents(): void {
    const q = this.queues[VQ.EVENT];
    if (!q || !q.ready) return;
    while (this.pendingEvents.length > 0) {
      const chain = this.popSafe(q);
      if (chain === undefined) break;
      if (chain.writeLen < Event.LENGTH) {
        log.warn(`vhost ${this.name}: event buffer ${chain.head} shorter than an event`);
        q.push(chain.head, 0);
        continue;
      }
      const ev = this.pendingEvents.shift()!;
      if (this.eventsMissed) {
        ev.writeUInt32LE(ev.readUInt32LE(Event.EVENT) | EVENTS_MISSED, Event.EVENT);
        this.eventsMissed = false;
      }
      sglCopyIn(chain.writable, 0, ev);
      q.push(chain.head, Event.LENGTH);
    }
    this.flush();
  }

  private postEvent(event: number, lun: number, reason: number): void {
    if (this.pendingEvents.length >= MAX_PENDING_EVENTS) {
      this.eventsMissed = true;
      return;
    }
    const ev = Buffer.alloc(Event.LENGTH);
    ev.writeUInt32LE(event, Event.EVENT);
    encodeLun(ev, Event.LUN, 0, lun);
    ev.writeUInt32LE(reason, Event.REASON);
    this.pendingEvents.push(ev);
  }

  private rememberLuns(): void {
    this.knownLuns.clear();
    if (!this.session || this.closed) return this.unwatchCapacity();
    const lus = new Set<LogicalUnit>();
    for (const [n, itl] of this.session.itls) {
      this.knownLuns.set(n, itl.lu.blocks);
      lus.add(itl.lu);
    }
    for (const lu of this.watchedLus) if (!lus.has(lu)) lu.capacityListeners.delete(this.onCapacity);
    for (const lu of lus) lu.capacityListeners.add(this.onCapacity);
    this.watchedLus.clear();
    for (const lu of lus) this.watchedLus.add(lu);
  }

  private readonly watchedLus = new Set<LogicalUnit>();
  private readonly onCapacity = (): void => this.refresh();

  private unwatchCapacity(): void {
    for (const lu of this.watchedLus) lu.capacityListeners.delete(this.onCapacity);
    this.watchedLus.clear();
  }

  /** The TPG's LUNs or their sizes changed: tell the guest (rescan, removed, capacity changed). */
  refresh(): void {
    const s = this.session;
    if (!s || this.closed) return;
    const hotplug = (this.features & bit(ScsiFeature.HOTPLUG)) !== 0n;
    const change = (this.features & bit(ScsiFeature.CHANGE)) !== 0n;
    for (const [n, blocks] of this.knownLuns) {
      const itl = s.itls.get(n);
      if (!itl) {
        if (hotplug) this.postEvent(EventType.TRANSPORT_RESET, n, ResetReason.REMOVED);
      } else if (itl.lu.blocks !== blocks && change) {
        // reason = ASC | ASCQ << 8: CAPACITY DATA HAS CHANGED (2Ah/09h)
        this.postEvent(EventType.PARAM_CHANGE, n, 0x2a | (0x09 << 8));
      }
    }
    for (const n of s.itls.keys()) {
      if (!this.knownLuns.has(n) && hotplug) this.postEvent(EventType.TRANSPORT_RESET, n, ResetReason.RESCAN);
    }
    this.rememberLuns();
    this.deliverEvents();
  }

  // ---------- end ----------

  async close(): Promise<void> {
    if (this.closed) return this.done;
    this.closed = true;
    this.watcher?.stop();
    this.watcher = undefined;
    this.unwatchCapacity();
    for (const q of this.queues) if (q) q.stopWatching();
    const s = this.session;
    this.session = undefined;
    // Requests still running finish into guest memory before it is unmapped.
    if (s) await s.close();
    const deadline = Date.now() + 5000;
    while (this.inflight.size > 0 && Date.now() < deadline) await new Promise<void>((r) => setTimeout(r, 1));
    for (const q of this.queues) if (q) q.closeFds();
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

/** Messages that are answered with their own reply, never a REPLY_ACK. */
const HAS_OWN_REPLY = new Set<number>([
  Req.GET_FEATURES, Req.GET_PROTOCOL_FEATURES, Req.GET_QUEUE_NUM, Req.GET_VRING_BASE, Req.GET_MAX_MEM_SLOTS,
]);

function readRegion(p: Buffer, off: number) {
  return {
    gpa: u64(p, off + Region.GPA),
    size: u64(p, off + Region.SIZE),
    uaddr: u64(p, off + Region.UADDR),
    mmapOffset: u64(p, off + Region.MMAP_OFFSET),
  };
}

/** CDB length from the group code of its opcode (SAM-5 5.2); the virtio header always has 32 bytes. */
function cdbLength(opcode: number): number {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return CmdReq.CDB_SIZE; // 7Fh variable length and vendor groups: pass all 32 bytes
  }
}
