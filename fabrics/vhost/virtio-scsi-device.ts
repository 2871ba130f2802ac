// The virtio-scsi device behind one vhost-user connection: one virtio-scsi HBA
// whose targets are the TPGs on its socket, with one I_T nexus per target. Its
// request queues hand guest memory views straight to the core; the control
// queue carries task management and asynchronous notification requests, the
// event queue hot-plug, capacity changes and the media events a driver
// subscribed to. Its config space is QEMU's to synthesize (vhost-user-scsi takes no
// GET_CONFIG), so the queue count is held at the rings the front-end sets up.

import type { Tpg } from '../../src/model/target';
import type { Session } from '../../src/core/session';
import type { LogicalUnit } from '../../src/core/logical-unit';
import type { Completion } from '../../src/core/command';
import type { TmfFunction, TmfResult } from '../../src/core/tmr';
import { log } from '../../src/core/log';
import { DEVICE_TYPE_CHANGER } from '../../src/scsi/smc';
import { sglCopyIn, sglFlatten, sglSlice } from '../../src/core/sgl';
import type { VhostUserBackend, VirtioDevice } from './vhost-user-backend';
import type { Chain, DeviceQueue } from './virtqueue';
import { bit, ProtoFeature } from './vhost-user-proto';
import {
  AnClass, AnReq, AnResp, CmdReq, CmdResp, CtrlType, Event, EventType, EVENTS_MISSED, ResetReason, Resp, ScsiFeature,
  TmfReq, TmfResp, TmfSubtype, VQ, decodeLun, encodeLun,
} from './virtio-scsi';

/** virtio-scsi's own feature bits we serve. */
export const SCSI_FEATURES = bit(ScsiFeature.HOTPLUG) | bit(ScsiFeature.CHANGE);

/**
 * Events kept while the guest has no event buffer posted (Linux posts 8 and
 * re-posts each after handling it). Beyond that the next event delivered
 * carries EVENTS_MISSED and the guest rescans the whole controller, which is
 * faster than waiting out a long backlog one buffer at a time.
 */
export const MAX_PENDING_EVENTS = 16;

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
  target: number;
  lun: number;
  tag: number;
  dataIn: Buffer[] | undefined;
}

/** What a device reads of its controller (the socket): the TPGs by virtio target. */
export interface Controller {
  readonly path: string;
  /** Enabled TPGs by virtio target. */
  targets(): Map<number, Tpg>;
}

/** One virtio target: its TPG, the I_T nexus on it, and the LUNs the guest was last told about. */
interface Nexus {
  tpg: Tpg;
  session: Session;
  /** LUN -> the unit and its capacity when the guest last heard of it (hot-plug, PARAM_CHANGE). */
  known: Map<number, { lu: LogicalUnit; blocks: number }>;
  /** LUN -> the asynchronous notification classes the driver subscribed to (AN_SUBSCRIBE), none absent. */
  subscribed: Map<number, number>;
}

/**
 * The notification classes a unit reports: media for removable ones (CD/DVD, tape, RMB disks) and for media
 * changers (not removable themselves, their import/export slots take cartridges in and out).
 */
export function anClasses(lu: LogicalUnit): number {
  return lu.so.attributes.removable || lu.deviceType === DEVICE_TYPE_CHANGER ? AnClass.MEDIA_CHANGE : 0;
}

const DEBUG = process.env.TSIO_LOG === 'debug';

export class VirtioScsiDevice implements VirtioDevice {
  readonly features = SCSI_FEATURES;
  /**
   * INFLIGHT_SHMFD: a QEMU that reconnects vhost-user-scsi (8.2 and later) keeps in-flight records, so requests a
   * killed tsiod had popped are served again by the next one instead of timing out in the guest. Not CONFIG:
   * QEMU synthesizes virtio-scsi's config space.
   */
  readonly protocolFeatures = bit(ProtoFeature.INFLIGHT_SHMFD);
  readonly queueCount: number;
  /** Nexuses by virtio target. */
  private readonly nexuses = new Map<number, Nexus>();
  private readonly inflight = new Map<number, Inflight>();
  private pendingEvents: Buffer[] = [];
  private eventsMissed = false;
  private closed = false;

  constructor(
    readonly backend: VhostUserBackend,
    readonly controller: Controller,
    numQueues: number,
  ) {
    this.queueCount = VQ.REQUEST0 + numQueues;
    this.syncTargets(false);
    if (this.nexuses.size === 0) throw new Error('no target admits this controller\'s nexus');
  }

  private get name(): string {
    return this.backend.name;
  }

  ownKick(q: DeviceQueue): boolean {
    if (q.index !== VQ.EVENT) return false;
    this.deliverEvents();
    return true;
  }

  request(q: DeviceQueue, chain: Chain): void {
    if (q.index === VQ.CONTROL) this.control(q, chain);
    else this.command(q, chain);
  }

