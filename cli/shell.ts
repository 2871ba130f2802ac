// tcli's commands: parsing a line, resolving paths, running a command
// against the daemon, completing a partial line. Interactive and batch use
// share all of it; the terminal loop lives in tcli.ts.

import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ControlClient } from './client';
import { buildTree, find, formatSize, joinPath, portalName, renderTree, type Node, type TreeData, type StatsView } from './tree';
import { specs, type FieldSpec } from '../app/config/specs';
import { didYouMean } from '../app/config/validation';
import { commandHelp, COMMANDS, groupHelp, overview } from './help';
import type { PrView } from '../app/control/wire';
import { boolArg, fieldValues, hintName, intArg, ShellError, splitArgs, tokenize, typedValue, type Args } from './args';
import { Bookmarks } from './bookmarks';

export { ShellError, tokenize, typedValue };

/** Asks the user something (inquirer in a terminal); batch use answers with the default. */
export interface Prompter {
  confirm(message: string, def: boolean): Promise<boolean>;
  wizard?(shell: Shell): Promise<void>;
}

export interface ShellOptions {
  json?: boolean;
  color?: boolean;
  width?: number;
  interactive?: boolean;
  prompter?: Prompter;
  /** Where bookmarks and history live (default ~/.tcli; TCLI_HOME overrides). */
  home?: string;
}

/** Groups settable with set/get on a node, each with its fields. */
export function groupsOf(n: Node): Record<string, readonly FieldSpec[]> {
  const s = specs();
  switch (n.kind) {
    case 'so':
      return { attribute: s.storageAttributes };
    case 'tpg': {
      const g: Record<string, readonly FieldSpec[]> = { attribute: n.fabric!.tpgAttributes };
      if (n.fabric!.tpgParameters.length) g.parameter = n.fabric!.tpgParameters;
      if (n.fabric!.hasFeature('auth')) g.auth = n.fabric!.auth;
      return g;
    }
    case 'acl': {
      const g: Record<string, readonly FieldSpec[]> = { attribute: n.fabric!.aclAttributes };
      if (n.fabric!.hasFeature('auth') || n.fabric!.hasFeature('acls_auth')) g.auth = n.fabric!.auth;
      return g;
    }
    case 'fabric':
      return n.fabric!.hasFeature('discovery_auth') ? { discovery_auth: n.fabric!.discoveryAuth } : {};
    default:
      return {};
  }
}

/** Current values of a group on a node (complete: the daemon fills in defaults). */
function groupValues(n: Node, group: string, data: TreeData): Record<string, unknown> {
  switch (n.kind) {
    case 'so':
      return n.so!.attributes as unknown as Record<string, unknown>;
    case 'tpg':
      return (group === 'attribute' ? n.tpg!.attributes : group === 'parameter' ? n.tpg!.parameters : n.tpg!.auth) as Record<string, unknown>;
    case 'acl':
      return (group === 'attribute' ? n.acl!.attributes : n.acl!.auth) as Record<string, unknown>;
    case 'fabric':
      return (data.config.fabric_modules.find((m) => m.name === n.name)?.discovery_auth ?? {}) as Record<string, unknown>;
    default:
      return {};
  }
}

/** Fields `create` takes at a node, in positional order. */
export function createParams(n: Node): { name: string; doc: string; field?: FieldSpec }[] {
  const s = specs();
  switch (n.kind) {
    case 'plugin': {
      const b = s.backstore(n.plugin!);
      const fields = [...b.fields].sort((x, y) => Number(y.required) - Number(x.required));
      return [{ name: 'name', doc: 'Name of the storage object.' }, ...fields.map((f) => ({ name: f.name, doc: f.doc, field: f })), { name: 'wwn', doc: 'Unit serial number (VPD 80h); derived when absent.' }];
    }
    case 'fabric':
      return [{ name: 'wwn', doc: `Target name: ${n.fabric!.wwnExpect}; generated when absent.` }, ...n.fabric!.tpgFields.map((f) => ({ name: f.name, doc: f.doc, field: f }))];
    case 'target':
      return [{ name: 'tag', doc: 'TPG tag (a number).' }, ...n.fabric!.tpgFields.map((f) => ({ name: f.name, doc: f.doc, field: f }))];
    case 'luns':
      return [
        { name: 'storage_object', doc: 'Storage object path, e.g. /backstores/rd_mcp/ram0.' },
        { name: 'lun', doc: 'LUN number; the lowest free one when absent.' },
        { name: 'alias', doc: 'Name of the LUN link.' },
        { name: 'add_mapped_luns', doc: 'Map the new LUN into every ACL (default true).' },
      ];
    case 'acls':
      return [{ name: 'wwn', doc: 'Initiator name the ACL admits.' }, { name: 'add_mapped_luns', doc: 'Map every TPG LUN into the new ACL (default true).' }];
    case 'acl':
      return [
        { name: 'mapped_lun', doc: 'LUN number the initiator sees.' },
        { name: 'tpg_lun', doc: 'The TPG LUN it reaches.' },
        { name: 'write_protect', doc: 'Read-only for this initiator (default false).' },
      ];
    case 'portals': {
      const p = n.fabric!.portal;
      return [
        { name: 'ip_address', doc: p.find((f) => f.name === 'ip_address')!.doc },
        { name: 'ip_port', doc: p.find((f) => f.name === 'port')!.doc },
      ];
    }
    default:
      return [];
  }
}

