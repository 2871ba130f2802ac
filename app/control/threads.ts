// Control views of live objects with io_threads > 1: the objects live on the
// I/O threads, so such a method runs there, each thread on its own part (the
// same method, the same views), and its answers are put together here. The
// configuration, and every change to it, stays on the main thread.

import type { MethodDef } from './context';
import type { ControlContext } from './context';
import type { ThreadAnswer } from '../daemon/reconcile';
import { mediaMethods } from './methods/media';
import { reservationMethods } from './methods/reservations';
import { RpcError, type Obj, type Params } from './params';

type Merge = ((answers: ThreadAnswer[], main: () => Promise<unknown>) => Promise<unknown> | unknown) & { owned?: boolean };

const results = (a: ThreadAnswer[]): unknown[] => a.filter((x) => x.error === undefined).map((x) => x.result);

/** A thread's failure, as it would have been had the method run on main. */
function raise(e: NonNullable<ThreadAnswer['error']>): never {
  throw e.code !== undefined ? new RpcError(e.code, e.message) : new Error(e.message);
}

/** Every thread's answer must be there; a list from each, one list. */
const concat = (by: (o: Obj) => number | string): Merge => (a) => {
  const bad = a.find((x) => x.error);
  if (bad) raise(bad.error!);
  return (results(a) as Obj[][]).flat().sort((x, y) => (by(x) < by(y) ? -1 : by(x) > by(y) ? 1 : 0));
};

/** One object lives on one thread: that thread's answer (asked alone when main knows which), or the first thread's refusal. */
const first: Merge = Object.assign((a: ThreadAnswer[]) => {
  const ok = a.find((x) => x.error === undefined);
  if (ok) return ok.result;
  raise(a[0].error!);
}, { owned: true });

const MERGES: Record<string, Merge> = {
  // Each session tagged with the thread serving it (its target's home).
  'sessions.list': (a, main) => concat((s) => s.id as number)(a.map((x, thread) => (x.error ? x : { result: (x.result as Obj[]).map((s) => ({ ...s, thread })) })), main),
  'storage_objects.list': concat((s) => s.path as string),
  'sessions.get': first,
  'storage_objects.get': first,
  'acls.get': first,
  'tpgs.get': first,
  ...Object.fromEntries(Object.keys({ ...mediaMethods, ...reservationMethods }).map((k) => [k, first])),
  'statistics': (a) => {
    const r = results(a) as Obj[];
    const cat = (k: string) => r.flatMap((x) => x[k] as Obj[]);
    return { storage_objects: cat('storage_objects'), luns: cat('luns'), sessions: cat('sessions').sort((x, y) => (x.id as number) - (y.id as number)) };
  },
  'status': async (a, main) => ({ ...((await main()) as Obj), sessions: (results(a) as Obj[]).reduce((n, x) => n + (x.sessions as number), 0) }),
  'tree': async (a, main) => {
    const out = (await main()) as Obj & { runtime: Obj };
    for (const r of results(a) as { runtime: Obj }[]) {
      Object.assign(out.runtime.storage_objects as Obj, r.runtime.storage_objects);
      Object.assign(out.runtime.tpgs as Obj, r.runtime.tpgs);
    }
    return out;
  },
};

/** Runs a method; one that reads live objects runs on the I/O threads when there are any. */
export async function runMethod(method: string, def: MethodDef, p: Params, c: ControlContext): Promise<unknown> {
  const merge = MERGES[method];
  const threads = c.live.threads;
  if (!threads || !merge) return def.run(p, c);
  const only = merge.owned ? threads.owner(p) : undefined;
  return merge(await threads.invoke(method, p, only), async () => def.run(p, c));
}
