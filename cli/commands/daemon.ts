// Commands about the daemon as a whole, offered at every node (status,
// sessions, saveconfig, restoreconfig, clearconfig), and the root node, whose
// info lists every storage object's statistics.

import { resolve } from 'node:path';
import { boolArg, ShellError } from '../args';
import { didYouMean } from '../../app/config/validation';
import { tsioVersion } from '../../app/config/version';
import { formatSize, type StatsView } from '../tree';
import type { Command, NodeType } from '../command';
import { fmtStats, infoCommand } from './info';

export const status: Command = {
  name: 'status',
  usage: 'status',
  doc: 'Daemon version, uptime, object counts, whether the saved file holds the running config.',
  params: () => [],
  async run(ctx) {
    const st = await ctx.client.call<Record<string, unknown>>('status');
    ctx.print(
      [`tsiod ${st.version}, pid ${st.pid}, up ${st.uptime_s} s`, `${st.storage_objects} storage objects, ${st.targets} targets, ${st.sessions} sessions`, saveLine(st)].join('\n'),
      st,
    );
  },
};

/** How the running configuration stands against the saveconfig file, never claiming a file that is not there. */
function saveLine(st: Record<string, unknown>): string {
  const path = String(st.save_path);
  switch (st.save_state) {
    case 'saved':
      return `config saved: ${path} holds the running configuration`;
    case 'differs':
      return `config not saved: the running configuration differs from ${path} (saveconfig writes it)`;
    case 'absent':
      return `config not saved: ${path} does not exist yet${st.dirty ? ' (saveconfig writes it)' : ''}`;
    default:
      return `config not saved: ${path} is not a configuration tsiod can read (${String(st.save_detail ?? '')})`;
  }
}

export const sessions: Command = {
  name: 'sessions',
  usage: 'sessions [list|detail] [SID]',
  doc: 'Open sessions (I_T nexuses); detail adds per-LUN state and statistics.',
  params: () => [
    { name: 'view', doc: 'list or detail.' },
    { name: 'sid', doc: 'One session by id.' },
  ],
  complete: () => ['detail', 'list'],
  async run(ctx, _at, a) {
    for (const w of a.pos) {
      if (w === 'list' || w === 'detail' || /^\d+$/.test(w)) continue;
      const g = didYouMean(w, ['list', 'detail']);
      throw new ShellError(`sessions: unknown argument '${w}'${g ? ` (did you mean ${g}?)` : ''}; usage: sessions [list|detail] [SID]`);
    }
    const detail = a.pos.includes('detail');
    const sid = a.pos.find((p) => /^\d+$/.test(p));
    let list = await ctx.client.call<Record<string, any>[]>('sessions.list');
    if (sid !== undefined) list = list.filter((s) => s.id === Number(sid));
    if (sid !== undefined && list.length === 0) throw new ShellError(`no session ${sid}`);
    if (detail) list = await Promise.all(list.map((s) => ctx.client.call<Record<string, any>>('sessions.get', { id: s.id })));
    if (ctx.opts.json) return void ctx.out(JSON.stringify(list, null, 2));
    if (list.length === 0) return void ctx.out('(no open sessions)');
    const lines: string[] = [];
    for (const s of list) {
      lines.push(`session ${s.id}: ${s.initiator_port} -> ${s.fabric}/${s.target} tpg${s.tpg}, LUNs ${s.luns.join(',') || '-'}, since ${s.since}`);
      if (detail) {
        for (const l of s.lun_detail) lines.push(`  lun${l.lun}: ${l.storage_object}${l.write_protect ? ' (write-protected)' : ''}, ${l.tasks} tasks, ${l.pending_unit_attentions} pending UAs`);
        lines.push(...fmtStats(s.stats).map((x) => `  ${x}`));
      }
    }
    ctx.out(lines.join('\n'));
  },
};

export const saveconfig: Command = {
  name: 'saveconfig',
  usage: 'saveconfig [FILE]',
  doc: 'Saves the live configuration as YAML (atomically, mode 0600); a changed file keeps max_backup_files previous versions.',
  params: () => [{ name: 'savefile', doc: 'Where to save (default: the file tsiod was given with --saveconfig).' }],
  async run(ctx, _at, a) {
    const file = a.pos[0] ?? a.kv.savefile;
    const r = await ctx.client.call<{ path: string; changed: boolean; backup: string | null }>('saveconfig', { ...(file ? { path: resolve(file) } : {}), max_backup_files: ctx.prefs.values.max_backup_files });
    await ctx.refresh();
    ctx.print(r.changed ? `Configuration saved to ${r.path}${r.backup ? ` (previous version kept as ${r.backup})` : ''}` : `Configuration unchanged: ${r.path} already holds it (nothing written, no backup made)`, r);
  },
};

