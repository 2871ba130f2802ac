// Builds the live objects a validated configuration describes.

import { resolve } from 'node:path';
import type { TsioConfig } from '../config/config';
import type { Root } from '../model/root';
import { NodeAcl } from '../model/target';

/** Creates storage objects, then targets, TPGs, LUNs and ACLs (the order restore needs). */
export async function applyConfig(root: Root, cfg: TsioConfig, baseDir: string): Promise<void> {
  for (const so of cfg.storage_objects) {
    await root.createStorageObject({
      name: so.name,
      plugin: so.plugin,
      size: so.size,
      blockSize: so.block_size,
      dev: so.dev === undefined ? undefined : resolve(baseDir, so.dev),
      nullio: so.nullio,
      direct: so.direct,
      readonly: so.readonly,
      serial: so.wwn,
      attributes: so.attributes,
    });
  }
  for (const m of cfg.fabric_modules) root.fabricSettings.set(m.name, { discovery_auth: m.discovery_auth });
  for (const t of cfg.targets) {
    const target = root.createTarget(t.fabric, t.wwn);
    for (const tp of t.tpgs) {
      const tpg = target.addTpg(tp.tag, tp.attributes, tp.parameters ?? {});
      tpg.enabled = tp.enable ?? true;
      if (tp.auth) tpg.auth = tp.auth;
      tpg.portals.push(...tp.portals);
      // vhost: the unix socket QEMU connects to, and its queue count.
      if (tp.socket !== undefined) tpg.attributes.socket = tp.socket;
      if (tp.num_queues !== undefined) tpg.attributes.num_queues = tp.num_queues;
      for (const l of tp.luns) tpg.addLun(l.index, root.storageObject(l.storage_object), l.alias);
      for (const a of tp.node_acls ?? []) {
        const acl = new NodeAcl(tpg, a.node_wwn, a.attributes ?? {}, a.auth ?? {});
        for (const m of a.mapped_luns ?? []) {
          acl.mapped.set(m.index, { index: m.index, tpgLun: m.tpg_lun, writeProtect: m.write_protect ?? false });
        }
        tpg.acls.set(acl.name, acl);
      }
    }
  }
}
