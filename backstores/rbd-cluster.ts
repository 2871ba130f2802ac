// Connections to Ceph clusters, one per (conf, client, keyring, timeout) per
// process and shared by every rbd storage object using it (as SPDK's cluster
// registry does): a gateway is one RADOS client, so it appears once to the
// cluster, holds one address to fence, and pays one set of librados threads.

import { rbdConnect, type RadosCluster } from '../native';

export interface ClusterParams {
  /** ceph.conf path; undefined: librados' default search. */
  conf?: string;
  /** client.<clientId>. */
  clientId: string;
  /** A keyring file; undefined: the one ceph.conf names. */
  keyring?: string;
  /** Seconds an operation waits on the cluster before it fails (OSD and mon ops, the connect itself). */
  timeout: number;
}

interface Entry {
  cluster: Promise<RadosCluster>;
  users: number;
}

const connections = new Map<string, Entry>();
/** Fenced connections some storage objects still use (their images not yet moved to a new one): users left. */
const retired = new Map<RadosCluster, number>();

function keyOf(p: ClusterParams): string {
  return JSON.stringify([p.conf ?? null, p.clientId, p.keyring ?? null, p.timeout]);
}

/**
 * The librados settings every connection gets. rbd_cache off: a write is
 * complete only once the OSDs have it, which makes FUA free and keeps several
 * gateways coherent. Zero-copy writes: librbd sends the command's own buffers
 * instead of copying them first (the buffers stay untouched until completion).
 * The op timeouts bound how long a command waits for an OSD or mon that is
 * down before it fails; they must stay above the OSD heartbeat grace (20 s)
 * for a flapping OSD not to fail commands that would have completed.
 *
 * Submission runs on the caller's thread (rbd_non_blocking_aio off): librbd
 * then goes down to the objecter and the messenger's queue on the event loop
 * instead of handing every operation to one of its io_context threads first,
 * which costs a thread wake-up per operation (CPU and, at queue depth 1,
 * latency). Nothing on that path waits for the cluster (a lock, a refresh or
 * a down OSD queue the operation and return) except the objecter's throttle
 * (1024 operations, 100 MiB in flight by default), which would block the
 * loop and so every LU of the gateway: it is off (0, no limit). What is in
 * flight is bounded by the fabrics (queue depths, burst lengths), whose
 * buffers librbd uses in place.
 */
function settings(p: ClusterParams): [string, string][] {
  const t = String(p.timeout);
  const out: [string, string][] = [
    ['rbd_cache', 'false'],
    ['rbd_disable_zero_copy_writes', 'false'],
    ['rbd_non_blocking_aio', 'false'],
    ['objecter_inflight_ops', '0'],
    ['objecter_inflight_op_bytes', '0'],
    ['rados_osd_op_timeout', t],
    ['rados_mon_op_timeout', t],
    ['client_mount_timeout', t],
  ];
  if (p.keyring !== undefined) out.push(['keyring', p.keyring]);
  return out;
}

/** A shared connection; pair every call with release(). */
export async function acquireCluster(p: ClusterParams): Promise<RadosCluster> {
  const key = keyOf(p);
  let e = connections.get(key);
  if (e === undefined) {
    const cluster = rbdConnect({ clientId: p.clientId, conf: p.conf, options: settings(p) });
    e = { cluster, users: 0 };
    connections.set(key, e);
    // A failed connect is not kept: the next storage object tries again.
    cluster.catch(() => {
      if (connections.get(key) === e) connections.delete(key);
    });
  }
  e.users++;
  try {
    return await e.cluster;
  } catch (err) {
    e.users--;
    throw err;
  }
}

/**
 * A user of a fenced (blocklisted) connection moves to a new one with the same params: the first
 * to move makes it (a new client, a new address); the old one is shut down once its last user moved.
 */
export async function renewCluster(p: ClusterParams, old: RadosCluster): Promise<RadosCluster> {
  const key = keyOf(p);
  const e = connections.get(key);
  if (e !== undefined && (await e.cluster.catch(() => undefined)) === old) {
    connections.delete(key);
    retired.set(old, e.users);
  }
  const fresh = await acquireCluster(p);
  await releaseRetired(old);
  return fresh;
}

async function releaseRetired(c: RadosCluster): Promise<boolean> {
  const n = retired.get(c);
  if (n === undefined) return false;
  if (n > 1) retired.set(c, n - 1);
  else {
    retired.delete(c);
    await c.shutdown().catch(() => undefined);
  }
  return true;
}

/** Drops one use (of c, when given: it may be a fenced one); the last one shuts the connection down (off the loop). */
export async function releaseCluster(p: ClusterParams, c?: RadosCluster): Promise<void> {
  if (c !== undefined && (await releaseRetired(c))) return;
  const key = keyOf(p);
  const e = connections.get(key);
  if (e === undefined || --e.users > 0) return;
  connections.delete(key);
  await (await e.cluster).shutdown();
}