  reset(): void {
    this.pendingEvents = [];
    this.eventsMissed = false;
    for (const nx of this.nexuses.values()) nx.subscribed.clear();
    this.watchUnits();
  }

  // ---------- requests ----------

  /** A virtio-scsi command request: header, data-out | response, data-in. */
  private command(q: DeviceQueue, chain: Chain): void {
    if (chain.readLen < CmdReq.LENGTH || chain.writeLen < CmdResp.LENGTH) {
      log.warn(`vhost ${this.name}: queue ${q.index}: request ${chain.head} with a short header (${chain.readLen} readable, ${chain.writeLen} writable bytes)`);
      return this.failRequest(q, chain, Resp.FAILURE);
    }
    const hdr = chain.readable[0].length >= CmdReq.LENGTH ? chain.readable[0] : sglFlatten(chain.readable, 0, CmdReq.LENGTH);
    const addr = decodeLun(hdr, CmdReq.LUN);
    if (DEBUG) log.debug(`vhost ${this.name}: q${q.index} head ${chain.head} lun ${hdr.subarray(0, 8).toString('hex')} cdb ${hdr.subarray(CmdReq.CDB, CmdReq.CDB + 16).toString('hex')} out ${chain.readLen} in ${chain.writeLen}`);
    const session = addr === undefined || this.closed ? undefined : this.nexuses.get(addr.target)?.session;
    if (addr === undefined || session === undefined) {
      return this.failRequest(q, chain, Resp.BAD_TARGET);
    }
    const outLen = chain.readLen - CmdReq.LENGTH;
    const inLen = chain.writeLen - CmdResp.LENGTH;
    if (outLen > 0 && inLen > 0) return this.failRequest(q, chain, Resp.FAILURE); // bidirectional needs INOUT
    const cdbLen = cdbLength(hdr[CmdReq.CDB]);
    // Copied (the guest may rewrite its own) into the head's slot, which the next request on the head reuses.
    const cdb = q.cdbSlot(chain.head, cdbLen);
    hdr.copy(cdb, 0, CmdReq.CDB, CmdReq.CDB + cdbLen);
    const tag = (q.index << 16) | chain.head;
    const dataIn = inLen > 0 ? sglSlice(chain.writable, CmdResp.LENGTH, inLen) : undefined;
    const f: Inflight = { q, chain, idLo: hdr.readUInt32LE(CmdReq.ID), idHi: hdr.readUInt32LE(CmdReq.ID + 4), target: addr.target, lun: addr.lun, tag, dataIn };
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
    this.backend.complete(f.q, f.chain.head, CmdResp.LENGTH + c.dataInLength);
  }

  private failRequest(q: DeviceQueue, chain: Chain, response: number): void {
    if (chain.writeLen >= CmdResp.LENGTH) {
      const resp = Buffer.alloc(CmdResp.LENGTH);
      resp[CmdResp.RESPONSE] = response;
      sglCopyIn(chain.writable, 0, resp);
      this.backend.complete(q, chain.head, CmdResp.LENGTH);
    } else {
      this.backend.complete(q, chain.head, 0);
    }
  }

  // ---------- task management ----------

  /** Control queue: task management and asynchronous notification requests. */
  private control(q: DeviceQueue, chain: Chain): void {
    const req = chain.readLen >= 4 ? sglFlatten(chain.readable, 0, Math.min(chain.readLen, TmfReq.LENGTH)) : undefined;
    const type = req?.readUInt32LE(0);
    if (type === CtrlType.TMF && req!.length >= TmfReq.LENGTH && chain.writeLen >= TmfResp.LENGTH) {
      void this.tmf(q, chain, req!);
      return;
    }
    if ((type === CtrlType.AN_QUERY || type === CtrlType.AN_SUBSCRIBE) && chain.readLen >= AnReq.LENGTH && chain.writeLen >= AnResp.LENGTH) {
      sglCopyIn(chain.writable, 0, this.asyncNotification(type, req!));
      return this.backend.complete(q, chain.head, AnResp.LENGTH);
    }
    log.warn(`vhost ${this.name}: control request ${chain.head} of type ${type} malformed or unknown`);
    if (chain.writeLen >= 1) sglCopyIn(chain.writable, 0, Buffer.from([Resp.FAILURE]));
    this.backend.complete(q, chain.head, chain.writeLen >= 1 ? 1 : 0);
  }

