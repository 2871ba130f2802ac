// The iSCSI fabric module: serves a target on every portal of its TPGs,
// pings idle initiators, shuts down so that initiators just reconnect (no new
// login or command, those in flight end, then a logout request), and reports
// its buffer pools to the daemon's metrics.

import type { FabricModule, FabricService, MetricSample } from '../../src/core/fabric';
import type { Root } from '../../src/model/root';
import type { Target } from '../../src/model/target';
import { log } from '../../src/core/log';
import { NO_TAG } from './pdu';
import { portalKey, portalRegistry } from './portal-registry';
import { sessionRegistry } from './session-registry';
import { rxPool, SLAB_BYTES } from './rx-slab';
import { dataInPool } from './data-in-pool';
import { loginCounts, REFUSAL_REASONS } from './login-counts';

/** Seconds the Async logout request gives initiators before their connections are dropped. */
const LOGOUT_GRACE_S = 2;
/** Seconds a shutdown waits for commands in flight (a write whose initiator stalls its data) before the logout request. */
const DRAIN_S = 3;

/**
 * Milliseconds a closing portal leaves its connections to end before dropping them: the last Logout Response
 * leaves, and on a portal several targets share, the other targets' sessions drain and log out.
 */
const FLUSH_MS = (DRAIN_S + LOGOUT_GRACE_S + 1) * 1000;

/** Resolves when p does or after `seconds`, whichever is first. */
const bounded = (p: Promise<unknown>, seconds: number): Promise<unknown> =>
  Promise.race([p, new Promise((r) => setTimeout(r, seconds * 1000).unref())]);

async function serve(target: Target, root: Root): Promise<FabricService> {
  const refresh = async (): Promise<void> => {
    const want = new Set<string>();
    for (const tpg of target.tpgs.values()) {
      for (const pt of tpg.portals) {
        want.add(`${tpg.tag}|${portalKey(pt.ip_address, pt.port)}`);
        await portalRegistry.attach(tpg, pt.ip_address, pt.port, root);
      }
    }
    for (const [tpg, p] of portalRegistry.attached(target)) {
      if (!want.has(`${tpg.tag}|${portalKey(p.ip, p.port)}`) || target.tpgs.get(tpg.tag) !== tpg) await portalRegistry.detach(tpg, p);
    }
    // Sessions the configuration no longer admits (TPG disabled, demo mode turned off without an ACL) end as
    // on ACL removal: closing the nexus makes the session ask its initiator to log out (IscsiSession.revoke).
    for (const s of sessionRegistry.values()) {
      if (s.discovery || s.tpg.target !== target) continue;
      if (!s.tpg.enabled || s.tpg.lunMapFor(s.initiatorName) === undefined) void s.core?.close();
    }
  };
  try {
    await refresh();
  } catch (e) {
    // A portal could not listen (its port in use): the ones attached already let go of this target, whose caller
    // takes the change back; else a later login there would still find this target's TPG, deleted by then.
    for (const [tpg, p] of portalRegistry.attached(target)) await portalRegistry.detach(tpg, p);
    throw e;
  }
  ensurePinger();
  return {
    refresh,
    // Bounded whatever initiators do: DRAIN_S, then LOGOUT_GRACE_S, then connections are dropped.
    async close() {
      // No new connection or login (initiators retry theirs until the target is back), no new command.
      const stopped = portalRegistry.attached(target).map(([tpg, p]) => portalRegistry.release(tpg, p));
      const mine = [...sessionRegistry.values()].filter((s) => s.tpg.target === target);
      for (const s of mine) if (s.discovery) s.close('target shut down');
      const normal = mine.filter((s) => !s.discovery);
      await bounded(Promise.all(normal.map((s) => s.quiesce())), DRAIN_S);
      await bounded(Promise.all(normal.map((s) => s.requestLogout(LOGOUT_GRACE_S))), LOGOUT_GRACE_S + 0.5);
      for (const s of mine) s.close('target shut down');
      // A portal other targets listed too is closed by the last of them: its connections are theirs to end first.
      for (const p of stopped) await p?.close(FLUSH_MS);
    },
  };
}

let pinger: NodeJS.Timeout | undefined;

/**
 * Once a second: ping initiators idle for nopin_timeout, drop those silent for nopin_response_timeout, and end
 * commands whose solicited Data-Out stalled for dataout_timeout (scsi-commands.ts checkDataOut).
 */
function ensurePinger(): void {
  if (pinger) return;
  pinger = setInterval(() => {
    const now = Date.now();
    for (const s of sessionRegistry.values()) {
      const acl = s.tpg.acls.get(s.initiatorName);
      const idle = Number(acl?.attributes.nopin_timeout ?? 15) * 1000;
      const answer = Number(acl?.attributes.nopin_response_timeout ?? 30) * 1000;
      const dataOut = Number(acl?.attributes.dataout_timeout ?? 3) * 1000;
      const retries = Number(acl?.attributes.dataout_timeout_retries ?? 5);
      for (const c of s.connections) {
        s.checkDataOut(c, now, dataOut, retries);
        if (c.closed) continue;
        if (c.pingTtt !== NO_TAG) {
          if (c.lastRx > c.pingSent) c.pingTtt = NO_TAG;
          else if (now - c.pingSent > answer) {
            log.warn(`iscsi: ${s.initiatorName} did not answer a NOP-In in ${answer / 1000} s; dropping its connection`);
            c.destroy();
          }
        } else if (now - c.lastRx > idle) s.ping(c);
      }
    }
  }, 1000);
  pinger.unref();
}

/** The receive slabs and the Data-In buffer pool, shared by every connection. */
function metrics(): MetricSample[] {
  const rx = rxPool.stats();
  const slabs = `iSCSI receive slabs (${SLAB_BYTES} bytes each): idle in the pool, or busy (being read into, or holding data of commands in flight).`;
  return [
    { name: 'tsio_iscsi_logins_total', help: 'iSCSI logins accepted (a connection reaching full feature phase).', type: 'counter', value: loginCounts.accepted },
    ...REFUSAL_REASONS.map((reason): MetricSample => ({
      name: 'tsio_iscsi_login_failures_total', help: 'iSCSI logins refused, by reason.', type: 'counter', labels: { reason }, value: loginCounts.refused[reason],
    })),
    { name: 'tsio_iscsi_logouts_total', help: 'iSCSI logouts completed.', type: 'counter', value: loginCounts.logouts },
    { name: 'tsio_iscsi_rx_slabs', help: slabs, type: 'gauge', labels: { state: 'idle' }, value: rx.idle },
    { name: 'tsio_iscsi_rx_slabs', help: slabs, type: 'gauge', labels: { state: 'busy' }, value: rx.busy },
    {
      name: 'tsio_iscsi_rx_slabs_trimmed_total',
      help: 'Idle iSCSI receive slabs given back to the garbage collector, unused for a while.',
      type: 'counter',
      value: rx.trimmed,
    },
    {
      name: 'tsio_iscsi_rx_unpinned_bytes_total',
      help: 'Bytes iSCSI commands slow to get their data copied out of receive slabs, to let the slabs go.',
      type: 'counter',
      value: rx.unpinnedBytes,
    },
    { name: 'tsio_iscsi_data_in_idle_bytes', help: 'Bytes of iSCSI Data-In buffers idle in their pool.', type: 'gauge', value: dataInPool.idleSize },
  ];
}

export const iscsiFabric: FabricModule = { name: 'iscsi', serve, metrics };
