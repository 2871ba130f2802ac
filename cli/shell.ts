// tcli's shell: the current node, path resolution, and a command line
// dispatched or completed through the command tables (cli/commands/).
// Interactive and batch use share all of it; the terminal loop lives in
// tcli.ts.

import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ControlClient } from './client';
import { buildTree, find, joinPath, type Node, type TreeData } from './tree';
import { didYouMean } from '../app/config/validation';
import { ShellError, splitArgs, tokenize } from './args';
import { Bookmarks } from './bookmarks';
import { checkArgs, completeParams, type Command, type Param, type Settings, type ShellContext, type ShellOptions, type Verb } from './command';
import { commandsAt, isVerb, settingsAt, VERBS } from './commands';
import { Prefs } from './prefs';

/** The params not yet given among the words typed (by name=, or by position). */
function unbound(params: Param[], words: string[]): Param[] {
  const named = new Set(words.filter((w) => /^[A-Za-z_][\w.]*=/.test(w)).map((w) => w.slice(0, w.indexOf('='))));
  const positional = words.filter((w) => !/^[A-Za-z_][\w.]*=/.test(w)).length;
  return params.filter((p, i) => i >= positional && !named.has(p.name));
}

export class Shell implements ShellContext {
  cwd = '/';
  private previous = '/';
  data!: TreeData;
  root!: Node;
  readonly bookmarks: Bookmarks;
  readonly prefs: Prefs;
  readonly home: string;
  /** Output lines of the last command (for batch and tests). */
  out: (s: string) => void = (s) => process.stdout.write(s + '\n');

  constructor(
    readonly client: ControlClient,
    readonly opts: ShellOptions = {},
  ) {
    this.home = opts.home ?? process.env.TCLI_HOME ?? join(homedir(), '.tcli');
    this.bookmarks = new Bookmarks(this.home);
    this.prefs = new Prefs(this.home);
  }

  async refresh(): Promise<void> {
    this.data = await this.client.call<TreeData>('tree');
    this.root = buildTree(this.data);
    // The current node may have gone (deleted elsewhere): climb to what still exists.
    while (this.cwd !== '/' && !find(this.root, this.cwd)) this.cwd = joinPath(this.cwd, '..');
  }

  get node(): Node {
    return find(this.root, this.cwd) ?? this.root;
  }

  commandsAt(n: Node): Command[] {
    return commandsAt(n, this);
  }

  command(at: Node, name: string): Verb | undefined {
    return this.commandsAt(at).find((c) => c.name === name) ?? VERBS.find((v) => v.name === name);
  }

  settingsAt(n: Node): Settings | undefined {
    return settingsAt(n);
  }

  resolvePath(typed: string): Node {
    let p = typed;
    if (p.startsWith('@')) {
      // @NAME, or @NAME/below: a path under the bookmarked node.
      const slash = p.indexOf('/');
      const name = slash < 0 ? p.slice(1) : p.slice(1, slash);
      const b = this.bookmarks.get(name);
      if (!b) throw new ShellError(`no bookmark @${name}${this.bookmarks.hint(name)}`);
      p = slash < 0 ? b : joinPath(b, p.slice(slash + 1));
    } else if (p === '-' || p === '<') p = this.previous;
    const abs = joinPath(this.cwd, p);
    const n = find(this.root, abs);
    if (!n) throw new ShellError(`no such path ${abs}${this.pathHint(abs)}`);
    return n;
  }

  private pathHint(abs: string): string {
    const parent = find(this.root, joinPath(abs, '..'));
    if (!parent) return '';
    const last = abs.split('/').pop() ?? '';
    const g = didYouMean(last, parent.children.map((c) => c.name));
    return g ? ` (did you mean ${joinPath(abs, '..') === '/' ? '' : joinPath(abs, '..')}/${g}?)` : '';
  }

  prompt(): string {
    const p = this.cwd.length > 40 ? `...${this.cwd.slice(-37)}` : this.cwd;
    return `${p}> `;
  }

