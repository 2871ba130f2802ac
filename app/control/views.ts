// What the control API shows of running objects beyond their config: a
// storage object's size, users and statistics; the sessions (I_T nexuses).

import type { Live } from '../daemon/reconcile';
import type { Session as CoreSession } from '../../src/core/session';
import type { Tpg } from '../../src/model/target';
import type { Obj } from './params';
import { aluaStatus } from '../../src/scsi/alua';

type Session = CoreSession<Tpg>;

/** Storage object path -> size, block size, serial, the LUNs using it, statistics; shared storage: cluster and ALUA. */
export async function storageObjectsRuntime(live: Live): Promise<Obj> {
  const { root } = live;
  const storage: Obj = {};
  for (const [k, so] of root.storageObjects) {
    const users: string[] = [];
    for (const t of root.targets.values()) {
      for (const tpg of t.tpgs.values()) for (const l of tpg.luns.values()) if (l.so === so) users.push(`${t.fabric}/${t.wwn}/tpg${tpg.tag}/lun${l.index}`);
    }
    storage[k] = {
      size: so.backstore.size, block_size: so.backstore.blockSize, serial: so.serial, used_by: users,
      // 'ok', or why the storage under it is gone (commands then fail NOT READY).
      health: so.lu.fault === undefined ? 'ok' : `storage lost: ${so.lu.fault}`,
      stats: so.lu.stats.snapshot(),
    };
    const alua = aluaStatus(so.lu);
    if (alua !== undefined) (storage[k] as Obj).alua = alua;
    const cluster = await so.backstore.clusterStatus?.().catch((e: Error) => ({ error: e.message }));
    if (cluster !== undefined) (storage[k] as Obj).cluster = cluster;
  }
  return storage;
}

/** Every session of every TPG, by id. */
export function liveSessions(live: Live): Session[] {
  const out: Session[] = [];
  for (const t of live.root.targets.values()) for (const tpg of t.tpgs.values()) out.push(...tpg.sessions);
  return out.sort((a, b) => a.id - b.id);
}

export function sessionView(s: Session, detail: boolean): Obj {
  const tpg = s.tpg;
  const v: Obj = {
    id: s.id,
    initiator: s.initiator.name,
    initiator_port: s.initiatorPort,
    fabric: tpg.target.fabric,
    target: tpg.target.wwn,
    tpg: tpg.tag,
    luns: s.lunNumbers(),
    since: new Date(s.createdAt).toISOString(),
    stats: s.stats.snapshot(),
  };
  if (detail) {
    v.lun_detail = s.lunNumbers().map((n) => {
      const itl = s.itls.get(n)!;
      return { lun: n, storage_object: itl.lu.so.path, write_protect: itl.writeProtect, pending_unit_attentions: itl.uas.length, tasks: itl.tasks.size };
    });
  }
  return v;
}
