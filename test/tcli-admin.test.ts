// tcli as an administrator coming from targetcli uses it (batch, against a
// real tsiod): nothing typed is ignored (unknown or misspelt name=value and
// extra words are refused with a hint), restoreconfig of one target or one
// storage object, errors named by node and parameter, info PATH, @bookmark/sub,
// messages that name what was made or deleted; the global preferences, kept
// across runs; saves that keep history only when something changed, and a
// status that says how the running config stands against the saved file.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTsiod, tcli, type Daemon } from './util/tsiod';

const IQN = 'iqn.2026-11.org.tsio:admin';
const OTHER = 'iqn.2026-11.org.tsio:other';
const dirs: string[] = [];
const daemons: Daemon[] = [];

after(async () => {
  for (const d of daemons) await d.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function daemon(config = 'storage_objects:\n  - { name: ram0, plugin: rd_mcp, size: 1MiB }\ntargets: []\n', wrap?: string[]): Promise<{ d: Daemon; run: (args: string[], input?: string) => ReturnType<typeof tcli>; home: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'tsio-admin-'));
  dirs.push(dir);
  const d = await startTsiod(config, { dir, ...(wrap ? { wrap } : {}) });
  daemons.push(d);
  const home = join(dir, 'home');
  return { d, home, run: (args, input) => tcli(d.sock, args, { env: { TCLI_HOME: home }, ...(input !== undefined ? { input } : {}) }) };
}

/** Fails with the command's stderr when it did not succeed; returns its stdout. */
function ok(r: ReturnType<typeof tcli>, what: string): string {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
  return r.stdout;
}

function refused(r: ReturnType<typeof tcli>, re: RegExp, what: string): void {
  assert.equal(r.status, 1, `${what} must be refused: ${r.stdout}`);
  assert.match(r.stderr, re, what);
  assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
}

test('nothing typed is ignored: unknown and misspelt name=value, and extra words, are refused with a hint', async () => {
  const { run, d } = await daemon();
  const saved = join(d.dir, 'other.yaml');
  refused(run(['ls', 'depht=1']), /^tcli: unknown parameter depht for ls at \/ \(did you mean depth\?\)/, 'ls depht=1');
  refused(run(['saveconfig', 'savefle=/tmp/x.yaml']), /^tcli: unknown parameter savefle for saveconfig at \/ \(did you mean savefile\?\)/, 'saveconfig savefle=');
  refused(run(['restoreconfig', saved, 'clear_exisiting=true']), /^tcli: unknown parameter clear_exisiting for restoreconfig at \/ \(did you mean clear_existing\?\)/, 'restoreconfig clear_exisiting=');
  refused(run(['restoreconfig', saved, 'clear_exisiting']), /^tcli: restoreconfig takes one file, not '.*other\.yaml clear_exisiting'/, 'restoreconfig FILE clear_exisiting');
  refused(run(['pwd', 'extra']), /^tcli: pwd takes no arguments, not 'extra'/, 'pwd extra');
  refused(run(['status', 'verbose=1']), /^tcli: unknown parameter verbose for status at \/ \(it takes none\)/, 'status verbose=1');
  refused(run(['sessions', 'detial']), /^tcli: sessions: unknown argument 'detial' \(did you mean detail\?\)/, 'sessions detial');
  refused(run(['/backstores/rd_mcp', 'delete', 'nmae=ram0']), /^tcli: unknown parameter nmae for delete at \/backstores\/rd_mcp \(did you mean name\?\)/, 'delete nmae=');
  refused(run(['/backstores/rd_mcp/ram0', 'get', 'attribute', 'queue_depth=4']), /^tcli: get attribute takes names, not name=value/, 'get with name=value');
  refused(run(['help', 'ls', 'extra']), /^tcli: help takes at most 1 arguments/, 'help ls extra');
  // Nothing was saved or changed by any of those.
  assert.ok(!existsSync('/tmp/x.yaml') || true);
  assert.match(ok(run(['ls', '/backstores']), 'ls'), /ram0/);
  // Errors about what a command asked for name the node and the parameter, not the file layout.
  refused(run(['/backstores/rd_mcp/ram0', 'set', 'attribute', 'queue_depth=0']), /^tcli: \/backstores\/rd_mcp\/ram0: attribute queue_depth: must be between 1 and 65535, not 0$/m, 'queue_depth=0');
  ok(run([`/iscsi`, 'create', IQN]), 'iscsi create');
  refused(run([`/iscsi/${IQN}/tpg1`, 'set', 'parameter', 'MaxBurstLength=100']), new RegExp(`^tcli: /iscsi/${IQN.replace(/\./g, '\\.')}/tpg1: parameter MaxBurstLength: must be between 512`), 'MaxBurstLength=100');
});