  /**
   * AN_QUERY: the classes the LUN reports, of those asked for; AN_SUBSCRIBE: the same, and from now on an
   * ASYNC_NOTIFY event for each (virtio 1.2 5.6.6.2; a subscription replaces the last, 0 ends it).
   */
  private asyncNotification(type: number, req: Buffer): Buffer {
    const resp = Buffer.alloc(AnResp.LENGTH);
    const addr = decodeLun(req, AnReq.LUN);
    const nx = addr === undefined || this.closed ? undefined : this.nexuses.get(addr.target);
    const k = nx?.known.get(addr!.lun);
    if (nx === undefined || k === undefined) {
      resp[AnResp.RESPONSE] = nx === undefined ? Resp.BAD_TARGET : Resp.INCORRECT_LUN;
      return resp;
    }
    const actual = req.readUInt32LE(AnReq.EVENT_REQUESTED) & anClasses(k.lu);
    if (type === CtrlType.AN_SUBSCRIBE) {
      if (actual === 0) nx.subscribed.delete(addr!.lun);
      else nx.subscribed.set(addr!.lun, actual);
      this.watchUnits();
    }
    resp.writeUInt32LE(actual, AnResp.EVENT_ACTUAL);
    resp[AnResp.RESPONSE] = Resp.OK;
    return resp;
  }

  private async tmf(q: DeviceQueue, chain: Chain, req: Buffer): Promise<void> {
    const subtype = req.readUInt32LE(TmfReq.SUBTYPE);
    const addr = decodeLun(req, TmfReq.LUN);
    let response: number;
    const fn = TMF_FUNCTIONS[subtype];
    const session = addr === undefined || this.closed ? undefined : this.nexuses.get(addr.target)?.session;
    if (addr === undefined || session === undefined) response = Resp.BAD_TARGET;
    else if (fn === undefined) response = Resp.FUNCTION_REJECTED;
    else {
      let tag: number | undefined;
      if (fn === 'abort-task' || fn === 'query-task') {
        const lo = req.readUInt32LE(TmfReq.ID);
        const hi = req.readUInt32LE(TmfReq.ID + 4);
        for (const f of this.inflight.values()) {
          if (f.idLo === lo && f.idHi === hi && f.target === addr.target && f.lun === addr.lun) tag = f.tag;
        }
        if (tag === undefined) tag = -1;
      }
      const r = await session.taskManagement(fn, addr.lun, tag);
      response = TMF_RESPONSE[r];
      if (fn === 'lun-reset' || fn === 'it-nexus-reset' || fn === 'clear-task-set') log.info(`vhost ${this.name}: ${fn} on target ${addr.target} LUN ${addr.lun}: ${r}`);
    }
    sglCopyIn(chain.writable, 0, Buffer.from([response]));
    this.backend.complete(q, chain.head, TmfResp.LENGTH);
  }

  // ---------- events (hot-plug, capacity change, media) ----------

  /**
   * Event buffers stay in the avail ring until there is an event for them, so
   * a stopped ring never holds any (GET_VRING_BASE needs nothing in flight).
   * While events wait, the ring asks for a kick when the driver posts a buffer
   * (with EVENT_IDX it otherwise never hears of re-posted buffers).
   */
  private deliverEvents(): void {
    const q = this.backend.queues[VQ.EVENT];
    if (!q || !q.ready) return;
    do {
      while (this.pendingEvents.length > 0) {
        const chain = this.backend.pop(q);
        if (chain === undefined) break;
        if (chain.writeLen < Event.LENGTH) {
          log.warn(`vhost ${this.name}: event buffer ${chain.head} shorter than an event`);
          q.push(chain.head, 0);
          continue;
        }
        const ev = this.pendingEvents.shift()!;
        if (this.eventsMissed) {
          ev.writeUInt32LE((ev.readUInt32LE(Event.EVENT) | EVENTS_MISSED) >>> 0, Event.EVENT);
          this.eventsMissed = false;
        }
        sglCopyIn(chain.writable, 0, ev);
        q.push(chain.head, Event.LENGTH);
      }
    } while (this.pendingEvents.length > 0 && q.ready && q.armKick());
    this.backend.flush();
  }

  private postEvent(event: number, target: number, lun: number, reason: number): void {
    if (this.pendingEvents.length >= MAX_PENDING_EVENTS) {
      this.eventsMissed = true;
      return;
    }
    const ev = Buffer.alloc(Event.LENGTH);
    ev.writeUInt32LE(event, Event.EVENT);
    encodeLun(ev, Event.LUN, target, lun);
    ev.writeUInt32LE(reason, Event.REASON);
    this.pendingEvents.push(ev);
  }

