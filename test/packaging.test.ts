// What the package ships and installs: manual pages and bash completion made
// at build time from the texts tcli and tsiod print (not kept in git), an npm
// package without tests or benchmarks, a completion that asks tcli, and a
// systemd unit whose exposure score is the one the README states (at most 5).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeDocs } from '../cli/gen-docs';
import { VERBS } from '../cli/commands';
import { specs } from '../app/config/specs';
import { startTsiod, TCLI, type Daemon } from './util/tsiod';

const ROOT = join(__dirname, '..', '..');
const dirs: string[] = [];
const daemons: Daemon[] = [];
after(async () => {
  for (const d of daemons) await d.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'tsio-pkg-'));
  dirs.push(d);
  return d;
}

test('the manual pages come from the command tables, the spec files and tsiod --help; none is in git', () => {
  const out = tmp();
  writeDocs(out);
  const tcli8 = readFileSync(join(out, 'man', 'tcli.8'), 'utf8');
  const tsiod8 = readFileSync(join(out, 'man', 'tsiod.8'), 'utf8');
  assert.match(tcli8, /^\.TH TCLI 8 "" "tsio \d+\.\d+\.\d+" "tsio"$/m);
  for (const v of VERBS) assert.ok(tcli8.includes(v.usage.replace(/\\/g, '\\e')), `tcli(8) has ${v.usage}`);
  assert.match(tcli8, /^\.SH GLOBAL PREFERENCES/m);
  assert.match(tcli8, /auto_save_on_exit +bool default true/);
  assert.match(tsiod8, /^\.SH OPTIONS$/m);
  const help = spawnSync(process.execPath, [join(ROOT, 'dist', 'app', 'daemon', 'tsiod.js'), '--help'], { encoding: 'utf8' }).stdout;
  for (const opt of help.match(/^ {2}--[a-z-]+/gm)!) assert.ok(tsiod8.includes(opt.trim()), `tsiod(8) has ${opt.trim()}`);
  for (const a of specs().storageAttributes) assert.ok(tsiod8.includes(a.name), `tsiod(8) documents ${a.name}`);
  // Every roff request line is one the pages mean to use: text never starts a line with a dot.
  for (const page of [tcli8, tsiod8]) for (const l of page.split('\n').filter((x) => x.startsWith('.'))) assert.match(l, /^\.(TH|SH|nf|fi)( |$)/, l);
  const tracked = spawnSync('git', ['-C', ROOT, 'ls-files', 'dist', '*.8', 'packaging/*completion*'], { encoding: 'utf8' }).stdout;
  assert.equal(tracked, '', 'generated files are not kept in git');
  const rendered = spawnSync('man', ['-l', '-Tutf8', join(out, 'man', 'tsiod.8')], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '120' } });
  if (rendered.error) throw new Error(`man is needed (scripts/install-deps --test installs man-db): ${rendered.error.message}`);
  assert.match(rendered.stdout, /TSIOD\(8\)/);
});

test('npm pack: the package ships the programs, the manual pages and the completion, no tests, benchmarks or source maps', () => {
  writeDocs(join(ROOT, 'dist'));
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path);
  for (const want of ['dist/app/daemon/tsiod.js', 'dist/cli/tcli.js', 'dist/native/index.js', 'dist/man/tsiod.8', 'dist/man/tcli.8', 'dist/completion/tcli', 'packaging/tsiod.service', 'specs/default.yaml', 'binding.gyp', 'native/addon.cc']) {
    assert.ok(files.includes(want), `ships ${want}`);
  }
  const unwanted = files.filter((f) => /^(dist\/)?(test|bench)\//.test(f) || f.endsWith('.map') || f.endsWith('.ts') && !f.endsWith('.d.ts'));
  assert.deepEqual(unwanted, [], 'no tests, benchmarks, maps or TypeScript sources');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  assert.deepEqual(pkg.man, ['./dist/man/tsiod.8', './dist/man/tcli.8'], 'npm links the pages on a global install');
});

test('bash completion asks tcli, which completes from the running tree (IQNs with colons too)', async () => {
  const dir = tmp();
  writeDocs(dir);
  const d = await startTsiod('storage_objects:\n  - { name: ram0, plugin: rd_mcp, size: 1MiB }\ntargets:\n  - { fabric: iscsi, wwn: iqn.2026-11.org.tsio:completed, tpgs: [ { tag: 1 } ] }\n', { dir });
  daemons.push(d);
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'tcli'), `#!/bin/sh\nexec '${process.execPath}' '${TCLI}' "$@"\n`);
  chmodSync(join(bin, 'tcli'), 0o755);
  const complete = (line: string): string[] => {
    const script = `source '${join(dir, 'completion', 'tcli')}'; COMP_LINE='${line}'; COMP_POINT=\${#COMP_LINE}; _tcli; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l !== '');
  };
  assert.deepEqual(complete(`tcli --control ${d.sock} /backstores/rd_mcp/`), ['/backstores/rd_mcp/ram0 ']);
  // bash replaces what follows the word's last colon: the candidate is cut there.
  assert.deepEqual(complete(`tcli --control ${d.sock} /iscsi/iqn.2026-11.org.tsio:comp`), ['completed/']);
  assert.deepEqual(complete(`tcli --control ${d.sock} /backstores/rd_mcp create name=r1 si`), ['size=']);
  assert.ok(complete(`tcli --control ${d.sock} sav`).includes('saveconfig '));
  assert.deepEqual(complete('tcli --vers'), ['--version ']);
});

test('the systemd unit: hardened to the exposure score the README states, at most 5.0', () => {
  const r = spawnSync('systemd-analyze', ['security', '--offline=yes', join(ROOT, 'packaging', 'tsiod.service')], { encoding: 'utf8' });
  if (r.error) throw new Error(`systemd-analyze is needed (scripts/install-deps --test installs systemd): ${r.error.message}`);
  const score = Number(/Overall exposure level for tsiod\.service: ([\d.]+)/.exec(r.stdout)?.[1]);
  assert.ok(score <= 5.0, `exposure ${score}`);
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.match(readme, new RegExp(`systemd-analyze security[^\\n]*\\b${score.toFixed(1).replace('.', '\\.')}\\b`), 'the README states the score');
  const unit = readFileSync(join(ROOT, 'packaging', 'tsiod.service'), 'utf8');
  assert.match(unit, /^Type=notify$/m);
  assert.match(unit, /^ExecStart=tsiod /m, 'found where npm install -g (/usr/local/bin) or a Debian install (/usr/bin) puts it');
  assert.match(unit, /^ExecReload=tcli /m);
});