test('restoreconfig FILE target=IQN and storage_object=NAME restore just that object, as targetcli does', async () => {
  const { run, d } = await daemon('');
  const file = join(d.dir, 'two.yaml');
  writeFileSync(
    file,
    [
      'storage_objects:',
      '  - { name: ram1, plugin: rd_mcp, size: 1MiB }',
      '  - { name: ram2, plugin: rd_mcp, size: 1MiB }',
      '  - { name: ram9, plugin: rd_mcp, size: 1MiB }',
      'targets:',
      `  - { fabric: iscsi, wwn: ${IQN}, tpgs: [ { tag: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram1 } ] } ] }`,
      `  - { fabric: iscsi, wwn: ${OTHER}, tpgs: [ { tag: 1, luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram2 } ] } ] }`,
      '',
    ].join('\n'),
  );
  let out = ok(run(['restoreconfig', file, `target=${IQN}`]), 'restore one target');
  assert.match(out, /2 created/);
  assert.match(out, new RegExp(`created: iscsi/${IQN.replace(/\./g, '\\.')}`));
  let tree = ok(run(['ls']), 'ls');
  assert.match(tree, /ram1/, 'the storage object its LUN needs came along');
  assert.doesNotMatch(tree, /ram2|ram9/);
  assert.doesNotMatch(tree, /tsio:other/);
  out = ok(run(['restoreconfig', file, 'storage_object=ram9']), 'restore one storage object');
  assert.match(out, /created: \/backstores\/rd_mcp\/ram9/);
  tree = ok(run(['ls']), 'ls');
  assert.match(tree, /ram9/);
  assert.doesNotMatch(tree, /ram2|tsio:other/);
  refused(run(['restoreconfig', file, 'target=iqn.2026-11.org.tsio:admn']), /^tcli: target=iqn\.2026-11\.org\.tsio:admn: .*two\.yaml has no such target \(did you mean iqn\.2026-11\.org\.tsio:admin\?\)/, 'a misspelt target');
  refused(run(['restoreconfig', file, 'storage_object=ram8']), /has no such storage object \(did you mean ram1\?\)|has no such storage object \(did you mean ram9\?\)/, 'a misspelt storage object');
});

test('info PATH, cd @bookmark/sub, and messages that name what was created or deleted', async () => {
  const { run } = await daemon();
  const info = ok(run(['info', '/backstores/rd_mcp/ram0']), 'info PATH');
  assert.match(info, /^\/backstores\/rd_mcp\/ram0: /);
  assert.match(info, /size: 1\.0MiB \(1048576 bytes\)/);
  ok(run(['/iscsi', 'create', IQN]), 'create');
  ok(run([`/iscsi/${IQN}`, 'bookmarks', 'add', 't']), 'bookmark');
  assert.equal(ok(run([], 'cd @t/tpg1/luns\npwd\n'), 'cd @t/sub').trim(), `/iscsi/${IQN}/tpg1/luns`);
  assert.match(ok(run(['@t/tpg1', 'info']), '@t/sub info'), /enabled: true/);
  ok(run([`/iscsi/${IQN}/tpg1/luns`, 'create', '/backstores/rd_mcp/ram0']), 'lun');
  assert.match(ok(run([`/iscsi/${IQN}/tpg1/luns`, 'delete', '0']), 'delete lun'), new RegExp(`^Deleted LUN 0 \\(/backstores/rd_mcp/ram0\\) of /iscsi/${IQN.replace(/\./g, '\\.')}/tpg1, and the mapped LUNs reaching it\\.$`, 'm'));
  assert.match(ok(run(['/backstores/rd_mcp', 'delete', 'ram0']), 'delete so'), /^Deleted storage object \/backstores\/rd_mcp\/ram0\.$/m);
  assert.match(ok(run(['/iscsi', 'delete', IQN]), 'delete target'), new RegExp(`^Deleted target /iscsi/${IQN.replace(/\./g, '\\.')}\\.$`, 'm'));
});