  /**
   * Opens a nexus on each new target, closes those of targets gone, and (when
   * tell) posts what the guest must hear: LUNs appeared or removed, capacity
   * changed. A target appearing or leaving is its LUNs appearing or leaving.
   */
  private syncTargets(tell: boolean): void {
    const want = this.closed ? new Map<number, Tpg>() : this.controller.targets();
    const features = this.backend.features;
    const hotplug = tell && (features & bit(ScsiFeature.HOTPLUG)) !== 0n;
    const change = tell && (features & bit(ScsiFeature.CHANGE)) !== 0n;
    for (const [t, nx] of this.nexuses) {
      if (want.get(t) === nx.tpg && !nx.session.closed) continue;
      this.nexuses.delete(t);
      void nx.session.close();
      if (hotplug) for (const n of nx.known.keys()) this.postEvent(EventType.TRANSPORT_RESET, t, n, ResetReason.REMOVED);
    }
    for (const [t, tpg] of want) {
      let nx = this.nexuses.get(t);
      if (!nx) {
        let session: Session;
        try {
          session = tpg.openSession({ name: tpg.attributes.nexus !== undefined ? String(tpg.attributes.nexus) : tpg.target.wwn });
        } catch (e) {
          log.warn(`vhost ${this.name}: target ${t} (${tpg.portName}): ${(e as Error).message}`);
          continue;
        }
        nx = { tpg, session, known: new Map(), subscribed: new Map() };
        this.nexuses.set(t, nx);
      }
      const s = nx.session;
      for (const [n, k] of nx.known) {
        const itl = s.itls.get(n);
        if (!itl || itl.lu !== k.lu) {
          if (hotplug) this.postEvent(EventType.TRANSPORT_RESET, t, n, ResetReason.REMOVED);
          nx.known.delete(n);
          nx.subscribed.delete(n);
        } else if (itl.lu.blocks !== k.blocks) {
          // reason = ASC | ASCQ << 8: CAPACITY DATA HAS CHANGED (2Ah/09h)
          if (change) this.postEvent(EventType.PARAM_CHANGE, t, n, 0x2a | (0x09 << 8));
          k.blocks = itl.lu.blocks;
        }
      }
      for (const [n, itl] of s.itls) {
        if (nx.known.has(n)) continue;
        if (hotplug) this.postEvent(EventType.TRANSPORT_RESET, t, n, ResetReason.RESCAN);
        nx.known.set(n, { lu: itl.lu, blocks: itl.lu.blocks });
      }
    }
    this.watchUnits();
  }

  private readonly watchedLus = new Set<LogicalUnit>();
  private readonly onCapacity = (): void => this.refresh();
  private readonly watchedMedia = new Map<LogicalUnit, () => void>();

  /** Listens for capacity changes of exactly the units the guest sees, and medium changes of those it subscribed to. */
  private watchUnits(): void {
    const lus = new Set<LogicalUnit>();
    const media = new Set<LogicalUnit>();
    for (const nx of this.nexuses.values()) {
      for (const k of nx.known.values()) lus.add(k.lu);
      for (const n of nx.subscribed.keys()) media.add(nx.known.get(n)!.lu);
    }
    for (const lu of this.watchedLus) if (!lus.has(lu)) lu.capacityListeners.delete(this.onCapacity);
    for (const lu of lus) lu.capacityListeners.add(this.onCapacity);
    this.watchedLus.clear();
    for (const lu of lus) this.watchedLus.add(lu);
    for (const [lu, l] of this.watchedMedia) {
      if (media.has(lu)) continue;
      lu.mediumListeners.delete(l);
      this.watchedMedia.delete(lu);
    }
    for (const lu of media) {
      if (this.watchedMedia.has(lu)) continue;
      const l = (): void => this.mediumChanged(lu);
      lu.mediumListeners.add(l);
      this.watchedMedia.set(lu, l);
    }
  }

  /** A subscribed unit's medium changed: an ASYNC_NOTIFY event on every LUN of it subscribed to the media class. */
  private mediumChanged(lu: LogicalUnit): void {
    if (this.closed) return;
    for (const [t, nx] of this.nexuses) {
      for (const [n, classes] of nx.subscribed) {
        if (nx.known.get(n)?.lu === lu && (classes & AnClass.MEDIA_CHANGE) !== 0) this.postEvent(EventType.ASYNC_NOTIFY, t, n, AnClass.MEDIA_CHANGE);
      }
    }
    this.deliverEvents();
  }

  /** The controller's targets, their LUNs or their sizes changed: tell the guest (rescan, removed, capacity changed). */
  refresh(): void {
    if (this.closed) return;
    this.syncTargets(true);
    this.deliverEvents();
  }

  // ---------- end ----------

  async close(): Promise<void> {
    this.closed = true;
    const sessions = [...this.nexuses.values()].map((nx) => nx.session);
    this.nexuses.clear();
    this.watchUnits();
    // Requests still running finish into guest memory before the back end unmaps it, and before their nexus goes:
    // closing it first would abort them (I_T nexus loss), and a guest whose front-end reconnects to the next
    // tsiod would see those as ABORTED, I/O errors, instead of done.
    await this.drain(10_000);
    await Promise.all(sessions.map((s) => s.close()));
    await this.drain(5000);
  }

  private async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.inflight.size > 0 && Date.now() < deadline) await new Promise<void>((r) => setTimeout(r, 1));
  }
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
