// tcli's help: command summaries here, every parameter's text from the spec
// files (the same source as validation and defaults), and the man-page-like
// overview `tcli help` prints.

import type { Node } from './tree';
import type { FieldSpec } from '../app/config/specs';
import { specs } from '../app/config/specs';
import { createParams, groupsOf } from './shell';

export const COMMANDS: Record<string, { usage: string; doc: string }> = {
  cd: { usage: 'cd [PATH|@BOOKMARK|-]', doc: 'Moves to a node; no argument: the root; - the previous node. Typing a path alone does the same.' },
  pwd: { usage: 'pwd', doc: 'Prints the current path.' },
  ls: { usage: 'ls [PATH] [DEPTH]', doc: 'Draws the tree below a node, each node with a one-line summary.' },
  help: { usage: 'help [COMMAND|GROUP]', doc: 'Commands available here, or one command or settings group in detail.' },
  info: { usage: 'info', doc: 'Details of the current node: size, users, sessions, I/O statistics.' },
  status: { usage: 'status', doc: 'Daemon version, uptime, object counts, whether the config is saved.' },
  sessions: { usage: 'sessions [list|detail] [SID]', doc: 'Open sessions (I_T nexuses); detail adds per-LUN state and statistics.' },
  create: { usage: 'create ARGS...', doc: 'Creates a child object; positional or key=value arguments (help create lists them here).' },
  delete: { usage: 'delete NAME', doc: 'Deletes a child object; in-flight I/O finishes first.' },
  get: { usage: 'get GROUP [NAME...]', doc: 'Shows settings of a group: attribute, parameter, auth or discovery_auth.' },
  set: { usage: 'set GROUP NAME=VALUE...', doc: 'Changes settings live; the matching unit attention is raised.' },
  enable: { usage: 'enable', doc: 'Enables the TPG.' },
  disable: { usage: 'disable', doc: 'Disables the TPG: no new logins.' },
  saveconfig: { usage: 'saveconfig [FILE]', doc: 'Saves the live configuration as YAML (atomically, mode 0600, last 10 versions kept).' },
  restoreconfig: { usage: 'restoreconfig [FILE] [clear_existing]', doc: 'Loads a YAML config or a targetcli saveconfig.json, validated whole first; only differences are applied.' },
  clearconfig: { usage: 'clearconfig confirm=true', doc: 'Removes every target and storage object.' },
  reservations: { usage: 'reservations [clear [confirm=true]]', doc: 'Persistent reservation state of the storage object; clear drops every registration and the reservation (admin escape hatch).' },
  bookmarks: { usage: 'bookmarks add|del|go|show [NAME]', doc: 'Named paths; use @NAME wherever a path goes.' },
  refresh: { usage: 'refresh', doc: 'Re-reads the tree from tsiod.' },
  wizard: { usage: 'wizard', doc: 'Creates a backstore, a target, a LUN and an ACL step by step.' },
  exit: { usage: 'exit', doc: 'Leaves the shell, offering to save when the configuration changed.' },
};

function fieldLine(f: FieldSpec): string {
  const range = f.min !== undefined || f.max !== undefined ? ` [${f.min ?? ''}..${f.max ?? ''}]` : '';
  const values = f.values ? ` (${f.values.join('|')})` : '';
  const def = f.default !== undefined && f.default !== '' ? ` default ${String(f.default)}` : f.required ? ' required' : '';
  return `  ${f.name.padEnd(28)} ${f.type}${values}${range}${def}\n  ${''.padEnd(28)} ${f.doc}`;
}

export function groupHelp(group: string, fields: readonly FieldSpec[]): string {
  return [`set ${group} NAME=VALUE ... / get ${group} [NAME ...]`, '', ...fields.map(fieldLine)].join('\n');
}

export function commandHelp(cmd: string, at: Node): string {
  const c = COMMANDS[cmd];
  if (!c) return `no command ${cmd}; type help for the list`;
  const lines = [`${c.usage}`, `  ${c.doc}`];
  if (cmd === 'create') {
    const params = createParams(at);
    if (params.length) {
      lines.push('', `At ${at.path}: create ${params.map((p) => p.name).join(' ')}`);
      for (const p of params) lines.push(p.field ? fieldLine(p.field) : `  ${p.name.padEnd(28)} ${p.doc}`);
    }
  }
  if (cmd === 'set' || cmd === 'get') {
    const groups = groupsOf(at);
    lines.push('', `Groups here: ${Object.keys(groups).join(', ') || 'none'} (help GROUP lists each parameter)`);
  }
  return lines.join('\n');
}

export function overview(at: Node, commands: string[]): string {
  return [`Commands at ${at.path}:`, ...commands.map((c) => `  ${COMMANDS[c].usage.padEnd(40)} ${COMMANDS[c].doc}`), '', 'help COMMAND for details; Tab completes paths, commands, parameter names and values.'].join('\n');
}

