// What the user typed, as commands read it: a line split like a shell does,
// positional and key=value arguments, and typed values with one-line errors.

import { resolve } from 'node:path';
import type { FieldSpec } from '../app/config/specs';
import { didYouMean } from '../app/config/validation';

export class ShellError extends Error {}

export type Args = { pos: string[]; kv: Record<string, string> };

/** Splits a command line like a shell: quotes group, backslash escapes. */
export function tokenize(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | undefined;
  let any = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === '\\' && quote === '"' && i + 1 < line.length) cur += line[++i];
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      any = true;
    } else if (ch === '\\' && i + 1 < line.length) {
      cur += line[++i];
      any = true;
    } else if (/\s/.test(ch)) {
      if (cur !== '' || any) out.push(cur);
      cur = '';
      any = false;
    } else {
      cur += ch;
    }
  }
  if (quote) throw new ShellError(`unterminated ${quote} quote`);
  if (cur !== '' || any) out.push(cur);
  return out;
}

export function splitArgs(words: string[]): Args {
  const a: Args = { pos: [], kv: {} };
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq > 0 && /^[A-Za-z_][\w.]*$/.test(w.slice(0, eq))) a.kv[w.slice(0, eq)] = w.slice(eq + 1);
    else a.pos.push(w);
  }
  return a;
}

function parseBool(name: string, v: string): boolean {
  const l = v.toLowerCase();
  if (['true', 'yes', '1', 'on'].includes(l)) return true;
  if (['false', 'no', '0', 'off'].includes(l)) return false;
  throw new ShellError(`${name}: '${v}' is not a boolean (true or false)`);
}

/** A typed value for a spec field from what the user typed. */
export function typedValue(f: FieldSpec, v: string): unknown {
  switch (f.type) {
    case 'bool':
      return parseBool(f.name, v);
    case 'int':
      if (!/^-?\d+$/.test(v)) throw new ShellError(`${f.name}: '${v}' is not a whole number`);
      return Number(v);
    case 'enum':
      return f.values?.some((x) => typeof x === 'number') && /^\d+$/.test(v) ? Number(v) : v;
    default:
      return v;
  }
}

/** The spec fields among bound arguments, typed (paths made absolute). */
export function fieldValues(fields: readonly FieldSpec[], bound: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) if (bound[f.name] !== undefined) out[f.name] = f.type === 'path' ? resolve(bound[f.name]) : typedValue(f, bound[f.name]);
  return out;
}

export function boolArg(name: string, v: string | undefined, def: boolean): boolean {
  return v === undefined ? def : parseBool(name, v);
}

/** A number, also as the node name that carries it (tpg2, lun3, mapped_lun1). */
export function intArg(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(?:[a-z_]*?)(\d+)$/.exec(v);
  if (!m) throw new ShellError(`${name}: '${v}' is not a number`);
  return Number(m[1]);
}

/** " (did you mean X?)" when a name is close to one in the list. */
export function hintName(name: string, list: readonly { name: string }[]): string {
  const g = didYouMean(name, list.map((x) => x.name));
  return g ? ` (did you mean ${g}?)` : '';
}