  /** Runs one command line. Throws ShellError (or an RPC failure) with a one-line message. */
  async run(line: string): Promise<'exit' | void> {
    const words = tokenize(line.replace(/^\s*#.*$/, ''));
    if (words.length === 0) return;
    let at = this.node;
    let cmd = words[0];
    let rest = words.slice(1);
    // "/path command args" runs the command there; a path alone changes to it (as targetcli).
    if (this.isPathWord(cmd)) {
      at = this.resolvePath(cmd);
      if (rest.length === 0) {
        this.changeDir(at);
        return;
      }
      cmd = rest[0];
      rest = rest.slice(1);
    }
    if (!isVerb(cmd)) {
      const g = didYouMean(cmd, VERBS.map((v) => v.name));
      throw new ShellError(`command not found: ${cmd}${g ? ` (did you mean ${g}?)` : ' (type help)'}`);
    }
    const here = this.commandsAt(at);
    const c = here.find((x) => x.name === cmd);
    if (!c) throw new ShellError(`${cmd} is not available at ${at.path} (here: ${here.map((x) => x.name).join(', ')})`);
    const a = splitArgs(rest);
    checkArgs(c, at, a);
    return c.run(this, at, a);
  }

  /** A first word that names a node ("/path cmd", "child cmd", "@mark/sub cmd"), not a command. */
  private isPathWord(w: string): boolean {
    return w.startsWith('/') || w.startsWith('.') || w.startsWith('@') || (!isVerb(w) && (w.includes('/') || this.node.children.some((c) => c.name === w)));
  }

  changeDir(n: Node): void {
    if (n.path !== this.cwd) this.previous = this.cwd;
    this.cwd = n.path;
    if (this.opts.json) this.out(JSON.stringify({ path: n.path }));
  }

  print(text: string, json: unknown): void {
    this.out(this.opts.json ? JSON.stringify(json, null, 2) : text);
  }

  // -------------------------------------------------------------------------
  // Completion: readline's completer contract, [candidates, the word being completed].

  complete(line: string): [string[], string] {
    let words: string[];
    try {
      words = tokenize(line);
    } catch {
      return [[], ''];
    }
    const endsWithSpace = /\s$/.test(line) || line === '';
    const current = endsWithSpace ? '' : (words.pop() ?? '');
    let at = this.node;
    // "/path cmd ..." completes as if at that path.
    if (words.length > 0 && this.isPathWord(words[0])) {
      let n: Node | undefined;
      try {
        n = this.resolvePath(words[0]);
      } catch {
        n = undefined;
      }
      if (n) {
        at = n;
        words = words.slice(1);
      }
    }
    const pick = (cands: string[]): [string[], string] => [cands.filter((c) => c.startsWith(current)), current];
    if (words.length === 0) {
      if (current.startsWith('/') || current.startsWith('.') || current.includes('/')) return pick(this.completePath(current));
      if (current.startsWith('@')) return pick(this.bookmarks.names().map((b) => `@${b}`));
      return pick([...this.commandsAt(at).map((c) => c.name), ...at.children.map((c) => c.name)]);
    }
    // A command's own completion, else its parameters; at a node that does not offer it, its help's.
    const c = this.command(at, words[0]);
    const args = words.slice(1);
    if (!c) return [[], current];
    return pick(c.complete ? c.complete(this, at, args, current) : c.params ? completeParams(this, unbound(c.params(at), args), current) : []);
  }

  /** Children of the typed path's directory part, with a trailing / where they have children. */
  completePath(typed: string): string[] {
    const mark = /^@([^/]+)\//.exec(typed);
    if (mark) {
      // @NAME/...: completed under the bookmarked path, shown as typed.
      const b = this.bookmarks.get(mark[1]);
      if (!b) return [];
      const base = b === '/' ? '/' : `${b}/`;
      return this.completePath(base + typed.slice(mark[0].length)).map((c) => `@${mark[1]}/${c.slice(base.length)}`);
    }
    const slash = typed.lastIndexOf('/');
    const dirPart = slash >= 0 ? typed.slice(0, slash + 1) : '';
    const dir = find(this.root, joinPath(this.cwd, dirPart || '.'));
    if (!dir) return [];
    const out = dir.children.map((c) => `${dirPart}${c.name}${c.children.length ? '/' : ''}`);
    if (dirPart === '' || dirPart.endsWith('./')) out.push(`${dirPart}..`);
    return out;
  }
}