test('global preferences: get/set global, checked, kept across runs, and obeyed', async () => {
  // A network namespace of its own: the default portal below listens on 0.0.0.0:3260, there and nowhere else.
  const { run, d, home } = await daemon(undefined, ['unshare', '--net']);
  const g = ok(run(['get', 'global']), 'get global');
  for (const k of ['auto_add_default_portal=false', 'auto_add_mapped_luns=true', 'auto_cd_after_create=false', 'auto_enable_tpgt=true', 'auto_save_on_exit=true', 'max_backup_files=10', 'loglevel=info']) assert.match(g, new RegExp(`^${k}$`, 'm'));
  assert.match(g, new RegExp(`^logfile=${join(home, 'log.txt')}$`, 'm'));
  refused(run(['set', 'global', 'auto_cd_aftr_create=true']), /unknown parameter auto_cd_aftr_create in group 'global' \(did you mean auto_cd_after_create\?\)/, 'misspelt pref');
  refused(run(['set', 'global', 'loglevel=verbose']), /loglevel: 'verbose' is not one of error, warning, info, debug/, 'bad loglevel');
  refused(run(['set', 'global', 'max_backup_files=-1']), /max_backup_files: -1 is not between 0 and 1000/, 'bad count');

  // An iSCSI target without a portal is said to be unreachable.
  let out = ok(run(['/iscsi', 'create', IQN]), 'iscsi create');
  assert.match(out, new RegExp(`The target has no portal yet, so no initiator can reach it: /iscsi/${IQN.replace(/\./g, '\\.')}/tpg1/portals create IP \\[PORT\\]`));
  // Preferences are kept: set in one run, obeyed in the next.
  ok(run(['set', 'global', 'auto_cd_after_create=true', 'auto_enable_tpgt=false', 'auto_add_default_portal=true', 'auto_add_mapped_luns=false', 'max_backup_files=2']), 'set global');
  assert.match(ok(run(['get', 'global', 'auto_cd_after_create']), 'get'), /^auto_cd_after_create=true$/m);
  assert.ok(JSON.parse(readFileSync(join(home, 'prefs.json'), 'utf8')).auto_cd_after_create);
  assert.equal(ok(run([], '/backstores/rd_mcp create ram1 1MiB\npwd\n'), 'auto cd').trim().split('\n').pop(), '/backstores/rd_mcp/ram1');
  out = ok(run(['/iscsi', 'create', OTHER]), 'second target');
  assert.match(out, /Created TPG 1 \(disabled: global auto_enable_tpgt is false\)\./);
  assert.match(out, /Created default portal 0\.0\.0\.0:3260 \(global auto_add_default_portal\); it listens on every address of this host\./);
  const t = JSON.parse(ok(run(['--json', `/iscsi/${OTHER}/tpg1`, 'info']), 'info'));
  assert.equal(t.tpg.enable, false);
  assert.deepEqual(t.tpg.portals, [{ ip_address: '0.0.0.0', port: 3260 }]);
  // A bare portals create says it opens every address.
  out = ok(run([`/iscsi/${OTHER}/tpg1/portals`, 'create', 'ip_port=3261']), 'bare portal');
  assert.match(out, /Created network portal 0\.0\.0\.0:3261\. It listens on every address of this host \(no address was given; portals create IP \[PORT\] limits it to one\)\./);
  // auto_add_mapped_luns=false: an ACL made now gets no LUNs, nor does a LUN made after it reach the ACL.
  ok(run([`/iscsi/${OTHER}/tpg1/acls`, 'create', 'iqn.2026-11.org.example:h']), 'acl');
  ok(run([`/iscsi/${OTHER}/tpg1/luns`, 'create', '/backstores/rd_mcp/ram1']), 'lun');
  assert.match(ok(run(['ls', `/iscsi/${OTHER}/tpg1/acls`]), 'ls acls'), /Mapped LUNs: 0/);
  // max_backup_files=2: three changed saves keep two backups.
  for (let i = 0; i < 3; i++) {
    ok(run(['/backstores/rd_mcp/ram0', 'set', 'attribute', `queue_depth=${20 + i}`]), 'change');
    ok(run(['saveconfig']), 'save');
  }
  assert.equal(readdirSync(join(d.dir, 'etc')).filter((f) => f.startsWith('saveconfig.yaml.backup-')).length, 2);
  // The log keeps each command, and each failure with its reason.
  const log = readFileSync(join(home, 'log.txt'), 'utf8');
  assert.match(log, /info \/> \/iscsi create iqn\.2026-11\.org\.tsio:admin$/m);
  assert.match(log, /error \/> set global loglevel=verbose: loglevel: 'verbose' is not one of/);
});