/** The commands valid at a node. */
export function commandsAt(n: Node): string[] {
  const always = ['cd', 'pwd', 'ls', 'help', 'info', 'status', 'sessions', 'saveconfig', 'restoreconfig', 'clearconfig', 'bookmarks', 'refresh', 'wizard', 'exit'];
  const extra: string[] = [];
  if (createParams(n).length > 0) extra.push('create');
  if (['plugin', 'fabric', 'target', 'luns', 'acls', 'acl', 'portals'].includes(n.kind)) extra.push('delete');
  if (Object.keys(groupsOf(n)).length > 0) extra.push('get', 'set');
  if (n.kind === 'tpg') extra.push('enable', 'disable');
  if (n.kind === 'so') extra.push('reservations');
  return [...always, ...extra].sort();
}

function fmtStats(s: StatsView | undefined): string[] {
  if (!s) return [];
  return [
    `commands: ${s.commands} (reads ${s.reads}, writes ${s.writes}, errors ${s.errors})`,
    `bytes: read ${formatSize(s.bytes_read)}, written ${formatSize(s.bytes_written)}`,
    `latency µs: avg ${s.latency_us.avg}, p50 ${s.latency_us.p50}, p90 ${s.latency_us.p90}, p99 ${s.latency_us.p99}, p99.9 ${s.latency_us.p999}`,
  ];
}

export class Shell {
  cwd = '/';
  private previous = '/';
  data!: TreeData;
  root!: Node;
  private readonly bookmarks: Bookmarks;
  readonly home: string;
  /** Output lines of the last command (for batch and tests). */
  out: (s: string) => void = (s) => process.stdout.write(s + '\n');

  constructor(
    readonly client: ControlClient,
    readonly opts: ShellOptions = {},
  ) {
    this.home = opts.home ?? process.env.TCLI_HOME ?? join(homedir(), '.tcli');
    this.bookmarks = new Bookmarks(this.home);
  }

  async refresh(): Promise<void> {
    this.data = await this.client.call<TreeData>('tree');
    this.root = buildTree(this.data);
    // The current node may have gone (deleted elsewhere): climb to what still exists.
    while (this.cwd !== '/' && !find(this.root, this.cwd)) this.cwd = joinPath(this.cwd, '..');
  }

  get node(): Node {
    return find(this.root, this.cwd) ?? this.root;
  }

  private resolvePath(typed: string): Node {
    let p = typed;
    if (p.startsWith('@')) {
      const b = this.bookmarks.get(p.slice(1));
      if (!b) throw new ShellError(`no bookmark ${p}${this.bookmarks.hint(p.slice(1))}`);
      p = b;
    } else if (p === '-' || p === '<') p = this.previous;
    const abs = joinPath(this.cwd, p);
    const n = find(this.root, abs);
    if (!n) throw new ShellError(`no such path ${abs}${this.pathHint(abs)}`);
    return n;
  }

  private pathHint(abs: string): string {
    const parent = find(this.root, joinPath(abs, '..'));
    if (!parent) return '';
    const last = abs.split('/').pop() ?? '';
    const g = didYouMean(last, parent.children.map((c) => c.name));
    return g ? ` (did you mean ${joinPath(abs, '..') === '/' ? '' : joinPath(abs, '..')}/${g}?)` : '';
  }

  prompt(): string {
    const p = this.cwd.length > 40 ? `...${this.cwd.slice(-37)}` : this.cwd;
    return `${p}> `;
  }

