// tcli's help, built from the command tables (cli/commands/): each command's
// usage and text, every parameter's text from the spec files (the same source
// as validation and defaults), and the man-page-like overview `tcli help`
// prints.

import type { Node } from './tree';
import type { FieldSpec } from '../app/config/specs';
import { specs } from '../app/config/specs';
import type { ShellContext, Verb } from './command';
import { prefFields } from './prefs';

export function fieldLine(f: FieldSpec): string {
  const range = f.min !== undefined || f.max !== undefined ? ` [${f.min ?? ''}..${f.max ?? ''}]` : '';
  const values = f.values ? ` (${f.values.join('|')})` : '';
  const def = f.default !== undefined && f.default !== '' ? ` default ${String(f.default)}` : f.required ? ' required' : '';
  return `  ${f.name.padEnd(28)} ${f.type}${values}${range}${def}\n  ${''.padEnd(28)} ${f.doc}`;
}

export function groupHelp(group: string, fields: readonly FieldSpec[]): string {
  return [`set ${group} NAME=VALUE ... / get ${group} [NAME ...]`, '', ...fields.map(fieldLine)].join('\n');
}

/** `help NAME` at a node: usage and text, then what the command takes there. */
export function commandHelp(name: string, c: Verb | undefined, at: Node, ctx: ShellContext): string {
  if (!c) return `no command ${name}; type help for the list`;
  const lines = [`${c.usage}`, `  ${c.doc}`];
  const params = c.params?.(at) ?? [];
  if (params.length) {
    lines.push('', `At ${at.path}: ${c.name} ${params.map((p) => p.name).join(' ')}`);
    for (const p of params) lines.push(p.field ? fieldLine(p.field) : `  ${p.name.padEnd(28)} ${p.doc}`);
  }
  const detail = c.detail?.(at, ctx) ?? [];
  if (detail.length) lines.push('', ...detail);
  return lines.join('\n');
}

export function overview(at: Node, commands: readonly Verb[]): string {
  return [`Commands at ${at.path}:`, ...commands.map((c) => `  ${c.usage.padEnd(40)} ${c.doc}`), '', 'help COMMAND for details; Tab completes paths, commands, parameter names and values.'].join('\n');
}

/** `tcli help`: the whole manual, from the command tables and the spec files. */
export function manual(verbs: readonly Verb[]): string {
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
    '    tcli --version',
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
    '    /vhost/NAA/tpgN/{luns, acls}                          a socket is one controller; its TPGs are targets T',
    '                                                          (`target`), their LUNs the guest\'s H:0:T:L',
    '    /loopback/NAA/tpgN/luns                               in-process nexus',
    '',
    'COMMANDS',
    ...verbs.map((c) => `    ${c.usage.padEnd(42)} ${c.doc}`),
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
    'GLOBAL PREFERENCES (get global, set global NAME=VALUE at any node; kept in ~/.tcli/prefs.json)',
    ...prefFields('~/.tcli').map((f) => fieldLine(f).replace(/^ {2}/gm, '    ')),
    '',
    'FILES',
    '    /etc/tsio/saveconfig.yaml   default saveconfig file; previous versions beside it as saveconfig.yaml.backup-*',
    '    ~/.tcli/history, ~/.tcli/bookmarks.json, ~/.tcli/prefs.json, ~/.tcli/log.txt   (TCLI_HOME overrides ~/.tcli)',
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
