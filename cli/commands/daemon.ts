// Commands about the daemon as a whole, offered at every node (status,
// sessions, saveconfig, restoreconfig, clearconfig), and the root node, whose
// info lists every storage object's statistics.

import { resolve } from 'node:path';
import { boolArg, ShellError } from '../args';
import { formatSize, type StatsView } from '../tree';
import type { Command, NodeType } from '../command';
import { fmtStats, infoCommand } from './info';

export const status: Command = {
  name: 'status',
  usage: 'status',
  doc: 'Daemon version, uptime, object counts, whether the config is saved.',
  async run(ctx) {
    const st = await ctx.client.call<Record<string, unknown>>('status');
    ctx.print(
      [`tsiod ${st.version}, pid ${st.pid}, up ${st.uptime_s} s`, `${st.storage_objects} storage objects, ${st.targets} targets, ${st.sessions} sessions`, `config ${st.dirty ? 'changed since last save' : 'saved'} (default file ${st.save_path})`].join('\n'),
      st,
    );
  },
};

export const sessions: Command = {
  name: 'sessions',
  usage: 'sessions [list|detail] [SID]',
  doc: 'Open sessions (I_T nexuses); detail adds per-LUN state and statistics.',
  complete: () => ['detail', 'list'],
  async run(ctx, _at, a) {
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
  doc: 'Saves the live configuration as YAML (atomically, mode 0600, last 10 versions kept).',
  async run(ctx, _at, a) {
    const r = await ctx.client.call<{ path: string; backup: string | null }>('saveconfig', a.pos[0] ? { path: resolve(a.pos[0]) } : {});
    await ctx.refresh();
    ctx.print(`Configuration saved to ${r.path}${r.backup ? ` (previous version kept as ${r.backup})` : ''}`, r);
  },
};

export const restoreconfig: Command = {
  name: 'restoreconfig',
  usage: 'restoreconfig [FILE] [clear_existing]',
  doc: 'Loads a YAML config or a targetcli saveconfig.json, validated whole first; only differences are applied.',
  complete: () => ['clear_existing'],
  async run(ctx, _at, a) {
    const clear = a.pos.includes('clear_existing') || boolArg('clear_existing', a.kv.clear_existing, false);
    const file = a.pos.find((p) => p !== 'clear_existing') ?? a.kv.savefile;
    if (clear && ctx.opts.prompter && ctx.opts.interactive) {
      if (!(await ctx.opts.prompter.confirm('clear_existing removes every object the file does not name. Continue?', false))) return void ctx.out('Not restored.');
    }
    const r = await ctx.client.call<{ created: string[]; changed: string[]; removed: string[]; warnings: string[]; unmapped: string[]; format: string }>('restoreconfig', {
      ...(file ? { path: resolve(file) } : {}),
      ...(clear ? { clear_existing: true } : {}),
    });
    await ctx.refresh();
    const lines = [`Configuration restored (${r.format}): ${r.created.length} created, ${r.changed.length} changed, ${r.removed.length} removed; unchanged objects and their sessions left alone.`];
    if (r.unmapped.length) lines.push(`${r.unmapped.length} settings could not be mapped:`, ...r.unmapped.map((u) => `  ${u}`));
    for (const w of r.warnings) lines.push(`warning: ${w}`);
    ctx.print(lines.join('\n'), r);
  },
};

export const clearconfig: Command = {
  name: 'clearconfig',
  usage: 'clearconfig confirm=true',
  doc: 'Removes every target and storage object.',
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
