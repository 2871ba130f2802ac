// The house's layering, read from the sources' own imports (type imports
// included): no import circles among product files, and imports that only go
// down: native < engine (src: core < scsi, model) < backstores, fabrics <
// app < cli, tools. tcli loads neither fabrics nor the addon at run time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(__dirname, '..', '..');
const PRODUCT = ['native', 'src', 'backstores', 'fabrics', 'app', 'cli', 'tools'];

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return tsFiles(p);
    return n.endsWith('.ts') ? [p] : [];
  });
}

function resolveImport(from: string, spec: string): string | undefined {
  const base = resolve(dirname(from), spec);
  for (const c of [`${base}.ts`, join(base, 'index.ts')]) if (existsSync(c)) return c;
  return undefined;
}

/** Project-relative file -> the project-relative files it imports (relative specifiers only). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const f of PRODUCT.flatMap((d) => tsFiles(join(ROOT, d)))) {
    const info = ts.preProcessFile(readFileSync(f, 'utf8'), true, true);
    const deps = info.importedFiles
      .map((i) => i.fileName)
      .filter((s) => s.startsWith('.'))
      .map((s) => resolveImport(f, s))
      .filter((p): p is string => p !== undefined)
      .map((p) => relative(ROOT, p));
    graph.set(relative(ROOT, f), deps);
  }
  return graph;
}

/** What each part may import besides itself. */
const ALLOWED: [RegExp, RegExp[]][] = [
  [/^native\//, []],
  // The contracts may name the model's types: a fabric serves the model's targets.
  [/^src\/core\/fabric\.ts$/, [/^src\/core\//, /^src\/model\//]],
  [/^src\/core\//, [/^src\/core\//]],
  [/^src\/scsi\//, [/^src\/core\//, /^src\/scsi\//]],
  [/^src\/model\//, [/^src\/core\//, /^src\/model\//]],
  [/^backstores\//, [/^src\/(core|scsi|model)\//, /^native\//, /^backstores\//]],
  [/^fabrics\/([^/]+)\//, [/^src\/(core|scsi|model)\//, /^native\//]],
  [/^app\//, [/^src\/(core|scsi|model)\//, /^native\//, /^backstores\//, /^fabrics\//, /^app\//]],
  [/^cli\//, [/^cli\//, /^app\/control\/wire\.ts$/, /^app\/config\//]],
  [/^tools\//, [/^tools\//, /^src\/(core|scsi|model)\//, /^native\//, /^fabrics\//]],
];

test('imports only go down the layers', () => {
  const wrong: string[] = [];
  for (const [file, deps] of importGraph()) {
    const rule = ALLOWED.find(([re]) => re.test(file));
    assert.ok(rule, `${file} belongs to no layer`);
    const own = file.match(/^fabrics\/[^/]+\//)?.[0];
    for (const d of deps) {
      if (own && d.startsWith(own)) continue; // a fabric imports its own files, never another fabric's
      if (!rule[1].some((re) => re.test(d))) wrong.push(`${file} -> ${d}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('nothing inside tsio imports the package entry', () => {
  const users = [...importGraph()].filter(([, deps]) => deps.includes('app/index.ts')).map(([f]) => f);
  assert.deepEqual(users, []);
});

test('no import circles among product files', () => {
  const graph = importGraph();
  const circles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (state.get(d) === 'open') circles.push([...stack.slice(stack.indexOf(d)), d].join(' -> '));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  assert.deepEqual(circles, []);
});

test('tcli loads no fabric, backstore, daemon or native addon', () => {
  // The compiled program's run-time requires: type imports are gone there.
  const seen = new Set<string>();
  const walk = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/require\("(\.{1,2}\/[^"]+)"\)/g)) {
      const p = resolve(dirname(file), m[1]);
      walk(existsSync(`${p}.js`) ? `${p}.js` : join(p, 'index.js'));
    }
  };
  walk(join(ROOT, 'dist', 'cli', 'tcli.js'));
  const loaded = [...seen].map((f) => relative(join(ROOT, 'dist'), f));
  assert.ok(loaded.length > 3, `read the compiled tcli: ${loaded.join(', ')}`);
  const forbidden = loaded.filter((f) => /^(fabrics|backstores|native|app\/daemon|app\/registry|app\/control\/server)/.test(f));
  assert.deepEqual(forbidden, []);
});
