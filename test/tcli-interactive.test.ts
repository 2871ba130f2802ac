// tcli in a real terminal: tmux runs it, send-keys types, capture-pane reads
// the screen. A private tmux server (-S) keeps this apart from any other.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTsiod, TCLI, type Daemon } from './util/tsiod';

// The server's socket lives in a directory of this test's own, removed afterwards.
const TMUX_DIR = mkdtempSync(join(tmpdir(), 'tsio-tmux-sock-'));
const SERVER = join(TMUX_DIR, 'tmux.sock');
const IQN = 'iqn.2026-11.org.tsio:typed';
const INIT = 'iqn.2026-11.org.example:typist';

function tmux(...args: string[]): string {
  const p = spawnSync('tmux', ['-S', SERVER, '-f', '/dev/null', ...args], { encoding: 'utf8' });
  if (p.error) throw new Error(`tmux is needed for this test (scripts/install-deps --test installs it): ${p.error.message}`);
  if (p.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${p.stderr}`);
  return p.stdout;
}

const screen = () => tmux('capture-pane', '-p', '-J', '-S', '-', '-t', 'tcli');

async function waitFor(re: RegExp, ms = 10_000): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const s = screen();
    if (re.test(s)) return s;
    if (Date.now() > until) throw new Error(`timed out waiting for ${re} on the screen:\n${s}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const escape = (t: string) => t.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * Types text (literally), waits until the terminal echoes it, then sends the keys one by one.
 * Node's readline takes a Tab arriving in the same read as other characters for pasted text
 * (inserted, not completed), so a person's pause before Tab is part of the test.
 */
async function type(text: string, keys: string[] = ['Enter']): Promise<void> {
  tmux('send-keys', '-t', 'tcli', '-l', text);
  await waitFor(new RegExp(`${escape(text)}$`, 'm'));
  for (const k of keys) {
    tmux('send-keys', '-t', 'tcli', k);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Presses Tab until the screen matches (a few tries), then waits for it as waitFor does. */
async function tabUntil(re: RegExp): Promise<string> {
  for (let i = 0; i < 4 && !re.test(screen()); i++) {
    await new Promise((r) => setTimeout(r, 1500));
    if (!re.test(screen())) tmux('send-keys', '-t', 'tcli', 'Tab');
  }
  return waitFor(re);
}

/** Number of prompts ("PATH> ") on the screen so far, to wait for the next one. */
const prompts = (s: string) => (s.match(/^\/[^\n]*> /gm) ?? []).length;

async function run(text: string): Promise<string> {
  const before = prompts(screen());
  await type(text);
  const until = Date.now() + 10_000;
  for (;;) {
    const s = screen();
    if (prompts(s) > before && /> $/.test(s.trimEnd() + ' ')) return s;
    if (Date.now() > until) throw new Error(`no prompt after '${text}':\n${s}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let daemon: Daemon | undefined;

after(async () => {
  spawnSync('tmux', ['-S', SERVER, 'kill-server']);
  rmSync(TMUX_DIR, { recursive: true, force: true });
  await daemon?.stop();
});

test('typing in tcli builds an iSCSI target with a LUN and an ACL; Tab completes; a typo is one line; the wizard takes back what it made when abandoned; exit saves', async () => {
  daemon = await startTsiod('');
  const dir = daemon.dir;
  const save = join(dir, 'etc', 'saveconfig.yaml');
  tmux('new-session', '-d', '-s', 'tcli', '-x', '160', '-y', '50',
    `env TCLI_HOME=${join(dir, 'home')} NO_COLOR=1 ${process.execPath} ${TCLI} --control ${daemon.sock}; echo TCLI-EXITED-$?; sleep 600`);
  await waitFor(/connected to tsiod/);
  await waitFor(/^\/> $/m);

  await run('/backstores/rd_mcp create ram0 64MiB');
  await run(`/iscsi create ${IQN}`);
  let s = await run(`cd /iscsi/${IQN}/tpg1`);
  assert.match(s, new RegExp(`Created target ${IQN.replace(/\./g, '\\.')}\\.\\nCreated TPG 1\\.`));
  s = await run('luns create /backstores/rd_mcp/ram0');
  assert.match(s, /Created LUN 0\./);
  s = await run(`acls create ${INIT}`);
  assert.match(s, /Created Node ACL for iqn\.2026-11\.org\.example:typist/);

  // Tab: a path...
  await type('cd /backs', ['Tab']);
  await waitFor(/> cd \/backstores\/$/m);
  tmux('send-keys', '-t', 'tcli', 'C-u');
  // ... a parameter name, then an enumerated value.
  await type('set attribute generate_nod', ['Tab']);
  await waitFor(/> set attribute generate_node_acls=$/m);
  await type('f', ['Tab']);
  await waitFor(/> set attribute generate_node_acls=false$/m);
  tmux('send-keys', '-t', 'tcli', 'C-u');
  // Two candidates: the second Tab lists them.
  // Completion is asynchronous (it asks tsiod), so on a loaded machine two quick Tabs can land before the
  // first one's answer and count as one: press again until the list shows, as a person would.
  await type('set parameter Max', ['Tab', 'Tab']);
  await tabUntil(/MaxConnections=\s+MaxRecvDataSegmentLength=.*MaxBurstLength=/);
  tmux('send-keys', '-t', 'tcli', 'C-u');

  s = await run('ls /');
  const tree = s.slice(s.lastIndexOf('ls /'));
  assert.match(tree, /o- \/ \.+ \[\.\.\.\]/);
  assert.match(tree, /\| \| o- ram0 \.+ \[\(64\.0MiB\) activated\]/);
  assert.match(tree, new RegExp(`o- ${IQN.replace(/\./g, '\\.')} \\.+ \\[TPGs: 1\\]`));
  assert.match(tree, /o- lun0 \.+ \[rd_mcp\/ram0\]/);
  assert.match(tree, /o- iqn\.2026-11\.org\.example:typist \.+ \[Mapped LUNs: 1\]/);
  assert.match(tree, /o- mapped_lun0 \.+ \[lun0 rd_mcp\/ram0 \(rw\)\]/);

  // A mistyped command: exactly one line of error, then the prompt again.
  s = await run('lss');
  const after = s.slice(s.lastIndexOf('> lss') + 5).split('\n').filter((l) => l !== '');
  assert.deepEqual(after.slice(0, 1), ['error: command not found: lss (did you mean ls?)']);
  assert.match(after[1], /> $/);

  // Clearing a LUN's reservations asks first (batch mode wants confirm=true instead).
  await type('/backstores/rd_mcp/ram0 reservations clear');
  await waitFor(/Drop every registration and the reservation of \/backstores\/rd_mcp\/ram0\?/);
  s = await run('n');
  assert.match(s, /Not cleared\./);
  await type('/backstores/rd_mcp/ram0 reservations clear');
  await waitFor(/Not cleared\.[\s\S]*Drop every registration and the reservation of/);
  s = await run('y');
  assert.match(s, /0 registrations of \/backstores\/rd_mcp\/ram0 cleared\./);

  // The wizard (inquirer prompts): a RAM disk exported over loopback, step by step.
  await type('wizard');
  await waitFor(/Backstore type/);
  const key = async (k: string, wait: RegExp) => {
    tmux('send-keys', '-t', 'tcli', k);
    await waitFor(wait);
  };
  // Moves a menu's cursor down to a choice: the menus list every plugin and fabric, so the count of keys is not fixed.
  const choose = async (name: string) => {
    for (let i = 0; i < 16; i++) {
      const s = screen();
      if (/^[\w-]+/.exec(s.slice(s.lastIndexOf('❯ ') + 2))?.[0] === name) return;
      tmux('send-keys', '-t', 'tcli', 'Down');
      await new Promise((r) => setTimeout(r, 150));
    }
    throw new Error(`no menu choice ${name} on the screen:\n${screen()}`);
  };
  await choose('rd_mcp');
  await key('Enter', /Storage object name/);
  await type('wizram', ['Enter']);
  await waitFor(/size \(Capacity/);
  await key('Enter', /Created rd_mcp storage object \/backstores\/rd_mcp\/wizram\./);
  await waitFor(/\? Fabric/);
  await choose('loopback');
  await key('Enter', /Target WWN/);
  await key('Enter', /Created LUN 0 \(\/backstores\/rd_mcp\/wizram\)\.\n.*> $/m);
  // Back at the prompt, keys are echoed once (the terminal mode is ours again).
  s = await run('ls /loopback');
  assert.match(s, /> ls \/loopback\n/);
  assert.match(s, /o- lun0 \.+ \[rd_mcp\/wizram\]/);

  // The wizard for iSCSI asks for the portal's address and port; abandoned (Ctrl-C), it takes back what it made.
  // A clean screen first: what the first wizard printed must not answer the waits below.
  tmux('send-keys', '-t', 'tcli', 'C-l');
  await new Promise((r) => setTimeout(r, 300));
  tmux('clear-history', '-t', 'tcli');
  await type('wizard');
  await waitFor(/Backstore type/);
  await choose('rd_mcp');
  await key('Enter', /Storage object name/);
  await type('wizgone', ['Enter']);
  await waitFor(/size \(Capacity/);
  await key('Enter', /Created rd_mcp storage object \/backstores\/rd_mcp\/wizgone\./);
  await waitFor(/\? Fabric/);
  await key('Enter', /Target WWN/);
  await key('Enter', /Created LUN 0 \(\/backstores\/rd_mcp\/wizgone\)\.[\s\S]*Portal address/);
  await type('127.0.0.1', ['Enter']);
  await waitFor(/Portal port/);
  tmux('send-keys', '-t', 'tcli', 'C-c');
  s = await waitFor(/error: wizard abandoned; removed what it had created: target \/iscsi\/iqn\.[^,]+, storage object \/backstores\/rd_mcp\/wizgone\n.*> $/m);
  s = await run('ls /backstores/rd_mcp');
  assert.doesNotMatch(s.slice(s.lastIndexOf('ls /backstores/rd_mcp')), /wizgone/);

  // Tab after a relative path's command completes its arguments.
  await run(`cd /iscsi/${IQN}/tpg1`);
  await type('luns create ', ['Tab', 'Tab']);
  await tabUntil(/storage_object=\s+lun=\s+alias=\s+add_mapped_luns=/);
  tmux('send-keys', '-t', 'tcli', 'C-u');
  await run('cd /');

  // exit: the config differs from the saved file, and auto_save_on_exit (on by default, as in targetcli) saves it.
  await type('exit');
  s = await waitFor(/TCLI-EXITED-0/);
  assert.match(s, /Configuration saved to .*saveconfig\.yaml \(global auto_save_on_exit\)/);
  assert.ok(existsSync(save));
  assert.match(readFileSync(save, 'utf8'), new RegExp(`node_wwn: ${INIT}`));
  const history = readFileSync(join(dir, 'home', 'history'), 'utf8');
  assert.match(history, /^luns create \/backstores\/rd_mcp\/ram0$/m);
  assert.doesNotMatch(history, /^wizgone$/m, 'prompt answers are not history');
});
