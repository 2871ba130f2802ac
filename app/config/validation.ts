// ajv set up the way tsio uses it, and its errors turned into sentences a
// person can act on, each placed at the YAML line it is about.

import Ajv, { type ErrorObject } from 'ajv';
import type { ConfigIssue } from './errors';
import { parseSize, SIZE_PATTERN, SizeError } from './size';
import { formatPath, type LocatedYaml } from './yaml';

/** Custom keyword for size fields: a whole number of bytes or a unit string, within {min, max}. */
export const SIZE_KEYWORD = 'x-tsio-size';

interface SizeRange {
  min?: number;
  max?: number;
}

export function createAjv(): Ajv {
  // allErrors: report every problem at once; verbose: errors carry the data and
  // parent schema the messages need; discriminator: a wrong `plugin` or
  // `fabric` reports one error, not one per branch.
  // strictRequired is off: a discriminator tag is required at the top, defined in the branches.
  const ajv = new Ajv({
    allErrors: true,
    verbose: true,
    discriminator: true,
    strictSchema: true,
    strictNumbers: true,
    strictTypes: true,
    strictTuples: true,
    strictRequired: false,
    allowUnionTypes: true,
  });
  ajv.addKeyword({
    keyword: SIZE_KEYWORD,
    schemaType: 'object',
    errors: true,
    validate: function checkSize(range: SizeRange, data: unknown): boolean {
      const self = checkSize as unknown as { errors?: Partial<ErrorObject>[] };
      self.errors = [];
      if (typeof data !== 'string' && !(typeof data === 'number' && Number.isInteger(data) && data >= 0)) return true; // type/minimum report these
      let bytes: number;
      try {
        bytes = parseSize(data);
      } catch (e) {
        if (!(e instanceof SizeError)) throw e;
        self.errors.push({ keyword: SIZE_KEYWORD, message: e.message, params: {} });
        return false;
      }
      const what = typeof data === 'string' ? `size '${data}' (${bytes} bytes)` : `size ${bytes}`;
      if (range.min !== undefined && bytes < range.min) {
        self.errors.push({ keyword: SIZE_KEYWORD, message: `${what} is below the minimum of ${range.min} bytes`, params: {} });
        return false;
      }
      if (range.max !== undefined && bytes > range.max) {
        self.errors.push({ keyword: SIZE_KEYWORD, message: `${what} is above the maximum of ${range.max} bytes`, params: {} });
        return false;
      }
      return true;
    },
  });
  return ajv;
}

export interface HumanizeOptions {
  /** pattern -> what a match looks like ("a valid WWN: naa.<16 hex>"), for pattern errors. */
  patternHints?: ReadonlyMap<string, string>;
  /** Extra words for an unknown key, e.g. which fabrics do have it. */
  unknownKeyHint?: (path: readonly (string | number)[], key: string) => string | undefined;
}

/** ajv errors as ConfigIssues, located in the YAML source, most useful wording first. */
export function humanizeErrors(errors: readonly ErrorObject[], doc: LocatedYaml, data: unknown, opts: HumanizeOptions = {}): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const hasInner = new Set(errors.filter((e) => e.propertyName !== undefined).map((e) => e.instancePath));
  for (const e of errors) {
    if (e.keyword === 'propertyNames' && hasInner.has(e.instancePath)) continue;
    if (e.keyword === 'pattern' && e.params.pattern === SIZE_PATTERN) continue; // the size keyword says it better
    const r = describe(e, pointerToPath(e.instancePath, data), opts);
    if (r === undefined) continue;
    const loc = doc.locate(r.path);
    issues.push({ path: formatPath(r.path), line: loc.line, column: loc.column, message: r.message });
  }
  return issues;
}

type Path = (string | number)[];

