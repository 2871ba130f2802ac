// The command tables: what every node offers, what each kind of node adds
// or replaces, and every command once in the manual's order. The shell
// dispatches, completes and explains from these alone.

import type { Command, NodeType, Settings, ShellContext, Verb } from '../command';
import type { Node, NodeKind } from '../tree';
import { aclNode, aclsNode, mappedLunNode } from './acls';
import { pluginNode } from './backstores';
import { bookmarks, cd, CREATE, DELETE, exit, help, ls, pwd, refresh, wizard } from './common';
import { clearconfig, reload, restoreconfig, rootNode, saveconfig, sessions, status, version } from './daemon';
import { info } from './info';
import { lunNode, lunsNode } from './luns';
import { portalsNode } from './portals';
import { get, set } from './settings';
import { reservations, storageObjectNode } from './storage-object';
import { fabricNode, targetNode } from './targets';
import { disable, enable, tpgNode } from './tpg';

/** Offered at every node (get and set where it has settings groups). */
const COMMON: readonly Command[] = [cd, pwd, ls, help, info, status, version, sessions, get, set, saveconfig, restoreconfig, reload, clearconfig, bookmarks, refresh, wizard, exit];

const NODES: Record<NodeKind, NodeType> = {
  root: rootNode,
  backstores: { commands: [] },
  plugin: pluginNode,
  so: storageObjectNode,
  fabric: fabricNode,
  target: targetNode,
  tpg: tpgNode,
  luns: lunsNode,
  lun: lunNode,
  acls: aclsNode,
  acl: aclNode,
  mapped_lun: mappedLunNode,
  portals: portalsNode,
  portal: { commands: [] },
};

/** Every command once, in the order the manual lists them; did-you-mean proposes from these names. */
export const VERBS: readonly Verb[] = [cd, pwd, ls, help, info, status, version, sessions, CREATE, DELETE, get, set, enable, disable, saveconfig, restoreconfig, reload, clearconfig, reservations, bookmarks, refresh, wizard, exit];

export const isVerb = (name: string): boolean => VERBS.some((v) => v.name === name);

export const settingsAt = (n: Node): Settings | undefined => NODES[n.kind].settings;

/** The commands node n offers, sorted by name: the common ones, its own in their place. */
export function commandsAt(n: Node, ctx: ShellContext): Command[] {
  const own = NODES[n.kind].commands;
  const all = [...COMMON.filter((c) => !own.some((o) => o.name === c.name)), ...own];
  return all.filter((c) => !c.when || c.when(n, ctx)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