  /** Runs one command line. Throws ShellError (or an RPC failure) with a one-line message. */
  async run(line: string): Promise<'exit' | void> {
    const words = tokenize(line.replace(/^\s*#.*$/, ''));
    if (words.length === 0) return;
    let at = this.node;
    let cmd = words[0];
    let rest = words.slice(1);
    // "/path command args" runs the command there; a path alone changes to it (as targetcli).
    if (cmd.startsWith('/') || cmd.startsWith('.') || cmd.startsWith('@') || (!COMMANDS[cmd] && (cmd.includes('/') || this.node.children.some((c) => c.name === cmd)))) {
      at = this.resolvePath(cmd);
      if (rest.length === 0) {
        this.changeDir(at);
        return;
      }
      cmd = rest[0];
      rest = rest.slice(1);
    }
    if (!COMMANDS[cmd]) {
      const g = didYouMean(cmd, Object.keys(COMMANDS));
      throw new ShellError(`command not found: ${cmd}${g ? ` (did you mean ${g}?)` : ' (type help)'}`);
    }
    if (!commandsAt(at).includes(cmd)) throw new ShellError(`${cmd} is not available at ${at.path} (here: ${commandsAt(at).join(', ')})`);
    const a = splitArgs(rest);
    switch (cmd) {
      case 'exit':
        return 'exit';
      case 'cd':
        if (a.pos.length === 0) this.changeDir(this.root);
        else this.changeDir(this.resolvePath(a.pos[0]));
        return;
      case 'pwd':
        this.print(at.path, { path: at.path });
        return;
      case 'ls': {
        const target = a.pos[0] !== undefined && !/^\d+$/.test(a.pos[0]) ? this.resolvePath(a.pos[0]) : at;
        const depthArg = a.kv.depth ?? a.pos.find((p) => /^\d+$/.test(p));
        const depth = depthArg === undefined ? undefined : Number(depthArg);
        if (this.opts.json) this.out(JSON.stringify(jsonTree(target, depth ?? Infinity), null, 2));
        else this.out(renderTree(target, { width: this.opts.width, depth, color: this.opts.color }));
        return;
      }
      case 'help':
        this.out(a.pos[0] === undefined ? overview(at, commandsAt(at)) : a.pos[0] in groupsOf(at) ? groupHelp(a.pos[0], groupsOf(at)[a.pos[0]]) : commandHelp(a.pos[0], at));
        return;
      case 'refresh':
        await this.refresh();
        return;
      case 'info':
        return this.info(at);
      case 'status': {
        const st = await this.client.call<Record<string, unknown>>('status');
        this.print(
          [`tsiod ${st.version}, pid ${st.pid}, up ${st.uptime_s} s`, `${st.storage_objects} storage objects, ${st.targets} targets, ${st.sessions} sessions`, `config ${st.dirty ? 'changed since last save' : 'saved'} (default file ${st.save_path})`].join('\n'),
          st,
        );
        return;
      }
      case 'sessions':
        return this.sessions(a);
      case 'get':
        return this.get(at, a);
      case 'set':
        return this.set(at, a);
      case 'enable':
      case 'disable':
        await this.client.call('tpgs.set', { wwn: at.target!.wwn, tag: at.tpg!.tag, enable: cmd === 'enable' });
        await this.refresh();
        this.print(`TPG ${at.tpg!.tag} ${cmd}d.`, { ok: true });
        return;
      case 'create':
        return this.create(at, a);
      case 'delete':
        return this.delete(at, a);
      case 'saveconfig': {
        const r = await this.client.call<{ path: string; backup: string | null }>('saveconfig', a.pos[0] ? { path: resolve(a.pos[0]) } : {});
        await this.refresh();
        this.print(`Configuration saved to ${r.path}${r.backup ? ` (previous version kept as ${r.backup})` : ''}`, r);
        return;
      }
      case 'restoreconfig': {
        const clear = a.pos.includes('clear_existing') || boolArg('clear_existing', a.kv.clear_existing, false);
        const file = a.pos.find((p) => p !== 'clear_existing') ?? a.kv.savefile;
        if (clear && this.opts.prompter && this.opts.interactive) {
          if (!(await this.opts.prompter.confirm('clear_existing removes every object the file does not name. Continue?', false))) return void this.out('Not restored.');
        }
        const r = await this.client.call<{ created: string[]; changed: string[]; removed: string[]; warnings: string[]; unmapped: string[]; format: string }>('restoreconfig', {
          ...(file ? { path: resolve(file) } : {}),
          ...(clear ? { clear_existing: true } : {}),
        });
        await this.refresh();
        const lines = [`Configuration restored (${r.format}): ${r.created.length} created, ${r.changed.length} changed, ${r.removed.length} removed; unchanged objects and their sessions left alone.`];
        if (r.unmapped.length) lines.push(`${r.unmapped.length} settings could not be mapped:`, ...r.unmapped.map((u) => `  ${u}`));
        for (const w of r.warnings) lines.push(`warning: ${w}`);
        this.print(lines.join('\n'), r);
        return;
      }
      case 'clearconfig': {
        if (!boolArg('confirm', a.kv.confirm, false)) throw new ShellError('clearconfig removes everything: run it as clearconfig confirm=true');
        await this.client.call('clearconfig', { confirm: true });
        await this.refresh();
        this.cwd = '/';
        this.print('All configuration cleared.', { ok: true });
        return;
      }
      case 'reservations':
        return this.reservations(at, a);
      case 'bookmarks':
        return this.bookmarksCmd(at, a);
      case 'wizard':
        if (!this.opts.prompter?.wizard || !this.opts.interactive) throw new ShellError('the wizard needs an interactive terminal');
        await this.opts.prompter.wizard(this);
        await this.refresh();
        return;
    }
  }

  private changeDir(n: Node): void {
    if (n.path !== this.cwd) this.previous = this.cwd;
    this.cwd = n.path;
    if (this.opts.json) this.out(JSON.stringify({ path: n.path }));
  }

  private print(text: string, json: unknown): void {
    this.out(this.opts.json ? JSON.stringify(json, null, 2) : text);
  }

  /** Shows, or (with clear) drops, the storage object's persistent reservation state. */
  private async reservations(n: Node, a: { pos: string[]; kv: Record<string, string> }): Promise<void> {
    const path = `/backstores/${n.plugin}/${n.so!.name}`;
    if (a.pos[0] === 'clear') {
      if (!boolArg('confirm', a.kv.confirm, false)) {
        if (!this.opts.interactive || !this.opts.prompter) throw new ShellError('reservations clear drops every registration: run it as reservations clear confirm=true');
        if (!(await this.opts.prompter.confirm(`Drop every registration and the reservation of ${path}? Cluster fencing relies on them.`, false))) return void this.out('Not cleared.');
      }
      const r = await this.client.call<{ cleared: number }>('storage_objects.clear_reservations', { path });
      this.print(`${r.cleared} registrations of ${path} cleared.`, r);
      return;
    }
    if (a.pos[0] !== undefined) throw new ShellError(`reservations: unknown argument '${a.pos[0]}' (reservations [clear [confirm=true]])`);
    const v = await this.client.call<PrView>('storage_objects.reservations', { path });
    const lines = [`generation 0x${v.generation.toString(16)}, APTPL ${v.aptpl ? 'on' : 'off'}`];
    if (v.reservation) lines.push(`reservation: ${v.reservation.type} held by ${v.reservation.initiator_port} key ${v.reservation.key}`);
    else lines.push('reservation: none');
    lines.push(`registrations: ${v.registrations.length}`);
    for (const r of v.registrations) lines.push(`  ${r.key} ${r.initiator_port} -> ${r.target_port}${r.holder ? ' (holder)' : ''}`);
    this.print(lines.join('\n'), v);
  }

  private async info(n: Node): Promise<void> {
    const lines: string[] = [`${n.path}: ${n.summary}`];
    let json: Record<string, unknown> = { path: n.path, kind: n.kind, summary: n.summary };
    if (n.kind === 'so') {
      const key = `/backstores/${n.plugin}/${n.so!.name}`;
      const rt = this.data.runtime.storage_objects[key];
      const so = n.so!;
      lines.push(`plugin: ${so.plugin}`, `size: ${formatSize(rt.size)} (${rt.size} bytes), block size ${rt.block_size}`, `serial: ${rt.serial}`);
      if (so.dev) lines.push(`dev: ${so.dev}`);
      lines.push(`used by: ${rt.used_by.length ? rt.used_by.join(', ') : 'nothing'}`, ...fmtStats(rt.stats));
      json = { ...json, config: so, runtime: rt };
    } else if (n.kind === 'lun' || n.kind === 'mapped_lun') {
      const idx = n.kind === 'lun' ? n.lunIndex! : n.acl!.mapped_luns.find((m) => m.index === n.mappedIndex)!.tpg_lun;
      const l = n.tpg!.luns.find((x) => x.index === idx)!;
      const rt = this.data.runtime.storage_objects[l.storage_object];
      lines.push(`storage object: ${l.storage_object} (${formatSize(rt?.size ?? 0)})`, `statistics of the storage object:`, ...fmtStats(rt?.stats).map((x) => `  ${x}`));
      json = { ...json, lun: l, stats: rt?.stats };
    } else if (n.kind === 'tpg') {
      const sessions = (await this.client.call<Record<string, unknown>[]>('sessions.list', { wwn: n.target!.wwn })).filter((s) => s.tpg === n.tpg!.tag);
      lines.push(`enabled: ${n.tpg!.enable}`, `sessions: ${sessions.length}`);
      for (const s of sessions) lines.push(`  session ${s.id}: ${s.initiator_port} LUNs ${(s.luns as number[]).join(',')}`);
      json = { ...json, tpg: n.tpg, sessions };
    } else if (n.kind === 'target') {
      json = { ...json, target: n.target };
      lines.push(`fabric: ${n.target!.fabric}`, `TPGs: ${n.target!.tpgs.map((t) => t.tag).join(', ')}`);
    } else if (n.kind === 'acl') {
      const acl = await this.client.call<Record<string, unknown>>('acls.get', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: n.acl!.node_wwn });
      lines.push(`sessions: ${(acl.sessions as number[]).length ? (acl.sessions as number[]).join(', ') : 'none'}`, `auth: ${n.acl!.auth?.userid ? `CHAP user ${n.acl!.auth.userid}${n.acl!.auth.mutual_userid ? ', mutual' : ''}` : 'none'}`);
      json = { ...json, acl };
    } else if (n.kind === 'root') {
      const st = await this.client.call<Record<string, unknown>>('statistics');
      json = { ...json, statistics: st };
      for (const so of st.storage_objects as { path: string; stats: StatsView }[]) lines.push(`${so.path}: ${so.stats.commands} commands, ${formatSize(so.stats.bytes_read)} read, ${formatSize(so.stats.bytes_written)} written, ${so.stats.errors} errors, p99 ${so.stats.latency_us.p99} µs`);
    }
    this.print(lines.join('\n'), json);
  }

  private async sessions(a: Args): Promise<void> {
    const detail = a.pos.includes('detail');
    const sid = a.pos.find((p) => /^\d+$/.test(p));
    let list = await this.client.call<Record<string, any>[]>('sessions.list');
    if (sid !== undefined) list = list.filter((s) => s.id === Number(sid));
    if (sid !== undefined && list.length === 0) throw new ShellError(`no session ${sid}`);
    if (detail) list = await Promise.all(list.map((s) => this.client.call<Record<string, any>>('sessions.get', { id: s.id })));
    if (this.opts.json) return void this.out(JSON.stringify(list, null, 2));
    if (list.length === 0) return void this.out('(no open sessions)');
    const lines: string[] = [];
    for (const s of list) {
      lines.push(`session ${s.id}: ${s.initiator_port} -> ${s.fabric}/${s.target} tpg${s.tpg}, LUNs ${s.luns.join(',') || '-'}, since ${s.since}`);
      if (detail) {
        for (const l of s.lun_detail) lines.push(`  lun${l.lun}: ${l.storage_object}${l.write_protect ? ' (write-protected)' : ''}, ${l.tasks} tasks, ${l.pending_unit_attentions} pending UAs`);
        lines.push(...fmtStats(s.stats).map((x) => `  ${x}`));
      }
    }
    this.out(lines.join('\n'));
  }

  private group(n: Node, name: string | undefined): [string, readonly FieldSpec[]] {
    const groups = groupsOf(n);
    if (name === undefined) throw new ShellError(`which group? ${Object.keys(groups).join(', ')}`);
    if (!(name in groups)) {
      const g = didYouMean(name, Object.keys(groups));
      throw new ShellError(`no group '${name}' at ${n.path}${g ? ` (did you mean ${g}?)` : ` (groups: ${Object.keys(groups).join(', ')})`}`);
    }
    return [name, groups[name]];
  }

  private get(n: Node, a: Args): void {
    const [g, fields] = this.group(n, a.pos[0]);
    const values = groupValues(n, g, this.data);
    const names = a.pos.length > 1 ? a.pos.slice(1) : fields.map((f) => f.name);
    const out: Record<string, unknown> = {};
    const lines: string[] = [];
    for (const name of names) {
      const f = fields.find((x) => x.name === name);
      if (!f) throw new ShellError(`unknown parameter ${name} in group '${g}'${hintName(name, fields)}`);
      const v = values[name] ?? f.default ?? '';
      out[name] = v;
      lines.push(`${name}=${String(v)}`);
    }
    this.print(lines.join('\n'), out);
  }

  private async set(n: Node, a: Args): Promise<void> {
    const [g, fields] = this.group(n, a.pos[0]);
    if (a.pos.length > 1) throw new ShellError(`set ${g}: give name=value pairs (not '${a.pos[1]}')`);
    if (Object.keys(a.kv).length === 0) throw new ShellError(`set ${g}: nothing to set; e.g. set ${g} ${fields[0]?.name}=${fields[0]?.default ?? 'VALUE'}`);
    const values: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(a.kv)) {
      const f = fields.find((x) => x.name === k);
      if (!f) throw new ShellError(`unknown parameter ${k} in group '${g}'${hintName(k, fields)}`);
      values[k] = typedValue(f, v);
    }
    switch (n.kind) {
      case 'so':
        await this.client.call('storage_objects.set', { path: `/backstores/${n.plugin}/${n.so!.name}`, attributes: values });
        break;
      case 'tpg':
        await this.client.call('tpgs.set', { wwn: n.target!.wwn, tag: n.tpg!.tag, [g === 'attribute' ? 'attributes' : g === 'parameter' ? 'parameters' : 'auth']: values });
        break;
      case 'acl':
        await this.client.call('acls.set', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: n.acl!.node_wwn, [g === 'attribute' ? 'attributes' : 'auth']: values });
        break;
      case 'fabric':
        await this.client.call('fabric_modules.set', { name: n.name, discovery_auth: values });
        break;
    }
    await this.refresh();
    this.print(Object.entries(values).map(([k, v]) => `Parameter ${k} is now '${v}'.`).join('\n'), { ok: true, set: values });
  }

  /** Positional and key=value arguments merged by the create signature; unknown keys refused. */
  private bind(n: Node, a: Args, aliases: Record<string, string> = {}): Record<string, string> {
    const params = createParams(n);
    const out: Record<string, string> = {};
    a.pos.forEach((v, i) => {
      if (i >= params.length) throw new ShellError(`create takes at most ${params.length} arguments here (${params.map((p) => p.name).join(' ')})`);
      out[params[i].name] = v;
    });
    for (const [k0, v] of Object.entries(a.kv)) {
      const k = aliases[k0] ?? k0;
      if (!params.some((p) => p.name === k)) throw new ShellError(`unknown parameter ${k0} for create here${hintName(k0, params.map((p) => ({ name: p.name })))} (takes ${params.map((p) => p.name).join(', ')})`);
      out[k] = v;
    }
    return out;
  }

  private async create(n: Node, a: Args): Promise<void> {
    let msg: string;
    let result: unknown;
    switch (n.kind) {
      case 'plugin': {
        const p = this.bind(n, a, { file_or_dev: 'dev' });
        if (!p.name) throw new ShellError('missing required parameter name');
        const b = specs().backstore(n.plugin!);
        const fields = fieldValues(b.fields, p);
        for (const f of b.fields) if (f.required && fields[f.name] === undefined) throw new ShellError(`missing required parameter ${f.name}`);
        if (p.wwn) fields.wwn = p.wwn;
        result = await this.client.call('storage_objects.create', { plugin: n.plugin, name: p.name, fields });
        msg = `Created ${n.plugin} storage object ${p.name}.`;
        break;
      }
      case 'fabric': {
        const p = this.bind(n, a);
        const tpgFields = fieldValues(n.fabric!.tpgFields, p);
        const r = await this.client.call<{ wwn: string; tpgs: number[] }>('targets.create', { fabric: n.name, ...(p.wwn ? { wwn: p.wwn } : {}), ...(Object.keys(tpgFields).length ? { tpg_fields: tpgFields } : {}) });
        result = r;
        msg = `Created target ${r.wwn}.${r.tpgs.length ? `\nCreated TPG ${r.tpgs[0]}.` : ''}`;
        break;
      }
      case 'target': {
        const p = this.bind(n, a);
        const tag = intArg('tag', p.tag) ?? Math.max(0, ...n.target!.tpgs.map((t) => t.tag)) + 1;
        const fields = fieldValues(n.fabric!.tpgFields, p);
        result = await this.client.call('tpgs.create', { wwn: n.target!.wwn, tag, fields });
        msg = `Created TPG ${tag}.`;
        break;
      }
      case 'luns': {
        const p = this.bind(n, a, { storage_object_path: 'storage_object' });
        if (!p.storage_object) throw new ShellError('missing required parameter storage_object');
        const so = p.storage_object.startsWith('/') ? p.storage_object : `/backstores/${p.storage_object}`;
        const r = await this.client.call<{ index: number }>('luns.create', {
          wwn: n.target!.wwn, tag: n.tpg!.tag, storage_object: so,
          ...(p.lun !== undefined ? { index: intArg('lun', p.lun) } : {}),
          ...(p.alias !== undefined ? { alias: p.alias } : {}),
          add_mapped_luns: boolArg('add_mapped_luns', p.add_mapped_luns, true),
        });
        result = r;
        msg = `Created LUN ${r.index}.`;
        break;
      }
      case 'acls': {
        const p = this.bind(n, a);
        if (!p.wwn) throw new ShellError('missing required parameter wwn');
        result = await this.client.call('acls.create', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: p.wwn, add_mapped_luns: boolArg('add_mapped_luns', p.add_mapped_luns, true) });
        msg = `Created Node ACL for ${p.wwn}`;
        break;
      }
      case 'acl': {
        const p = this.bind(n, a);
        if (p.mapped_lun === undefined || p.tpg_lun === undefined) throw new ShellError('create needs mapped_lun and tpg_lun');
        const idx = intArg('mapped_lun', p.mapped_lun)!;
        result = await this.client.call('mapped_luns.create', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: n.acl!.node_wwn, index: idx, tpg_lun: intArg('tpg_lun', p.tpg_lun), write_protect: boolArg('write_protect', p.write_protect, false) });
        msg = `Created Mapped LUN ${idx}.`;
        break;
      }
      case 'portals': {
        const p = this.bind(n, a, { port: 'ip_port' });
        const def = n.fabric!.portal;
        const ip = p.ip_address ?? String(def.find((f) => f.name === 'ip_address')!.default);
        const port = intArg('ip_port', p.ip_port) ?? (def.find((f) => f.name === 'port')!.default as number);
        result = await this.client.call('portals.create', { wwn: n.target!.wwn, tag: n.tpg!.tag, ip_address: ip, port });
        msg = `Created network portal ${portalName({ ip_address: ip, port })}.`;
        break;
      }
      default:
        throw new ShellError(`nothing to create at ${n.path}`);
    }
    await this.refresh();
    this.print(msg, result);
  }

  private async delete(n: Node, a: Args): Promise<void> {
    const what = a.pos[0] ?? Object.values(a.kv)[0];
    if (what === undefined) throw new ShellError(`delete what? (here: ${n.children.map((c) => c.name).join(', ') || 'nothing'})`);
    const confirm = async (why: string) => {
      if (this.opts.interactive && this.opts.prompter && !(await this.opts.prompter.confirm(why, false))) throw new ShellError('not deleted');
    };
    switch (n.kind) {
      case 'plugin': {
        const path = `/backstores/${n.plugin}/${what}`;
        const rt = this.data.runtime.storage_objects[path];
        if (!rt) throw new ShellError(`no storage object ${path}${hintName(what, n.children)}`);
        if (rt.used_by.length) await confirm(`${what} is in use by ${rt.used_by.join(', ')}; delete it and those LUNs?`);
        await this.client.call('storage_objects.delete', { path });
        break;
      }
      case 'fabric': {
        const t = n.children.find((c) => c.name.toLowerCase() === what.toLowerCase());
        if (!t) throw new ShellError(`no target ${what}${hintName(what, n.children)}`);
        const sessions = t.target!.tpgs.reduce((sum, tp) => sum + (this.data.runtime.tpgs[`${t.name}/${tp.tag}`]?.sessions ?? 0), 0);
        if (sessions) await confirm(`${what} has ${sessions} open sessions; delete it?`);
        await this.client.call('targets.delete', { wwn: t.target!.wwn });
        break;
      }
      case 'target': {
        const tag = intArg('tag', what)!;
        const sessions = this.data.runtime.tpgs[`${n.target!.wwn}/${tag}`]?.sessions ?? 0;
        if (sessions) await confirm(`TPG ${tag} has ${sessions} open sessions; delete it?`);
        await this.client.call('tpgs.delete', { wwn: n.target!.wwn, tag });
        break;
      }
      case 'luns':
        await this.client.call('luns.delete', { wwn: n.target!.wwn, tag: n.tpg!.tag, index: intArg('lun', what) });
        break;
      case 'acls':
        await this.client.call('acls.delete', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: what });
        break;
      case 'acl':
        await this.client.call('mapped_luns.delete', { wwn: n.target!.wwn, tag: n.tpg!.tag, node_wwn: n.acl!.node_wwn, index: intArg('mapped_lun', what) });
        break;
      case 'portals': {
        const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(what);
        const ip = m ? m[1] : what;
        const port = m ? Number(m[2]) : intArg('ip_port', a.pos[1] ?? a.kv.ip_port);
        if (port === undefined) throw new ShellError('delete needs ip_address and ip_port (or IP:PORT)');
        await this.client.call('portals.delete', { wwn: n.target!.wwn, tag: n.tpg!.tag, ip_address: ip, port });
        break;
      }
    }
    await this.refresh();
    this.print(`Deleted ${what}.`, { ok: true, deleted: what });
  }

  private bookmarksCmd(at: Node, a: Args): void {
    const [action, name] = a.pos;
    switch (action) {
      case 'add':
        if (!name) throw new ShellError('bookmarks add NAME');
        this.bookmarks.add(name, at.path);
        return this.print(`Bookmarked ${at.path} as @${name}.`, { [name]: at.path });
      case 'del':
        if (!name || !this.bookmarks.has(name)) throw new ShellError(`no bookmark ${name ?? ''}${this.bookmarks.hint(name ?? '')}`);
        this.bookmarks.delete(name);
        return this.print(`Deleted bookmark @${name}.`, { ok: true });
      case 'go':
        if (!name) throw new ShellError('bookmarks go NAME');
        return this.changeDir(this.resolvePath(`@${name}`));
      case undefined:
      case 'show': {
        const entries = Object.entries(this.bookmarks.all);
        return this.print(entries.length ? entries.map(([k, v]) => `@${k}: ${v}`).join('\n') : '(no bookmarks)', this.bookmarks.all);
      }
      default:
        throw new ShellError(`bookmarks ${action}: use add, del, go or show`);
    }
  }

  // -------------------------------------------------------------------------
  // Completion: readline's completer contract, [candidates, the word being completed].

  complete(line: string): [string[], string] {
    let words: string[];
    try {
      words = tokenize(line);
    } catch {
      return [[], ''];
    }
    const endsWithSpace = /\s$/.test(line) || line === '';
    const current = endsWithSpace ? '' : (words.pop() ?? '');
    let at = this.node;
    // "/path cmd ..." completes as if at that path.
    if (words.length > 0 && (words[0].startsWith('/') || words[0].startsWith('@') || words[0].startsWith('.'))) {
      const n = find(this.root, joinPath(this.cwd, words[0].startsWith('@') ? (this.bookmarks.get(words[0].slice(1)) ?? '/') : words[0]));
      if (n) {
        at = n;
        words = words.slice(1);
      }
    }
    const pick = (cands: string[]) => {
      const hits = cands.filter((c) => c.startsWith(current));
      return [hits.length ? hits : [], current] as [string[], string];
    };
    if (words.length === 0) {
      if (current.startsWith('/') || current.startsWith('.') || current.includes('/')) return pick(this.completePath(current));
      if (current.startsWith('@')) return pick(this.bookmarks.names().map((b) => `@${b}`));
      return pick([...commandsAt(at), ...at.children.map((c) => c.name)].map((c) => c));
    }
    const cmd = words[0];
    const args = words.slice(1);
    switch (cmd) {
      case 'cd':
      case 'ls':
        if (args.length === 0) return pick(current.startsWith('@') ? this.bookmarks.names().map((b) => `@${b}`) : this.completePath(current));
        return [[], current];
      case 'help':
        return pick([...commandsAt(at), ...Object.keys(groupsOf(at))]);
      case 'get':
      case 'set': {
        const groups = groupsOf(at);
        if (args.length === 0) return pick(Object.keys(groups));
        const fields = groups[args[0]];
        if (!fields) return [[], current];
        return pick(this.completeKv(current, fields.map((f) => ({ name: f.name, field: f })), cmd === 'set'));
      }
      case 'create': {
        const params = createParams(at);
        const eq = current.indexOf('=');
        if (eq > 0 && current.slice(0, eq) === 'storage_object') return pick(this.soPaths().map((p) => `storage_object=${p}`));
        if (at.kind === 'luns' && args.length === 0 && eq < 0 && current.startsWith('/')) return pick(this.soPaths());
        return pick(this.completeKv(current, params, true));
      }
      case 'delete':
        return pick(at.children.map((c) => c.name));
      case 'sessions':
        return pick(['detail', 'list']);
      case 'restoreconfig':
        return pick(['clear_existing']);
      case 'clearconfig':
        return pick(['confirm=true']);
      case 'reservations':
        return pick(args.length === 0 ? ['clear'] : ['confirm=true']);
      case 'bookmarks':
        if (args.length === 0) return pick(['add', 'del', 'go', 'show']);
        return pick(this.bookmarks.names());
      default:
        return [[], current];
    }
  }

  private soPaths(): string[] {
    return Object.keys(this.data.runtime.storage_objects).sort();
  }

  /** name= completions, and after name= the field's enumerated values (bool: true/false). */
  private completeKv(current: string, params: { name: string; field?: FieldSpec }[], withValues: boolean): string[] {
    const eq = current.indexOf('=');
    if (eq < 0) return params.map((p) => (withValues ? `${p.name}=` : p.name));
    const name = current.slice(0, eq);
    const f = params.find((p) => p.name === name)?.field;
    if (!f) return [];
    const values = f.type === 'bool' ? ['true', 'false'] : f.type === 'enum' ? (f.values ?? []).map(String) : f.type === 'list' ? (f.values ?? []).map(String) : [];
    return values.map((v) => `${name}=${v}`);
  }

  /** Children of the typed path's directory part, with a trailing / where they have children. */
  private completePath(typed: string): string[] {
    const slash = typed.lastIndexOf('/');
    const dirPart = slash >= 0 ? typed.slice(0, slash + 1) : '';
    const dir = find(this.root, joinPath(this.cwd, dirPart || '.'));
    if (!dir) return [];
    const out = dir.children.map((c) => `${dirPart}${c.name}${c.children.length ? '/' : ''}`);
    if (dirPart === '' || dirPart.endsWith('./')) out.push(`${dirPart}..`);
    return out;
  }
}

function jsonTree(n: Node, depth: number): unknown {
  return { name: n.name, path: n.path, summary: n.summary, ...(depth > 0 && n.children.length ? { children: n.children.map((c) => jsonTree(c, depth - 1)) } : {}) };
}

