// The I/O threads as the main thread holds them (io_threads > 1): it starts
// them, places home groups on them (placement.ts), sends each its part of every
// change and waits for all to acknowledge, taking every part back if one
// fails, so a change stays all or nothing. Control views and metrics are asked
// of the threads; the main thread keeps only the configuration.

import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { DaemonConfig, TsioConfig } from '../config/config';
import { log } from '../../src/core/log';
import { EMPTY_CONFIG, soKey, type Dataplane, type ReconcileReport, type ThreadAnswer } from './reconcile';
import { iscsiRoutes, place, vhostEndpoint, withoutArrivals, type IscsiRoutes, type Placement } from './placement';
import type { IoHandoff, IoReady, IoReconciled, IoReply, IoRequest, IoThreadData } from './io-protocol';
import type { CarriedUnit } from './carry';
import type { MetricPart } from './metrics';

/** Most I/O threads io_threads: auto gives when io_threads_max is not set. */
export const IO_THREADS_MAX_DEFAULT = 8;

/** The number of I/O threads a configuration asks for (default auto; 1: no I/O thread, the main loop serves everything). */
export function ioThreadCount(d: DaemonConfig | undefined, cores = availableParallelism()): number {
  const n = d?.io_threads ?? 'auto';
  return n === 'auto' ? Math.max(1, Math.min(cores, d?.io_threads_max ?? IO_THREADS_MAX_DEFAULT)) : n;
}

type Body = IoRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

class IoThread {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: IoReply) => void }>();
  /** The part of the configuration this thread serves now. */
  part: TsioConfig = EMPTY_CONFIG;
  stopping = false;

  constructor(
    readonly index: number,
    readonly worker: Worker,
    readonly tid: number,
    onHandoff: (m: IoHandoff) => void,
  ) {
    worker.on('message', (r: IoReply | IoHandoff) => {
      if ('handoff' in r) return onHandoff(r);
      const w = this.waiting.get(r.id);
      this.waiting.delete(r.id);
      w?.resolve(r);
    });
  }

  ask(body: Body): Promise<IoReply> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, { resolve });
      this.worker.postMessage({ ...body, id });
    });
  }

  async call(body: Body): Promise<unknown> {
    const r = await this.ask(body);
    if (r.error) throw new Error(r.error.message);
    return r.result;
  }
}

export class IoThreads implements Dataplane {
  private homes = new Map<string, number>();
  private routes: IscsiRoutes = { owners: {}, tpgs: [] };

  private constructor(readonly threads: IoThread[]) {}

  /** An iSCSI connection one thread accepted for a target of another: on to that one (fabrics/iscsi/handoff.ts). */
  private static forward(threads: IoThread[], { handoff }: IoHandoff): void {
    const t = threads[handoff.to];
    t?.call({ kind: 'adopt', handoff }).catch((e) => log.warn(`I/O thread ${handoff.to}: could not take an iSCSI connection: ${(e as Error).message}`));
  }

  /** Every thread's iSCSI routes; `relisten` once the parts are applied (a portal's listener may change threads). */
  private sendRoutes(routes: IscsiRoutes, relisten: boolean): Promise<unknown[]> {
    return all(this.threads.map((t) => t.call({ kind: 'routes', routes, relisten })));
  }

  /** Starts count threads; resolves once each runs. A thread that dies takes the daemon with it (its LUs are gone). */
  static async start(count: number, stateDir: string, pollMaxNs: number): Promise<IoThreads> {
    const started: IoThread[] = [];
    const threads = await Promise.all(Array.from({ length: count }, (_, index) => {
      const data: IoThreadData = { index, count, stateDir, logLevel: log.level(), priorityPrefix: log.priorityPrefix(), pollMaxNs };
      // The addon's fds (sockets, eventfds) are closed with fs.closeSync: fd tracking would warn at each.
      const worker = new Worker(join(__dirname, 'io-worker.js'), { workerData: data, name: `tsio-io${index}`, trackUnmanagedFds: false });
      return new Promise<IoThread>((resolve, reject) => {
        worker.once('error', reject);
        worker.once('message', (m: IoReady) => {
          worker.off('error', reject);
          const t = new IoThread(index, worker, m.tid, (h) => IoThreads.forward(started, h));
          worker.on('error', (e) => {
            log.error(`I/O thread ${index} failed: ${e.stack ?? e.message}`);
            process.exit(1);
          });
          worker.on('exit', (code) => {
            if (t.stopping) return;
            log.error(`I/O thread ${index} exited (${code})`);
            process.exit(1);
          });
          resolve(t);
        });
      });
    }));
    started.push(...threads);
    return new IoThreads(threads);
  }

