// get and set: offered wherever a node's table declares settings groups
// (storage object attributes, TPG attributes/parameters/auth, ACL
// attributes/auth, a fabric's discovery_auth); the fields come from specs/.

import { didYouMean } from '../../app/config/validation';
import type { FieldSpec } from '../../app/config/specs';
import { hintName, ShellError, typedValue } from '../args';
import type { Node } from '../tree';
import type { Command, ShellContext } from '../command';
import { completeParams } from '../command';

/** The settings groups at a node: its own, and everywhere global (the shell's preferences). */
export function groupsAt(ctx: ShellContext, n: Node): Record<string, readonly FieldSpec[]> {
  return { ...(ctx.settingsAt(n)?.groups(n) ?? {}), global: ctx.prefs.fields };
}

function groupValues(ctx: ShellContext, n: Node, g: string): Record<string, unknown> {
  return g === 'global' ? (ctx.prefs.values as unknown as Record<string, unknown>) : ctx.settingsAt(n)!.values(n, g, ctx.data);
}

/** A preference's value, checked here (the daemon checks everything else). */
function prefValue(f: FieldSpec, v: string): unknown {
  const t = typedValue(f, v);
  if (f.type === 'int' && ((f.min !== undefined && (t as number) < f.min) || (f.max !== undefined && (t as number) > f.max))) throw new ShellError(`${f.name}: ${v} is not between ${f.min} and ${f.max}`);
  if (f.type === 'enum' && !f.values!.includes(t as string)) throw new ShellError(`${f.name}: '${v}' is not one of ${f.values!.join(', ')}${hintName(v, f.values!.map((x) => ({ name: String(x) })))}`);
  return t;
}

function group(ctx: ShellContext, n: Node, name: string | undefined): [string, readonly FieldSpec[]] {
  const groups = groupsAt(ctx, n);
  if (name === undefined) throw new ShellError(`which group? ${Object.keys(groups).join(', ')}`);
  if (!(name in groups)) {
    const g = didYouMean(name, Object.keys(groups));
    throw new ShellError(`no group '${name}' at ${n.path}${g ? ` (did you mean ${g}?)` : ` (groups: ${Object.keys(groups).join(', ')})`}`);
  }
  return [name, groups[name]];
}

/** The field of a group a name=value or name refers to. */
function field(g: string, fields: readonly FieldSpec[], name: string): FieldSpec {
  const f = fields.find((x) => x.name === name);
  if (!f) throw new ShellError(`unknown parameter ${name} in group '${g}'${hintName(name, fields)}`);
  return f;
}

/** Group names first, then the group's field names (name= for set, with values after it). */
function completeSettings(withValues: boolean): Command['complete'] {
  return (ctx, at, args, current) => {
    const groups = groupsAt(ctx, at);
    if (args.length === 0) return Object.keys(groups);
    const fields = groups[args[0]];
    if (!fields) return [];
    return completeParams(ctx, fields.map((f) => ({ name: f.name, doc: f.doc, field: f })), current, withValues);
  };
}

const groupsHere = (n: Node, ctx: ShellContext) => [`Groups here: ${Object.keys(groupsAt(ctx, n)).join(', ') || 'none'} (help GROUP lists each parameter)`];

export const get: Command = {
  name: 'get',
  usage: 'get GROUP [NAME...]',
  doc: 'Shows settings of a group: attribute, parameter, auth, discovery_auth, or global (the shell\'s preferences).',
  ownArgs: true,
  detail: groupsHere,
  complete: completeSettings(false),
  run(ctx, n, a) {
    const [g, fields] = group(ctx, n, a.pos[0]);
    const kv = Object.keys(a.kv);
    if (kv.length) throw new ShellError(`get ${g} takes names, not name=value (${kv[0]}=); set changes them`);
    const values = groupValues(ctx, n, g);
    const names = a.pos.length > 1 ? a.pos.slice(1) : fields.map((f) => f.name);
    const out: Record<string, unknown> = {};
    const lines: string[] = [];
    for (const name of names) {
      const f = field(g, fields, name);
      const v = values[name] ?? f.default ?? '';
      out[name] = v;
      lines.push(`${name}=${String(v)}`);
    }
    ctx.print(lines.join('\n'), out);
  },
};

export const set: Command = {
  name: 'set',
  usage: 'set GROUP NAME=VALUE...',
  doc: 'Changes settings live (the matching unit attention is raised); set global changes and keeps a preference.',
  ownArgs: true,
  detail: groupsHere,
  complete: completeSettings(true),
  async run(ctx, n, a) {
    const [g, fields] = group(ctx, n, a.pos[0]);
    if (a.pos.length > 1) throw new ShellError(`set ${g}: give name=value pairs (not '${a.pos[1]}')`);
    if (Object.keys(a.kv).length === 0) throw new ShellError(`set ${g}: nothing to set; e.g. set ${g} ${fields[0]?.name}=${fields[0]?.default ?? 'VALUE'}`);
    const values: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(a.kv)) values[k] = g === 'global' ? prefValue(field(g, fields, k), v) : typedValue(field(g, fields, k), v);
    if (g === 'global') ctx.prefs.set(values);
    else {
      await ctx.settingsAt(n)!.apply(ctx, n, g, values);
      await ctx.refresh();
    }
    ctx.print(Object.entries(values).map(([k, v]) => `Parameter ${k} is now '${v}'.`).join('\n'), { ok: true, set: values });
  },
};
