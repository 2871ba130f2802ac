#!/usr/bin/env node
// tcli: the shell for a running tsiod, in the manner of targetcli.
//   tcli                        interactive (history, Tab completion, inquirer prompts)
//   tcli [PATH] COMMAND ARGS    one command, then exit (1 on error)
//   tcli -f SCRIPT              commands from a file, stopping at the first error
//   tcli help                   the manual

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as readline from 'node:readline';
import { ControlClient, RpcFailure } from './client';
import { Shell } from './shell';
import { ShellError } from './args';
import type { Prompter, ShellContext } from './command';
import { manual } from './help';
import { VERBS } from './commands';
import { specs } from '../app/config/specs';
import { DEFAULT_CONTROL_PATH } from '../app/control/wire';
import { tsioVersion } from '../app/config/version';

const USAGE = `usage: tcli [--control PATH] [--json] [-f SCRIPT | [PATH] COMMAND [ARGS...]]   (tcli help: the manual; tcli --version)`;

interface Args {
  control: string;
  json: boolean;
  /** --complete LINE: print the completions of a bash command line (the completion script asks). */
  complete?: string;
  script?: string;
  words: string[];
}

function parseArgs(argv: string[]): Args {
  const a: Args = { control: process.env.TSIO_CONTROL ?? DEFAULT_CONTROL_PATH, json: false, words: [] };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    if (a.words.length > 0) a.words.push(v);
    else if (v === '--control') a.control = argv[++i];
    else if (v.startsWith('--control=')) a.control = v.slice(10);
    else if (v === '--json') a.json = true;
    else if (v === '-f' || v === '--file') a.script = argv[++i];
    else if (v === '--complete') a.complete = argv[++i] ?? '';
    else if (v === '--version' || v === '-V') {
      console.log(`tcli ${tsioVersion()}`);
      process.exit(0);
    } else if (v === '--help' || v === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else if (v.startsWith('--')) {
      console.error(`tcli: unknown option ${v}\n${USAGE}`);
      process.exit(2);
    } else a.words.push(v);
  }
  return a;
}

