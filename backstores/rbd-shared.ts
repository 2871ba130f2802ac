// The records gateways of one rbd image share (src/core/backstore.ts
// SharedRecord): one RADOS object per record, `tsio.<name>.<image>` in the
// image's pool and namespace. Reads carry the object's version; a write is a
// compare-and-swap on it (assert_version, or create-exclusive for the first);
// every gateway watches the object, and a notify resolves once every watcher
// acknowledged. A gateway that does not acknowledge in time is fenced: its
// address (published in the object's xattr gw.<gid> when it started
// watching) is blocklisted, so it can no longer write for an initiator whose
// registration it did not hear was preempted. All calls are librados aio,
// drained in batches from one eventfd on the loop (native/rados.cc).
// A gateway that finds itself fenced (an operation or watch fails with
// EBLOCKLISTED) tells its records' listeners and its backstore (onFenced),
// which makes a new client; reopen() then watches again with it.

import os from 'node:os';

import type { SharedRecord } from '../src/core/backstore';
import { log } from '../src/core/log';
import { FdWatcher, radosObjects, type RadosCluster, type RadosObjects } from '../native';

const { ENOENT, ERANGE, EOVERFLOW, EEXIST, ETIMEDOUT, ENODATA } = os.constants.errno;
/** Linux ESHUTDOWN, librados' EBLOCKLISTED: this client was fenced. */
const EBLOCKLISTED = 108;
/** How long a notify waits for every gateway's acknowledgement before it fences the silent ones. */
const NOTIFY_TIMEOUT_MS = 5000;
/** How long the OSD keeps a watch whose client stopped answering (a killed gateway). */
const WATCH_TIMEOUT_S = 10;
/** How long a fenced gateway stays blocklisted. */
const FENCE_SECONDS = 3600;

interface Done {
  result: number;
  version: number;
  data: ReturnType<RadosObjects['take']>;
}

/** Every record of one image, over one ioctx of its own. */
export class RadosRecords {
  private objects: Promise<RadosObjects> | undefined;
  private watcher: FdWatcher | undefined;
  private next = 1;
  private readonly pending = new Map<number, { resolve(d: Done): void }>();
  private readonly listeners = new Map<number, RadosRecord>();
  private readonly made = new Map<string, RadosRecord>();
  private closed = false;
  /** This client was fenced: set once, until reopen(). */
  private fenced = false;
  /** Called once when this client is found fenced (the backstore makes a new one). */
  onFenced: (() => void) | undefined;

  constructor(
    public cluster: RadosCluster,
    private readonly pool: string,
    private readonly namespace: string,
    private readonly image: string,
    readonly what: string,
  ) {}

  record(name: string): SharedRecord {
    const oid = `tsio.${name}.${this.image}`;
    let r = this.made.get(oid);
    if (r === undefined) this.made.set(oid, (r = new RadosRecord(this, oid)));
    return r;
  }

  /** Gateways (client gids) this client fenced already: a second blocklisting would only cost a mon commit. */
  readonly fencedGateways = new Set<string>();
  /** Bumped by reopen(): work begun with an older client stops. */
  epoch = 0;

  /** An operation or a watch failed with EBLOCKLISTED: tells every record's listener, then the backstore. */
  noticeFenced(): void {
    if (this.fenced || this.closed) return;
    this.fenced = true;
    log.warn(`rbd ${this.what}: this gateway's client (client.${this.cluster.instanceId()}, ${this.cluster.addresses()}) is fenced (blocklisted)`);
    for (const r of this.made.values()) r.fencedNow();
    this.onFenced?.();
  }

  /** After close(): the same records over a new client, watched again; each listener then reads its record again. */
  async reopen(cluster: RadosCluster): Promise<void> {
    this.cluster = cluster;
    this.objects = undefined;
    this.watcher = undefined;
    this.closed = false;
    this.fenced = false;
    this.epoch++;
    for (const r of this.made.values()) await r.relisten();
  }

  private open(): Promise<RadosObjects> {
    if (this.closed) return Promise.reject(new Error(`rbd ${this.what}: closed`));
    this.objects ??= radosObjects(this.cluster, this.pool, this.namespace).then((o) => {
      this.watcher = new FdWatcher(o.fd, () => this.drain(o));
      return o;
    });
    return this.objects;
  }

