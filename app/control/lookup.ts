// Finding an object by the address a request gives (target WWN, TPG tag,
// initiator node WWN, storage object path): in the document a change edits,
// or in what runs. A miss is invalid params, with a did-you-mean hint.

import type { ConfigDocument } from '../config/dump';
import type { TargetConfig, TpgConfig } from '../config/config';
import { didYouMean } from '../config/validation';
import { soKey, type Live } from '../daemon/reconcile';
import type { StorageObject } from '../../src/model/storage-object';
import { invalidParams, type Obj, type Params } from './params';

export function hint(v: string, known: string[]): string {
  const g = didYouMean(v, known);
  return g ? ` (did you mean ${g}?)` : known.length === 0 ? ' (there are none)' : '';
}

const keyOf = (so: Obj): string => soKey(so as { plugin: string; name: string });

export function findTarget(doc: ConfigDocument, wwn: unknown): Obj {
  const t = doc.targets.find((x) => String(x.wwn).toLowerCase() === String(wwn).toLowerCase());
  if (!t) throw invalidParams(`no target ${wwn}${hint(String(wwn), doc.targets.map((x) => String(x.wwn)))}`);
  return t;
}

export function findTpg(doc: ConfigDocument, p: Params): Obj {
  const t = findTarget(doc, p.wwn);
  const tpgs = (t.tpgs as Obj[]) ?? [];
  const tpg = tpgs.find((x) => x.tag === p.tag);
  if (!tpg) throw invalidParams(`target ${t.wwn} has no TPG ${p.tag}${tpgs.length ? ` (it has ${tpgs.map((x) => x.tag).join(', ')})` : ''}`);
  return tpg;
}

export function findAcl(doc: ConfigDocument, p: Params): Obj {
  const tpg = findTpg(doc, p);
  const acls = (tpg.node_acls as Obj[]) ?? [];
  const acl = acls.find((a) => String(a.node_wwn).toLowerCase() === String(p.node_wwn).toLowerCase());
  if (!acl) throw invalidParams(`TPG ${p.tag} of ${p.wwn} has no ACL ${p.node_wwn}${hint(String(p.node_wwn), acls.map((a) => String(a.node_wwn)))}`);
  return acl;
}

export function findStorageObject(doc: ConfigDocument, path: unknown): Obj {
  const so = doc.storage_objects.find((x) => keyOf(x) === path);
  if (!so) throw invalidParams(`no storage object ${path}${hint(String(path), doc.storage_objects.map(keyOf))}`);
  return so;
}

/** A target of the running config (defaults filled in). */
export function liveTarget(live: Live, wwn: unknown): TargetConfig {
  const t = live.config.targets.find((x) => x.wwn.toLowerCase() === String(wwn).toLowerCase());
  if (!t) throw invalidParams(`no target ${wwn}${hint(String(wwn), live.config.targets.map((x) => x.wwn))}`);
  return t;
}

export function liveTpg(t: TargetConfig, tag: unknown): TpgConfig {
  const tpg = t.tpgs.find((x) => x.tag === tag);
  if (!tpg) throw invalidParams(`target ${t.wwn} has no TPG ${tag}`);
  return tpg;
}

/** A running storage object (its logical unit, backstore and statistics). */
export function liveStorageObject(live: Live, path: unknown): StorageObject {
  const so = live.root.storageObjects.get(String(path));
  if (!so) throw invalidParams(`no storage object ${path}${hint(String(path), [...live.root.storageObjects.keys()])}`);
  return so;
}
