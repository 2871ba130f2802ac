// tcli's command tables (cli/commands/): every command a node offers is one
// the shell knows by name, with the help text the manual prints for it (a
// name missing from VERBS would be refused as "command not found" and left
// out of the manual), and a command a node does not offer is refused there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../app/config/config';
import type { ControlClient } from '../cli/client';
import { VERBS } from '../cli/commands';
import { Shell } from '../cli/shell';
import { buildTree, type Node, type TreeData } from '../cli/tree';

const CONFIG = `
storage_objects:
  - { name: ram0, plugin: rd_mcp, size: 1MiB }
targets:
  - fabric: iscsi
    wwn: iqn.2026-11.org.tsio:tables
    tpgs:
      - tag: 1
        portals: [ { ip_address: 127.0.0.1, port: 3260 } ]
        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]
        node_acls: [ { node_wwn: iqn.2026-11.org.example:host, mapped_luns: [ { index: 0, tpg_lun: 0 } ] } ]
  - fabric: vhost
    wwn: naa.5001405000000001
    tpgs: [ { tag: 1, socket: /run/tsio/tables.sock } ]
  - fabric: loopback
    wwn: naa.5001405000000002
    tpgs: [ { tag: 1 } ]
`;

function shell(): Shell {
  // No daemon: the tree is built from a parsed config, and nothing here calls tsiod.
  const sh = new Shell(undefined as unknown as ControlClient, { home: join(tmpdir(), 'tsio-tcli-tables-none') });
  sh.data = { config: parseConfig(CONFIG, 'tables.yaml'), runtime: { storage_objects: {}, tpgs: {} }, dirty: false } as TreeData;
  sh.root = buildTree(sh.data);
  return sh;
}

const nodes = (n: Node): Node[] => [n, ...n.children.flatMap(nodes)];

test('every command a node offers is declared once in VERBS, with the same usage and text', () => {
  const sh = shell();
  const names = VERBS.map((v) => v.name);
  assert.deepEqual(names, [...new Set(names)], 'each name once');
  const kinds = new Set<string>();
  for (const n of nodes(sh.root)) {
    kinds.add(n.kind);
    for (const c of sh.commandsAt(n)) {
      const v = VERBS.find((x) => x.name === c.name);
      assert.ok(v, `${c.name} at ${n.path} is not in VERBS`);
      assert.deepEqual([c.usage, c.doc], [v.usage, v.doc], `${c.name} at ${n.path}`);
    }
  }
  assert.equal(kinds.size, 14, `the fixture has a node of every kind: ${[...kinds].join(', ')}`);
});

test('a command a node does not offer is refused there, naming what is offered', async () => {
  const sh = shell();
  for (const n of nodes(sh.root)) {
    const here = sh.commandsAt(n).map((c) => c.name);
    for (const v of VERBS.filter((x) => !here.includes(x.name))) {
      await assert.rejects(sh.run(`${n.path} ${v.name}`), { message: `${v.name} is not available at ${n.path} (here: ${here.join(', ')})` });
    }
  }
});