export const restoreconfig: Command = {
  name: 'restoreconfig',
  usage: 'restoreconfig [FILE] [clear_existing] [target=WWN] [storage_object=NAME]',
  doc: 'Loads a YAML config or a targetcli saveconfig.json, validated whole first; only differences are applied.',
  params: () => [
    { name: 'savefile', doc: 'The file (default: the saved configuration).' },
    { name: 'clear_existing', doc: 'Remove every object the file does not name (true/false, or the word alone).' },
    { name: 'target', doc: 'Restore only this target (and the storage objects its LUNs need).' },
    { name: 'storage_object', doc: 'Restore only this storage object (NAME or /backstores/PLUGIN/NAME).' },
  ],
  complete: (ctx, _at, _args, current) => (current.includes('=') ? [] : ['clear_existing', 'target=', 'storage_object=', ...ctx.completePath(current).filter((p) => !p.startsWith('.'))]),
  async run(ctx, _at, a) {
    const words = a.pos.filter((p) => p !== 'clear_existing');
    if (words.length > 1) throw new ShellError(`restoreconfig takes one file, not '${words.join(' ')}'; usage: ${restoreconfig.usage}`);
    const clear = a.pos.includes('clear_existing') || boolArg('clear_existing', a.kv.clear_existing, false);
    const file = words[0] ?? a.kv.savefile;
    if (clear && ctx.opts.prompter && ctx.opts.interactive) {
      if (!(await ctx.opts.prompter.confirm('clear_existing removes every object the file does not name. Continue?', false))) return void ctx.out('Not restored.');
    }
    const r = await ctx.client.call<{ created: string[]; changed: string[]; removed: string[]; warnings: string[]; unmapped: string[]; format: string }>('restoreconfig', {
      ...(file ? { path: resolve(file) } : {}),
      ...(clear ? { clear_existing: true } : {}),
      ...(a.kv.target !== undefined ? { target: a.kv.target } : {}),
      ...(a.kv.storage_object !== undefined ? { storage_object: a.kv.storage_object } : {}),
    });
    await ctx.refresh();
    const lines = [`Configuration restored (${r.format}): ${r.created.length} created, ${r.changed.length} changed, ${r.removed.length} removed; unchanged objects and their sessions left alone.`];
    for (const [what, list] of [['created', r.created], ['changed', r.changed], ['removed', r.removed]] as const) for (const x of list) lines.push(`  ${what}: ${x}`);
    if (r.unmapped.length) lines.push(`${r.unmapped.length} settings could not be mapped:`, ...r.unmapped.map((u) => `  ${u}`));
    for (const w of r.warnings) lines.push(`warning: ${w}`);
    ctx.print(lines.join('\n'), r);
  },
};

export const reload: Command = {
  name: 'reload',
  usage: 'reload',
  doc: 'Applies the saved configuration file live (what systemctl reload and SIGHUP do): only differences.',
  params: () => [],
  async run(ctx) {
    const r = await ctx.client.call<{ path: string; created: string[]; changed: string[]; removed: string[] }>('reload');
    await ctx.refresh();
    ctx.print(`Reloaded ${r.path}: ${r.created.length} created, ${r.changed.length} changed, ${r.removed.length} removed.`, r);
  },
};

export const version: Command = {
  name: 'version',
  usage: 'version',
  doc: "tcli's version and the running tsiod's.",
  params: () => [],
  async run(ctx) {
    const st = await ctx.client.call<{ version: string }>('status');
    ctx.print(`tcli ${tsioVersion()}\ntsiod ${st.version}`, { tcli: tsioVersion(), tsiod: st.version });
  },
};

export const clearconfig: Command = {
  name: 'clearconfig',
  usage: 'clearconfig confirm=true',
  doc: 'Removes every target and storage object.',
  params: () => [{ name: 'confirm', doc: 'Must be true.' }],
  complete: () => ['confirm=true'],
  async run(ctx, _at, a) {
    if (!boolArg('confirm', a.kv.confirm, false)) throw new ShellError('clearconfig removes everything: run it as clearconfig confirm=true');
    await ctx.client.call('clearconfig', { confirm: true });
    await ctx.refresh();
    ctx.cwd = '/';
    ctx.print('All configuration cleared.', { ok: true });
  },
};

/** /: its info sums up every storage object's I/O. */
export const rootNode: NodeType = {
  commands: [
    infoCommand(async (ctx) => {
      const st = await ctx.client.call<Record<string, unknown>>('statistics');
      const lines = (st.storage_objects as { path: string; stats: StatsView }[]).map(
        (so) => `${so.path}: ${so.stats.commands} commands, ${formatSize(so.stats.bytes_read)} read, ${formatSize(so.stats.bytes_written)} written, ${so.stats.errors} errors, p99 ${so.stats.latency_us.p99} µs`,
      );
      return { lines, json: { statistics: st } };
    }),
  ],
};
