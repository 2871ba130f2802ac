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
import type { Prompter, ShellContext } from './command';
import { manual } from './help';
import { VERBS } from './commands';
import { specs } from '../app/config/specs';
import { DEFAULT_CONTROL_PATH } from '../app/control/wire';

const USAGE = `usage: tcli [--control PATH] [--json] [-f SCRIPT | [PATH] COMMAND [ARGS...]]   (tcli help: the manual)`;

interface Args {
  control: string;
  json: boolean;
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
    else if (v === '--help' || v === '-h') {
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

async function batch(shell: Shell, lines: { text: string; where?: string }[]): Promise<number> {
  await shell.refresh();
  for (const l of lines) {
    try {
      await shell.run(l.text);
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
    await this.withInquirer(async (iq) => {
      const call = (m: string, p: Record<string, unknown>) => shell.client.call(m, p);
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
      await call('storage_objects.create', { plugin: a.plugin, name: a.name, fields });
      process.stdout.write(`Created ${a.plugin} storage object ${a.name}.\n`);
      const t = await iq.prompt([
        { type: 'list', name: 'fabric', message: 'Fabric', choices: ['iscsi', 'vhost', 'loopback'] },
        { type: 'input', name: 'wwn', message: 'Target WWN (empty: generated)', default: '' },
      ]);
      const tpgFields: Record<string, unknown> = {};
      if (t.fabric === 'vhost') tpgFields.socket = (await iq.prompt([{ type: 'input', name: 'v', message: 'vhost-user socket path', default: `/run/tsio/${a.name}.sock` }])).v;
      const created = (await call('targets.create', { fabric: t.fabric, ...(t.wwn ? { wwn: t.wwn } : {}), ...(Object.keys(tpgFields).length ? { tpg_fields: tpgFields } : {}) })) as { wwn: string };
      process.stdout.write(`Created target ${created.wwn} with TPG 1.\n`);
      await call('luns.create', { wwn: created.wwn, tag: 1, storage_object: `/backstores/${a.plugin}/${a.name}` });
      process.stdout.write('Created LUN 0.\n');
      if (t.fabric === 'iscsi') {
        const p = await iq.prompt([{ type: 'input', name: 'ip', message: 'Portal address (empty: none)', default: '127.0.0.1' }]);
        if (p.ip) await call('portals.create', { wwn: created.wwn, tag: 1, ip_address: p.ip });
      }
      if (t.fabric !== 'loopback') {
        const acl = await iq.prompt([{ type: 'input', name: 'wwn', message: 'Initiator allowed in (ACL; empty: none)', default: '' }]);
        if (acl.wwn) {
          await call('acls.create', { wwn: created.wwn, tag: 1, node_wwn: acl.wwn });
          process.stdout.write(`Created Node ACL for ${acl.wwn} with LUN 0 mapped.\n`);
        }
      }
    });
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
        leave = (await shell.run(line)) === 'exit';
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
        const save = await term.confirm(`The configuration changed since it was last saved. Save it to ${st.save_path}?`, true);
        if (save) {
          try {
            const r = await shell.client.call<{ path: string }>('saveconfig');
            process.stdout.write(`Configuration saved to ${r.path}\n`);
          } catch (e) {
            process.stdout.write(`error: ${errorLine(e)}\n`);
            continue;
          }
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