/** A word for the shell: quoted when it holds spaces or quotes. */
const quote = (w: string) => (/[\s"'\\]/.test(w) || w === '' ? `'${w.replace(/'/g, `'\\''`)}'` : w);

function errorLine(e: unknown): string {
  if (e instanceof RpcFailure) return e.message;
  return e instanceof Error ? e.message : String(e);
}

/** Runs a line, keeping it (and its failure) in the global logfile. */
async function runLogged(shell: Shell, line: string): Promise<'exit' | void> {
  if (line.trim() === '' || line.trim().startsWith('#')) return shell.run(line);
  try {
    const r = await shell.run(line);
    shell.prefs.log('info', `${shell.cwd}> ${line}`);
    return r;
  } catch (e) {
    shell.prefs.log('error', `${shell.cwd}> ${line}: ${errorLine(e)}`);
    throw e;
  }
}

async function batch(shell: Shell, lines: { text: string; where?: string }[]): Promise<number> {
  await shell.refresh();
  for (const l of lines) {
    try {
      await runLogged(shell, l.text);
    } catch (e) {
      process.stderr.write(`tcli: ${l.where ? `${l.where}: ` : ''}${errorLine(e)}\n`);
      return 1;
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------
// Interactive

type Inquirer = { prompt: (qs: unknown) => Promise<Record<string, unknown>> };
const inquirer = (): Inquirer => (require('inquirer') as { default: Inquirer }).default;

class Terminal implements Prompter {
  rl: readline.Interface | undefined;
  history: string[] = [];
  /** Lines of earlier sessions and the commands run in this one, oldest first (what ~/.tcli/history keeps). */
  private readonly saved: string[] = [];
  private readonly historyFile: string;

  constructor(private readonly shell: Shell) {
    this.historyFile = join(shell.home, 'history');
    try {
      this.saved.push(...readFileSync(this.historyFile, 'utf8').split('\n').filter((l) => l !== '').slice(-1000));
      this.history = [...this.saved].reverse();
    } catch {
      this.history = [];
    }
  }

  private open(): readline.Interface {
    const rl = readline.createInterface({
      input: process.stdin,
      output: process.stdout,
      terminal: true,
      history: this.history,
      historySize: 1000,
      removeHistoryDuplicates: true,
      completer: (line: string) => this.shell.complete(line),
    });
    rl.on('history', (h: string[]) => (this.history = h));
    rl.on('SIGINT', () => {
      // Ctrl-C drops the line being typed, as a shell does.
      rl.write(null as unknown as string, { ctrl: true, name: 'u' });
      process.stdout.write('^C\n');
      rl.prompt();
    });
    return rl;
  }

  /** Asks for one line; null at end of input (Ctrl-D). */
  readLine(): Promise<string | null> {
    const rl = (this.rl ??= this.open());
    return new Promise((resolve) => {
      const onClose = () => resolve(null);
      rl.once('close', onClose);
      rl.question(this.shell.prompt(), (answer) => {
        rl.off('close', onClose);
        resolve(answer);
      });
    });
  }

  /** inquirer takes the terminal over while it asks; our readline steps aside. */
  private async withInquirer<T>(fn: (iq: Inquirer) => Promise<T>): Promise<T> {
    if (this.rl) {
      this.history = (this.rl as unknown as { history: string[] }).history ?? this.history;
      const rl = this.rl;
      this.rl = undefined;
      // No question is pending here, so no close handler of ours is attached; readline's own must run.
      rl.close();
    }
    try {
      return await fn(inquirer());
    } finally {
      // inquirer restores the terminal mode in its own cleanup, after its promise settles; our readline
      // must set raw mode after that, or the terminal echoes every key a second time.
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async confirm(message: string, def: boolean): Promise<boolean> {
    return this.withInquirer(async (iq) => (await iq.prompt([{ type: 'confirm', name: 'ok', message, default: def }])).ok === true);
  }

  async wizard(shell: ShellContext): Promise<void> {
    const s = specs();
    // What the wizard made, newest last: taken back (newest first) when it is abandoned or fails.
    const made: { what: string; undo: () => Promise<unknown> }[] = [];
    const call = (m: string, p: Record<string, unknown>) => shell.client.call(m, p);
    const say = (line: string) => process.stdout.write(`${line}\n`);
    try {
      await this.withInquirer(async (iq) => {
        const a = await iq.prompt([
          { type: 'list', name: 'plugin', message: 'Backstore type', choices: s.backstores.filter((b) => b.name !== 'pscsi').map((b) => ({ name: `${b.name}: ${b.doc}`, value: b.name })) },
          { type: 'input', name: 'name', message: 'Storage object name', default: 'disk0', validate: (v: string) => /^[A-Za-z0-9_.:-]+$/.test(v) || 'letters, digits, _ . : - only' },
        ]);
        const b = s.backstore(a.plugin as string);
        const fields: Record<string, unknown> = {};
        for (const f of b.fields.filter((x) => x.required || x.name === 'size')) {
          const r = await iq.prompt([{ type: 'input', name: 'v', message: `${f.name} (${f.doc})`, default: f.name === 'size' ? '1GiB' : f.name === 'dev' && a.plugin === 'fileio' ? `/var/lib/tsio/${a.name}.img` : undefined }]);
          if (r.v !== '' && r.v !== undefined) fields[f.name] = r.v;
        }
        const soPath = `/backstores/${a.plugin}/${a.name}`;
        await call('storage_objects.create', { plugin: a.plugin, name: a.name, fields });
        made.push({ what: `storage object ${soPath}`, undo: () => call('storage_objects.delete', { path: soPath }) });
        say(`Created ${a.plugin} storage object ${soPath}.`);
        const t = await iq.prompt([
          { type: 'list', name: 'fabric', message: 'Fabric', choices: ['iscsi', 'vhost', 'loopback'] },
          { type: 'input', name: 'wwn', message: 'Target WWN (empty: generated)', default: '' },
        ]);
        const tpgFields: Record<string, unknown> = {};
        if (t.fabric === 'vhost') tpgFields.socket = (await iq.prompt([{ type: 'input', name: 'v', message: 'vhost-user socket path', default: `/run/tsio/${a.name}.sock` }])).v;
        const created = (await call('targets.create', { fabric: t.fabric, ...(t.wwn ? { wwn: t.wwn } : {}), ...(Object.keys(tpgFields).length ? { tpg_fields: tpgFields } : {}) })) as { wwn: string };
        made.push({ what: `target /${t.fabric}/${created.wwn}`, undo: () => call('targets.delete', { wwn: created.wwn }) });
        say(`Created target /${t.fabric}/${created.wwn} with TPG 1.`);
        await call('luns.create', { wwn: created.wwn, tag: 1, storage_object: soPath });
        say(`Created LUN 0 (${soPath}).`);
        if (t.fabric === 'iscsi') {
          const portal = s.fabric('iscsi').portal;
          const def = (n: string) => String(portal.find((f) => f.name === n)!.default);
          const p = await iq.prompt([
            { type: 'input', name: 'ip', message: 'Portal address (0.0.0.0: every address of this host; empty: no portal)', default: '127.0.0.1' },
            { type: 'input', name: 'port', message: 'Portal port', default: def('port'), validate: (v: string) => (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 65535) || 'a port number, 1 to 65535' },
          ]);
          if (p.ip) {
            await call('portals.create', { wwn: created.wwn, tag: 1, ip_address: p.ip, port: Number(p.port) });
            say(`Created network portal ${String(p.ip).includes(':') ? `[${p.ip}]` : p.ip}:${p.port}.`);
          } else say('No portal: initiators cannot reach the target until one is created (portals create IP [PORT]).');
        }
        if (t.fabric !== 'loopback') {
          const acl = await iq.prompt([{ type: 'input', name: 'wwn', message: 'Initiator allowed in (ACL; empty: none)', default: '' }]);
          if (acl.wwn) {
            await call('acls.create', { wwn: created.wwn, tag: 1, node_wwn: acl.wwn });
            say(`Created Node ACL for ${acl.wwn} with LUN 0 mapped.`);
          }
        }
      });
    } catch (e) {
      // Abandoned (Ctrl-C, Ctrl-D) or refused by tsiod: nothing half-made stays behind.
      const why = (e as Error).name === 'ExitPromptError' || (e as Error).name === 'AbortPromptError' ? 'abandoned' : `stopped: ${errorLine(e)}`;
      const undone: string[] = [];
      for (const m of made.reverse()) {
        try {
          await m.undo();
          undone.push(m.what);
        } catch (e2) {
          say(`error: could not remove ${m.what}: ${errorLine(e2)}`);
        }
      }
      throw new ShellError(`wizard ${why}${undone.length ? `; removed what it had created: ${undone.join(', ')}` : '; nothing was created'}`);
    }
  }

  /** A command line the user ran (prompt answers are not history). */
  remember(line: string): void {
    if (line.trim() !== '' && this.saved[this.saved.length - 1] !== line) this.saved.push(line);
  }

  saveHistory(): void {
    try {
      mkdirSync(this.shell.home, { recursive: true, mode: 0o700 });
      writeFileSync(this.historyFile, this.saved.slice(-1000).join('\n') + '\n', { mode: 0o600 });
    } catch {
      /* history is a convenience */
    }
  }

  close(): void {
    if (this.rl) {
      this.history = (this.rl as unknown as { history: string[] }).history ?? this.history;
      this.rl.close();
      this.rl = undefined;
    }
  }
}

async function interactive(shell: Shell): Promise<void> {
  const term = new Terminal(shell);
  shell.opts.prompter = term;
  await shell.refresh();
  process.stdout.write(`tcli: connected to tsiod. Type help for commands, Tab to complete, exit to leave.\n`);
  for (;;) {
    const line = await term.readLine();
    let leave = line === null;
    if (line !== null) {
      term.remember(line);
      try {
        leave = (await runLogged(shell, line)) === 'exit';
      } catch (e) {
        process.stdout.write(`${shell.opts.color ? '\x1b[1;31m' : ''}error: ${errorLine(e)}${shell.opts.color ? '\x1b[0m' : ''}\n`);
      }
    }
    if (leave) {
      let st: { dirty: boolean; save_path: string } | undefined;
      try {
        st = await shell.client.call('status');
      } catch {
        st = undefined;
      }
      if (st?.dirty) {
        // As targetcli: auto_save_on_exit saves; without it, exit says what is left unsaved.
        if (shell.prefs.values.auto_save_on_exit) {
          try {
            const r = await shell.client.call<{ path: string }>('saveconfig', { max_backup_files: shell.prefs.values.max_backup_files });
            process.stdout.write(`Configuration saved to ${r.path} (global auto_save_on_exit)\n`);
          } catch (e) {
            process.stdout.write(`error: ${errorLine(e)}\n`);
            continue;
          }
        } else {
          process.stdout.write(`The running configuration differs from ${st.save_path} and was not saved (global auto_save_on_exit is false).\n`);
        }
      }
      term.close();
      term.saveHistory();
      return;
    }
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (args.words.length === 1 && args.words[0] === 'help' && !args.script) {
    process.stdout.write(manual(VERBS) + '\n');
    return 0;
  }
  let line = '';
  if (args.complete !== undefined) {
    // "tcli [--control P] [--json] words...": the options are tcli's, the rest is a shell line to complete.
    line = args.complete.replace(/^\s*\S+/, '');
    for (let m; (m = /^\s*(--control(?:=|\s+)(\S+)|--json)(?=\s|$)/.exec(line)); line = line.slice(m[0].length)) if (m[2]) args.control = m[2];
    line = line.replace(/^\s+/, '');
  }
  let client: ControlClient;
  try {
    client = await ControlClient.connect(args.control);
  } catch (e) {
    process.stderr.write(`tcli: ${errorLine(e)}\n`);
    return 1;
  }
  const tty = process.stdout.isTTY === true && process.stdin.isTTY === true;
  const shell = new Shell(client, { json: args.json, color: tty && !args.json && !process.env.NO_COLOR, width: process.stdout.columns, interactive: false });
  try {
    if (args.complete !== undefined) {
      await shell.refresh();
      process.stdout.write(shell.complete(line)[0].map((c) => `${c}\n`).join(''));
      return 0;
    }
    if (args.script !== undefined) {
      const text = args.script === '-' ? readFileSync(0, 'utf8') : readFileSync(args.script, 'utf8');
      const lines = text.split('\n').map((t, i) => ({ text: t, where: `${args.script}:${i + 1}` }));
      return await batch(shell, lines);
    }
    if (args.words.length > 0) return await batch(shell, [{ text: args.words.map(quote).join(' ') }]);
    if (!process.stdin.isTTY) {
      // Commands on stdin: a script.
      const lines = readFileSync(0, 'utf8').split('\n').map((t, i) => ({ text: t, where: `stdin:${i + 1}` }));
      return await batch(shell, lines);
    }
    shell.opts.interactive = true;
    await interactive(shell);
    return 0;
  } finally {
    client.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`tcli: ${errorLine(e)}\n`);
    process.exit(1);
  },
);