  async reconcile(_cur: TsioConfig, next: TsioConfig): Promise<ReconcileReport> {
    const p: Placement = place(next, this.threads.length, this.homes);
    await this.refuseConnectedVhost(p);
    const before = this.threads.map((t) => t.part);
    const routes = iscsiRoutes(next, p.homes, this.routes.owners);
    // Storage objects changing threads: their state leaves with them (carry.ts) and comes back on a rollback.
    const handOver = [...p.moving].filter((m) => m.startsWith('so ')).map((m) => m.slice(3));
    const carried: Record<string, CarriedUnit> = {};
    const send = async (t: IoThread, part: TsioConfig): Promise<ReconcileReport | undefined> => {
      if (same(t.part, part)) return undefined;
      const r = (await t.call({ kind: 'reconcile', config: part, handOver, adopt: carried })) as IoReconciled;
      t.part = part;
      Object.assign(carried, r.handedOver);
      return r.report;
    };
    try {
      await this.sendRoutes(routes, false);
      // Endpoints changing threads are released where they were before their new home takes them.
      if (p.moving.size > 0) await all(this.threads.map((t, i) => send(t, withoutArrivals(p.parts[i], p.moving))));
      const reports = await all(this.threads.map((t, i) => send(t, p.parts[i])));
      this.homes = p.homes;
      this.routes = routes;
      await this.sendRoutes(routes, true);
      if (handOver.length > 0) log.info(`I/O threads: re-homed live: ${[...p.moving].map((m) => `${m} -> I/O thread ${p.homes.get(m)}`).join(', ')}`);
      return mergeReports(reports.filter((r): r is ReconcileReport => r !== undefined));
    } catch (e) {
      // Arrivals are released first, so a unit handed over is reopened where it was with its state.
      if (p.moving.size > 0) await Promise.all(this.threads.map((t, i) => send(t, withoutArrivals(before[i], new Set([...p.moving].filter((m) => this.homes.get(m) === i)))).catch(() => undefined)));
      await Promise.all(this.threads.map((t, i) => send(t, before[i]).catch((e2) => log.warn(`I/O thread ${i}: could not take back a failed change: ${(e2 as Error).message}`))));
      await this.sendRoutes(this.routes, true).catch((e2) => log.warn(`I/O threads: could not take back the iSCSI routes: ${(e2 as Error).message}`));
      throw e;
    }
  }

  /**
   * A vhost controller a front-end is connected to does not change threads: its socket would close under the
   * front-end, and a vhost-user front-end (QEMU without reconnect) does not come back. Refused, named.
   */
  private async refuseConnectedVhost(p: Placement): Promise<void> {
    for (const key of p.moving) {
      const from = this.homes.get(key);
      const v = vhostEndpoint(key);
      if (!v || from === undefined) continue;
      const [n] = (await this.threads[from].call({ kind: 'frontends', endpoints: [key] })) as number[];
      if (n === 0) continue;
      throw new Error(`with io_threads > 1, this change joins the storage of vhost controller ${v.socket} (target ${v.wwn}) with storage served on I/O thread ${p.homes.get(key)}, so the controller would move from I/O thread ${from}; ${n} front-end${n === 1 ? ' is' : 's are'} connected to it and would be cut off: disconnect ${n === 1 ? 'it' : 'them'} first, or restart tsiod with the new configuration`);
    }
  }

  /** A control method run on every thread's part, answers in thread order. */
  async invoke(method: string, params: Record<string, unknown>, only?: number): Promise<ThreadAnswer[]> {
    const to = only === undefined ? this.threads : [this.threads[only]];
    const replies = await Promise.all(to.map((t) => t.ask({ kind: 'method', method, params })));
    return replies.map((r) => (r.error ? { error: r.error } : { result: r.result }));
  }

  owner(p: Record<string, unknown>): number | undefined {
    if (typeof p.path === 'string') return this.homes.get(`so ${p.path}`);
    // Thread i of n hands out session ids i+1, i+1+n, ... (io-worker.ts).
    if (typeof p.id === 'number' && Number.isInteger(p.id) && p.id > 0) return (p.id - 1) % this.threads.length;
    if (typeof p.wwn === 'string') {
      const wwn = p.wwn.toLowerCase();
      const i = this.threads.findIndex((t) => t.part.targets.some((x) => x.wwn.toLowerCase() === wwn && x.tpgs.some((tpg) => tpg.tag === p.tag)));
      return i < 0 ? undefined : i;
    }
    return undefined;
  }

  metrics(): Promise<MetricPart[]> {
    return Promise.all(this.threads.map((t) => t.call({ kind: 'metrics' }) as Promise<MetricPart>));
  }

  /** Which thread serves what: its kernel thread id and its part's storage objects and endpoints. */
  describe(): { index: number; tid: number; storage_objects: string[]; targets: string[] }[] {
    return this.threads.map((t) => ({ index: t.index, tid: t.tid, storage_objects: t.part.storage_objects.map(soKey), targets: t.part.targets.flatMap((x) => x.tpgs.map((tpg) => `${x.fabric}/${x.wwn}/tpg${tpg.tag}`)) }));
  }

  /** Closes every service and store on every thread, then stops them. */
  async close(): Promise<void> {
    await Promise.all(this.threads.map(async (t) => {
      await t.call({ kind: 'close' });
      t.stopping = true;
      await t.worker.terminate();
    }));
  }
}

const same = (a: TsioConfig, b: TsioConfig): boolean => JSON.stringify({ ...a, source: '' }) === JSON.stringify({ ...b, source: '' });

/** Every promise settled; the first failure thrown once all are (so a rollback sees every thread's state). */
async function all<T>(ps: Promise<T>[]): Promise<T[]> {
  const r = await Promise.allSettled(ps);
  const bad = r.find((x) => x.status === 'rejected');
  if (bad) throw (bad as PromiseRejectedResult).reason;
  return r.map((x) => (x as PromiseFulfilledResult<T>).value);
}

function mergeReports(rs: ReconcileReport[]): ReconcileReport {
  const u = (k: keyof ReconcileReport) => [...new Set(rs.flatMap((r) => r[k]))];
  return { created: u('created'), changed: u('changed'), removed: u('removed'), warnings: u('warnings') };
}