function describe(e: ErrorObject, path: Path, opts: HumanizeOptions): { path: Path; message: string } | undefined {
  const p = e.params as Record<string, unknown>;
  const parent = (e.parentSchema ?? {}) as Record<string, unknown>;
  const data = e.data;
  if (e.propertyName !== undefined) {
    return { path: [...path, e.propertyName], message: `invalid key '${e.propertyName}'${e.keyword === 'pattern' ? ` (must match ${String(p.pattern)})` : ''}` };
  }
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      const allowed = Object.keys((parent.properties as object | undefined) ?? {});
      const extra = opts.unknownKeyHint?.(path, key);
      const guess = didYouMean(key, allowed);
      const tail = extra ? `: ${extra}` : guess ? ` (did you mean ${guess}?)` : allowed.length > 0 && allowed.length <= 10 ? ` (expected ${allowed.join(', ')})` : '';
      return { path: [...path, key], message: `unknown key '${key}'${tail}` };
    }
    case 'required': {
      const key = String(p.missingProperty);
      const doc = ((parent.properties as Record<string, { description?: string }> | undefined)?.[key])?.description;
      return { path, message: `missing required key '${key}'${doc ? `: ${lowerFirst(doc).replace(/\.$/, '')}` : ''}` };
    }
    case 'type':
      return { path, message: `must be ${typeWords(String(p.type))}, not ${describeValue(data)}` };
    case 'enum': {
      const allowed = (p.allowedValues as unknown[]) ?? [];
      const guess = typeof data === 'string' ? didYouMean(data, allowed.map(String)) : undefined;
      return { path, message: `must be one of ${allowed.map(String).join(', ')}, not ${describeValue(data)}${guess ? ` (did you mean ${guess}?)` : ''}` };
    }
    case 'const':
      return { path, message: `must be ${JSON.stringify(p.allowedValue)}, not ${describeValue(data)}` };
    case 'minimum':
    case 'maximum': {
      const min = parent.minimum as number | undefined;
      const max = parent.maximum as number | undefined;
      const range = min !== undefined && max !== undefined ? `between ${min} and ${max}` : min !== undefined ? `at least ${min}` : `at most ${max}`;
      return { path, message: `must be ${range}, not ${String(data)}` };
    }
    case 'pattern': {
      const hint = opts.patternHints?.get(String(p.pattern));
      return { path, message: hint ? `'${String(data)}' is not ${hint}` : `'${String(data)}' does not match ${String(p.pattern)}` };
    }
    case 'minLength':
      return { path, message: p.limit === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters long` };
    case 'maxLength':
      return { path, message: `must be at most ${String(p.limit)} characters long` };
    case 'minItems':
      return { path, message: `must have at least ${String(p.limit)} item${p.limit === 1 ? '' : 's'}` };
    case 'maxItems':
      return { path, message: `must have at most ${String(p.limit)} items` };
    case 'minProperties':
      return { path, message: `must have at least ${String(p.limit)} key${p.limit === 1 ? '' : 's'}` };
    case 'uniqueItems':
      return { path: [...path, Number(p.i)], message: `duplicate of item ${String(p.j)}` };
    case 'discriminator': {
      const tag = String(p.tag);
      if (p.error === 'mapping') {
        const allowed = ((parent.oneOf as { properties?: Record<string, { const?: unknown }> }[] | undefined) ?? [])
          .map((b) => b.properties?.[tag]?.const)
          .filter((v): v is string => typeof v === 'string');
        const guess = typeof p.tagValue === 'string' ? didYouMean(p.tagValue, allowed) : undefined;
        return {
          path: [...path, tag],
          message: `unknown ${tag} ${typeof p.tagValue === 'string' ? `'${p.tagValue}'` : describeValue(p.tagValue)} (expected ${allowed.join(', ')})${guess ? `; did you mean ${guess}?` : ''}`,
        };
      }
      const obj = data as Record<string, unknown> | null;
      if (obj && typeof obj === 'object' && tag in obj) return { path: [...path, tag], message: `must be a string, not ${describeValue(obj[tag])}` };
      return { path, message: `missing required key '${tag}'` };
    }
    case 'oneOf':
      return undefined; // only after a discriminator error, which says more
    case SIZE_KEYWORD:
      return { path, message: e.message ?? 'not a size' };
    default:
      return { path, message: e.message ?? `fails ${e.keyword}` };
  }
}

/** JSON pointer to a path, with array indexes as numbers (walking the data to know which are arrays). */
function pointerToPath(pointer: string, data: unknown): Path {
  if (pointer === '') return [];
  const out: Path = [];
  let cur: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      out.push(Number(seg));
      cur = cur[Number(seg)];
    } else {
      out.push(seg);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}

function typeWords(t: string): string {
  const words: Record<string, string> = {
    boolean: 'true or false',
    integer: 'a whole number',
    number: 'a number',
    string: 'a string',
    object: 'a mapping',
    array: 'a list',
    null: 'empty',
  };
  return t.split(',').map((x) => words[x] ?? x).join(' or ');
}

/** A value as YAML users think of it: "string 'yes'", "number 1.5", "a list". */
export function describeValue(v: unknown): string {
  if (v === null || v === undefined) return 'empty';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `string '${v}'`;
  if (typeof v === 'number') return `number ${v}`;
  if (typeof v === 'boolean') return `${v}`;
  return String(v);
}

function lowerFirst(s: string): string {
  return /^[A-Z][a-z]/.test(s) ? s[0].toLowerCase() + s.slice(1) : s;
}

/** The closest candidate within a small edit distance (case ignored), if any. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  return best !== undefined && bestDist <= limit ? best : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps cost 1. */
function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) cur[j] = Math.min(cur[j], before[j - 2] + 1);
    }
    before = prev;
    prev = cur;
  }
  return prev[b.length];
}
