// YAML parsing that remembers where every node came from, so an error about
// `targets[0].tpgs[0].luns[1]` can name its line.
//
// js-yaml 4 has no AST, but its loader calls an (undocumented) `listener`
// with 'open' and 'close' around every composeNode. A stack of those events
// gives the node tree: a mapping's children arrive as key, value, key, value;
// a sequence's in order. Two loader habits need care (lib/loader.js):
//  - a block value is first composed as a would-be mapping key, and when no
//    ':' follows the outer node simply adopts the inner one's result; such a
//    wrapper has one child with the identical result and is collapsed;
//  - 'open' fires before leading whitespace/comments are skipped, so a node's
//    start is found by scanning forward from there.
// A mapping entry is located at its key (that is where a person looks for
// "attributes.emulate_tpux"); a sequence item at its first character.

import * as jsyaml from 'js-yaml';
import { ConfigError } from './errors';

export type YamlPath = readonly (string | number)[];

export interface SourceLocation {
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
}

export interface LocatedYaml {
  /** The parsed document (undefined for an empty one). */
  value: unknown;
  source: string;
  /** Where path is, or its nearest ancestor that exists in the source. */
  locate(path: YamlPath): SourceLocation;
}

interface LocNode {
  loc: SourceLocation;
  children?: Map<string, LocNode>;
}

/** What the listener sees of one composeNode call. */
interface RawNode {
  start: number;
  kind: string | null;
  result: unknown;
  children: RawNode[];
}

// Core schema (no timestamps: `2026-11-01` stays a string) plus merge keys, so
// anchors and `<<: *defaults` work in configs.
const CONFIG_SCHEMA = jsyaml.CORE_SCHEMA.extend({ implicit: [(jsyaml as unknown as { types: { merge: jsyaml.Type } }).types.merge] });

/** Parses one YAML document; a syntax error (or duplicate key) throws ConfigError naming its line. */
export function parseYaml(text: string, source: string): LocatedYaml {
  const stack: RawNode[] = [];
  const roots: RawNode[] = [];
  let input = '';
  let value: unknown;
  try {
    value = jsyaml.load(text, {
      filename: source,
      schema: CONFIG_SCHEMA,
      listener(event, state) {
        if (event === 'open') {
          input = state.input;
          stack.push({ start: state.position, kind: null, result: undefined, children: [] });
          return;
        }
        const node = stack.pop();
        if (node === undefined) return;
        node.kind = state.kind ?? null;
        node.result = state.result;
        (stack.length > 0 ? stack[stack.length - 1].children : roots).push(collapse(node));
      },
    });
  } catch (e) {
    if (e instanceof jsyaml.YAMLException) throw syntaxError(e, text, source);
    throw e;
  }
  const lines = lineStarts(input === '' ? text : input);
  const root = roots.length > 0 ? build(roots[roots.length - 1], input, lines) : undefined;
  const rootLoc = root?.loc ?? { line: 1, column: 1 };
  return {
    value,
    source,
    locate(path: YamlPath): SourceLocation {
      let node = root;
      let loc = rootLoc;
      for (const part of path) {
        node = node?.children?.get(String(part));
        if (node === undefined) break;
        loc = node.loc;
      }
      return loc;
    },
  };
}

function collapse(node: RawNode): RawNode {
  if (node.children.length === 1 && node.children[0].result === node.result && node.children[0].kind === node.kind) {
    return node.children[0];
  }
  return node;
}

function build(raw: RawNode, input: string, lines: number[], at?: SourceLocation): LocNode {
  const loc = at ?? position(contentStart(input, raw.start), lines);
  const node: LocNode = { loc };
  if (raw.kind === 'mapping') {
    node.children = new Map();
    for (let i = 0; i + 1 < raw.children.length; i += 2) {
      const key = raw.children[i];
      const keyLoc = position(contentStart(input, key.start), lines);
      node.children.set(String(key.result), build(raw.children[i + 1], input, lines, keyLoc));
    }
  } else if (raw.kind === 'sequence' && Array.isArray(raw.result)) {
    // Items match composed children in order; an empty block item ("-" alone)
    // is pushed without composing, so align by identity where results differ.
    node.children = new Map();
    const items = raw.result as unknown[];
    let item = 0;
    for (const child of raw.children) {
      let j = item;
      while (j < items.length && !Object.is(items[j], child.result)) j++;
      if (j < items.length) item = j;
      if (item >= items.length) break;
      node.children.set(String(item), build(child, input, lines));
      item++;
    }
  }
  return node;
}

/** First character of content at or after pos: skips blanks, line breaks and comments. */
function contentStart(input: string, pos: number): number {
  let p = pos;
  for (;;) {
    const ch = input[p];
    if (ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n') p++;
    else if (ch === '#') while (p < input.length && input[p] !== '\n') p++;
    else return p;
  }
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 0x0a) starts.push(i + 1);
  return starts;
}

function position(pos: number, starts: number[]): SourceLocation {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= pos) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, column: pos - starts[lo] + 1 };
}

function syntaxError(e: jsyaml.YAMLException, text: string, source: string): ConfigError {
  const mark = (e as unknown as { mark?: { line: number; column: number } }).mark;
  const reason = (e as unknown as { reason?: string }).reason ?? e.message;
  let line = mark ? mark.line + 1 : 1;
  let column = mark ? mark.column + 1 : 1;
  if (!mark && /single document/.test(reason)) {
    // No mark for "more than one document": point at the second document's "---".
    const markers = [...text.matchAll(/^---/gm)];
    const second = markers.length > 0 && text.slice(0, markers[0].index).trim() !== '' ? markers[0] : markers[1];
    if (second?.index !== undefined) {
      line = text.slice(0, second.index).split('\n').length;
      column = 1;
    }
  }
  return new ConfigError(source, [{ path: '', line, column, message: `YAML syntax error: ${reason}` }]);
}

/** "targets[0].tpgs[0].luns[1].storage_object"; odd keys quoted: attributes["a b"]. */
export function formatPath(path: YamlPath): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(part)) out += out === '' ? part : `.${part}`;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}