  /** Starts one operation; resolves with its result (-errno), version and data. */
  async op(start: (o: RadosObjects, id: number) => void): Promise<Done> {
    const o = await this.open();
    const id = this.next;
    this.next = id >= 0x7fffffff ? 1 : id + 1;
    return new Promise<Done>((resolve) => {
      start(o, id);
      this.pending.set(id, { resolve });
    });
  }

  private drain(o: RadosObjects): void {
    try {
      let n: number;
      do {
        n = o.poll();
        for (let i = 0; i < n; i++) {
          const id = o.ids[i];
          const p = this.pending.get(id);
          const data = o.take(id);
          if (p === undefined) continue;
          this.pending.delete(id);
          if (o.results[i] === -EBLOCKLISTED) this.noticeFenced();
          p.resolve({ result: o.results[i], version: o.versions[i], data });
        }
      } while (n === o.ids.length);
      for (const e of o.events()) {
        const rec = this.listeners.get(e.cookie);
        if (rec === undefined) continue;
        if ('error' in e && e.error === -EBLOCKLISTED) this.noticeFenced();
        else if ('error' in e) rec.lost(e.error);
        else rec.message(o, e.notifyId, e.cookie, e.notifier, e.data);
      }
    } catch (err) {
      log.error(`rbd ${this.what}: draining shared-state completions failed`, err);
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  listening(cookie: number, rec: RadosRecord): void {
    this.listeners.set(cookie, rec);
  }

  forget(cookie: number): void {
    this.listeners.delete(cookie);
  }

  /** Stops every watch and drops the ioctx once nothing is in flight. */
  async close(): Promise<void> {
    if (this.closed || this.objects === undefined) {
      this.closed = true;
      return;
    }
    const records = new Set(this.listeners.values());
    for (const r of records) await r.stop().catch(() => undefined);
    this.closed = true;
    const o = await this.objects.catch(() => undefined);
    if (o === undefined) return;
    while (this.pending.size !== 0) await new Promise((r) => setTimeout(r, 10));
    this.watcher?.stop();
    await o.close();
  }
}

class RadosRecord implements SharedRecord {
  private cookie: number | undefined;
  private onMessage: ((msg: Buffer) => Promise<void>) | undefined;
  private onResync: (() => void) | undefined;
  private onFenced: (() => void) | undefined;

  constructor(
    private readonly set: RadosRecords,
    readonly oid: string,
  ) {}

  async read(): Promise<{ version: number; data: Buffer | undefined }> {
    const d = await this.set.op((o, id) => o.read(id, this.oid));
    if (d.result === -ENOENT) return { version: 0, data: undefined };
    if (d.result < 0) throw this.error(d.result, 'read');
    return { version: d.version, data: d.data as Buffer };
  }

  async swap(version: number, data: Buffer): Promise<number | undefined> {
    const d = await this.set.op((o, id) => o.swap(id, this.oid, version, data));
    if (d.result === -ERANGE || d.result === -EOVERFLOW || d.result === -EEXIST) return undefined;
    if (d.result < 0) throw this.error(d.result, 'write');
    return d.version;
  }

  get self(): string {
    return String(this.set.cluster.instanceId());
  }

  async notify(msg: Buffer): Promise<string[]> {
    const d = await this.set.op((o, id) => o.notify(id, this.oid, msg, NOTIFY_TIMEOUT_MS));
    if (d.result === -ENOENT) return []; // nobody watches a record that does not exist
    if (d.result < 0 && d.result !== -ETIMEDOUT) throw this.error(d.result, 'notify');
    const reply = d.data as { acks: string[]; timeouts: string[] } | undefined;
    const silent = (reply?.timeouts ?? []).filter((g) => g !== this.self);
    for (const gid of silent) await this.fence(gid);
    return reply?.acks ?? [];
  }

  /** Blocklists the gateway client.<gid> (its address from gw.<gid>). */
  async fence(gid: string): Promise<void> {
    if (this.set.fencedGateways.has(gid)) return;
    const d = await this.set.op((o, id) => o.getXattr(id, this.oid, `gw.${gid}`));
    if (d.result === -ENODATA || d.result === -ENOENT) {
      log.warn(`rbd ${this.set.what}: gateway client.${gid} published no address on ${this.oid} to fence`);
      return;
    }
    if (d.result < 0) throw this.error(d.result, `read gw.${gid}`);
    const addr = (d.data as Buffer).toString();
    log.warn(`rbd ${this.set.what}: fencing gateway client.${gid} (${addr}), silent on ${this.oid}`);
    await this.set.cluster.blocklistAdd(addr, FENCE_SECONDS);
    this.set.fencedGateways.add(gid);
  }

  async listen(onMessage: (msg: Buffer) => Promise<void>, onResync: () => void, onFenced?: () => void): Promise<void> {
    this.onMessage = onMessage;
    this.onResync = onResync;
    this.onFenced = onFenced;
    await this.join();
  }

  fencedNow(): void {
    this.onFenced?.();
  }

  /** With the set's new client: listens again as before (a new address published), then the listener reloads. */
  async relisten(): Promise<void> {
    if (this.onMessage === undefined) return;
    this.cookie = undefined;
    await this.join();
    this.onResync?.();
  }

  private async join(): Promise<void> {
    await this.announce();
    await this.watch();
  }

  /** The client (gid) whose address is published on the record already. */
  private announced: string | undefined;

  async announce(): Promise<void> {
    const gid = String(this.set.cluster.instanceId());
    if (this.announced === gid) return;
    // The object must exist to be watched; the first gateway makes it empty (a racing one finds it made).
    const made = await this.set.op((o, id) => o.swap(id, this.oid, 0, Buffer.alloc(0)));
    if (made.result < 0 && made.result !== -EEXIST) throw this.error(made.result, 'create');
    const pub = await this.set.op((o, id) => o.setXattr(id, this.oid, `gw.${gid}`, this.set.cluster.addresses()));
    if (pub.result < 0) throw this.error(pub.result, 'publish the gateway address');
    this.announced = gid;
  }

  /** An empty notify is a probe: every watching gateway acknowledges it at once. */
  async peers(): Promise<string[]> {
    return (await this.notify(Buffer.alloc(0))).filter((g) => g !== this.self);
  }

  private async watch(): Promise<void> {
    const w = await this.set.op((o, id) => o.watch(id, this.oid, WATCH_TIMEOUT_S));
    if (w.result < 0) throw this.error(w.result, 'watch');
    this.cookie = w.version;
    this.set.listening(w.version, this);
  }

  /** A notify from any gateway, this one included (acknowledged at once). */
  message(o: RadosObjects, notifyId: bigint, cookie: number, notifier: string, data: Buffer): void {
    const ack = () => {
      try {
        o.ack(this.oid, notifyId, cookie);
      } catch (e) {
        log.warn(`rbd ${this.set.what}: acknowledging a notify on ${this.oid} failed`, e);
      }
    };
    if (notifier === this.self || this.onMessage === undefined || data.length === 0) return ack();
    this.onMessage(data).then(ack, (e) => {
      log.error(`rbd ${this.set.what}: handling a notify on ${this.oid} failed`, e);
      ack();
    });
  }

  /** The watch broke (a reconnect, an OSD change): watch again and let the owner reload. */
  lost(err: number): void {
    log.warn(`rbd ${this.set.what}: the watch on ${this.oid} was lost (${err}); watching again`);
    const old = this.cookie;
    if (old !== undefined) this.set.forget(old);
    this.cookie = undefined;
    const epoch = this.set.epoch;
    void (async () => {
      if (old !== undefined) await this.set.op((o, id) => o.unwatch(id, this.oid, old)).catch(() => undefined);
      for (let i = 0; !this.set.isClosed && this.set.epoch === epoch; i++) {
        try {
          await this.watch();
          break;
        } catch (e) {
          if (i % 10 === 0) log.warn(`rbd ${this.set.what}: watching ${this.oid} again failed`, e);
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      if (this.set.epoch === epoch && !this.set.isClosed) this.onResync?.();
    })();
  }

  async stop(): Promise<void> {
    const c = this.cookie;
    this.cookie = undefined;
    if (c === undefined) return;
    this.set.forget(c);
    await this.set.op((o, id) => o.unwatch(id, this.oid, c));
  }

  private error(r: number, what: string): Error {
    const name = Object.entries(os.constants.errno).find(([, v]) => v === -r)?.[0] ?? String(r);
    return new Error(`rbd ${this.set.what}: ${what} of ${this.oid} failed: ${name}`);
  }
}