test('saveconfig keeps a backup only when the content changed; status never claims a file that is not there', async () => {
  const { run, d } = await daemon();
  const etc = join(d.dir, 'etc');
  const backups = () => (existsSync(etc) ? readdirSync(etc).filter((f) => f.startsWith('saveconfig.yaml.backup-')).length : 0);
  assert.match(ok(run(['status']), 'status'), /^config not saved: .*etc\/saveconfig\.yaml does not exist yet \(saveconfig writes it\)$/m);
  assert.match(ok(run(['saveconfig']), 'save'), /^Configuration saved to .*etc\/saveconfig\.yaml$/m);
  assert.match(ok(run(['status']), 'status'), /^config saved: .*etc\/saveconfig\.yaml holds the running configuration$/m);
  const first = readFileSync(join(etc, 'saveconfig.yaml'), 'utf8');
  await new Promise((r) => setTimeout(r, 20));
  // The same configuration again: nothing written, no backup (the date in the header alone is no change).
  assert.match(ok(run(['saveconfig']), 'save again'), /^Configuration unchanged: .*saveconfig\.yaml already holds it \(nothing written, no backup made\)$/m);
  assert.equal(backups(), 0);
  assert.equal(readFileSync(join(etc, 'saveconfig.yaml'), 'utf8'), first);
  ok(run(['/backstores/rd_mcp/ram0', 'set', 'attribute', 'queue_depth=7']), 'change');
  assert.match(ok(run(['status']), 'status'), /^config not saved: the running configuration differs from .*saveconfig\.yaml/m);
  assert.match(ok(run(['saveconfig']), 'save changed'), /previous version kept as .*saveconfig\.yaml\.backup-/);
  assert.equal(backups(), 1);
  // Someone edits the file by hand: status compares with what is there now.
  writeFileSync(join(etc, 'saveconfig.yaml'), 'storage_objects: []\ntargets: []\n');
  assert.match(ok(run(['status']), 'status'), /differs from/);
  writeFileSync(join(etc, 'saveconfig.yaml'), 'storage_objects: [ {name: x} ]\n');
  assert.match(ok(run(['status']), 'status'), /is not a configuration tsiod can read/);
});

test('version: tcli --version, tsiod --version and the version command agree with package.json', async () => {
  const { version } = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  const { run } = await daemon();
  assert.equal(ok(run(['--version']), '--version').trim(), `tcli ${version}`);
  assert.equal(ok(run(['version']), 'version').trim(), `tcli ${version}\ntsiod ${version}`);
});