/** `tcli help`: the whole manual, from the spec files. */
export function manual(): string {
  const s = specs();
  const out: string[] = [
    'TCLI(8)                           tsio                           TCLI(8)',
    '',
    'NAME',
    '    tcli - configure a running tsiod, in the manner of targetcli',
    '',
    'SYNOPSIS',
    '    tcli [--control PATH] [--json]                  interactive shell',
    '    tcli [--control PATH] [--json] [PATH] COMMAND [ARGS...]   one command',
    '    tcli [--control PATH] [--json] -f SCRIPT        commands from a file (- for stdin); stops at the first error',
    '    tcli help                                       this manual',
    '',
    'DESCRIPTION',
    '    tcli talks to tsiod over its control socket (JSON-RPC 2.0; default /run/tsio/control.sock). Every change',
    '    is validated whole and applied live: a new LUN raises REPORTED LUNS DATA HAS CHANGED, a changed attribute',
    '    its unit attention, a new portal listens at once; untouched objects and their sessions are left alone.',
    '    Errors are one line; in batch use the exit status is 1.',
    '',
    'THE TREE',
    '    /backstores/{rd_mcp,fileio,block,pscsi}/NAME          storage objects',
    '    /iscsi/IQN/tpgN/{luns/lunN, acls/INITIATOR/mapped_lunN, portals/IP:PORT}',
    '    /vhost/NAA/tpgN/{luns, acls}                          one vhost-user socket per TPG',
    '    /loopback/NAA/tpgN/luns                               in-process nexus',
    '',
    'COMMANDS',
    ...Object.values(COMMANDS).map((c) => `    ${c.usage.padEnd(42)} ${c.doc}`),
    '',
    'CREATE',
    ...s.backstores.map((b) => `    /backstores/${b.name} create name ${[...b.fields].sort((x, y) => Number(y.required) - Number(x.required)).map((f) => (f.required ? f.name : `[${f.name}]`)).join(' ')} [wwn]\n        ${b.doc}`),
    ...s.fabrics.map((f) => `    /${f.name} create [wwn]${f.tpgFields.map((x) => (x.required ? ` ${x.name}=` : ` [${x.name}=]`)).join('')}\n        ${f.doc} WWN: ${f.wwnExpect}.`),
    '    .../luns create STORAGE_OBJECT [lun] [alias] [add_mapped_luns=true]',
    '    .../acls create INITIATOR_WWN [add_mapped_luns=true]',
    '    .../acls/INITIATOR create MAPPED_LUN TPG_LUN [write_protect=false]',
    '    .../portals create [ip_address] [ip_port]',
    '',
    'BACKSTORE FIELDS',
    ...s.backstores.flatMap((b) => [`    ${b.name}:`, ...b.fields.map((f) => fieldLine(f).replace(/^ {2}/gm, '      '))]),
    '',
    'STORAGE OBJECT ATTRIBUTES (set attribute NAME=VALUE at a storage object)',
    ...s.storageAttributes.map((f) => fieldLine(f).replace(/^ {2}/gm, '    ')),
    '',
    ...s.fabrics.flatMap((f) => {
      const lines = [`${f.name.toUpperCase()} SETTINGS`];
      const sect = (title: string, fields: readonly FieldSpec[]) => (fields.length ? [`  ${title}:`, ...fields.map((x) => fieldLine(x).replace(/^ {2}/gm, '    '))] : []);
      lines.push(...sect('TPG attributes (set attribute at tpgN)', f.tpgAttributes), ...sect('TPG parameters (set parameter at tpgN)', f.tpgParameters));
      lines.push(...sect('auth (set auth at tpgN or at an ACL)', f.auth), ...sect(`ACL attributes (set attribute at an ACL)`, f.aclAttributes));
      lines.push(...sect(`discovery_auth (set discovery_auth at /${f.name})`, f.discoveryAuth), '');
      return lines;
    }),
    'FILES',
    '    /etc/tsio/saveconfig.yaml   default saveconfig file; previous versions beside it as saveconfig.yaml.backup-*',
    '    ~/.tcli/history, ~/.tcli/bookmarks.json   (TCLI_HOME overrides ~/.tcli)',
    '',
    'EXAMPLES',
    '    tcli /backstores/rd_mcp create ram0 1GiB',
    '    tcli /iscsi create iqn.2026-11.org.example:disk1',
    '    tcli /iscsi/iqn.2026-11.org.example:disk1/tpg1/luns create /backstores/rd_mcp/ram0',
    '    tcli /iscsi/iqn.2026-11.org.example:disk1/tpg1/portals create 127.0.0.1 3260',
    '    tcli saveconfig',
    '',
    'SEE ALSO',
    '    tsiod --help; targetcli(8), whose commands and tree tcli follows.',
  ];
  return out.join('\n');
}
