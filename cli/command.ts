// What a tcli command is, as configshell's ui_command_* methods are for
// targetcli: each command carries its name, help text, parameters, completion
// and action, and each kind of node has a table of them (cli/commands/).
// help, completion and dispatch are built from those tables; nothing else
// knows a command by name.

import type { ControlClient } from './client';
import { hintName, ShellError, type Args } from './args';
import type { Bookmarks } from './bookmarks';
import type { Node, TreeData } from './tree';
import type { FieldSpec } from '../app/config/specs';
import type { Prefs } from './prefs';

/** Asks the user something (inquirer in a terminal); batch use answers with the default. */
export interface Prompter {
  confirm(message: string, def: boolean): Promise<boolean>;
  wizard?(shell: ShellContext): Promise<void>;
}

export interface ShellOptions {
  json?: boolean;
  color?: boolean;
  width?: number;
  interactive?: boolean;
  prompter?: Prompter;
  /** Where bookmarks and history live (default ~/.tcli; TCLI_HOME overrides). */
  home?: string;
}

/** What commands see of the shell. */
export interface ShellContext {
  readonly client: ControlClient;
  readonly opts: ShellOptions;
  readonly data: TreeData;
  readonly root: Node;
  readonly bookmarks: Bookmarks;
  /** The global preferences (get/set global). */
  readonly prefs: Prefs;
  cwd: string;
  out(s: string): void;
  /** Text, or with --json the JSON value. */
  print(text: string, json: unknown): void;
  /** Re-reads the tree from tsiod (after every change). */
  refresh(): Promise<void>;
  changeDir(n: Node): void;
  /** A typed path (relative, absolute, @bookmark, -) to its node; a ShellError with a hint when there is none. */
  resolvePath(typed: string): Node;
  /** Paths completing a partly typed one. */
  completePath(typed: string): string[];
  /** The commands offered at a node, by name. */
  commandsAt(n: Node): Command[];
  /** The command of that name at a node, else its declaration elsewhere (for help and completion). */
  command(at: Node, name: string): Verb | undefined;
  /** The settings (get/set groups) of a node, if it has any. */
  settingsAt(n: Node): Settings | undefined;
}

/** One argument a command takes by position or as name=value. */
export interface Param {
  name: string;
  doc: string;
  /** The spec field it sets: help prints its type and default, completion its values. */
  field?: FieldSpec;
  /** Values completion offers after name= (when no field lists them). */
  values?(ctx: ShellContext): string[];
}

/** A command as help and completion know it. */
export interface Verb {
  readonly name: string;
  /** Synopsis and one line of text: `help`, `help NAME` and the manual print them. */
  readonly usage: string;
  readonly doc: string;
  /** Arguments at node n, in positional order: help lists them, completion offers them. */
  params?(n: Node): Param[];
  /** More lines for `help NAME` at node n. */
  detail?(n: Node, ctx: ShellContext): string[];
  /** Candidates for the word being typed (the shell keeps those it starts). */
  complete?(ctx: ShellContext, at: Node, args: string[], current: string): string[];
}

/** A command a node offers. */
export interface Command extends Verb {
  /** Whether node n offers it (default: wherever it is declared). */
  when?(n: Node, ctx: ShellContext): boolean;
  /** Other names for params (targetcli's), accepted as name=value. */
  aliases?: Record<string, string>;
  /**
   * The command checks its own name=value arguments (set: a settings group's names). Otherwise the shell
   * refuses, before it runs, any name its params (and aliases) do not declare, and more positional words
   * than it has params.
   */
  ownArgs?: boolean;
  run(ctx: ShellContext, at: Node, a: Args): Promise<'exit' | void> | 'exit' | void;
}

/** The settings groups (attribute, parameter, auth, discovery_auth) of a kind of node, for get and set. */
export interface Settings {
  groups(n: Node): Record<string, readonly FieldSpec[]>;
  /** Current values (complete: the daemon fills in defaults). */
  values(n: Node, group: string, data: TreeData): Record<string, unknown>;
  apply(ctx: ShellContext, n: Node, group: string, values: Record<string, unknown>): Promise<unknown>;
}

/** A kind of node: its own commands (added to, or replacing, those every node has) and its settings. */
export interface NodeType {
  commands: Command[];
  settings?: Settings;
}

/** Positional and name=value arguments bound to params (aliases: other names for them); unknown names refused. */
export function bindParams(cmd: string, params: Param[], a: Args, aliases: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  a.pos.forEach((v, i) => {
    if (i >= params.length) throw new ShellError(`${cmd} takes at most ${params.length} arguments here (${params.map((p) => p.name).join(' ')})`);
    out[params[i].name] = v;
  });
  for (const [k0, v] of Object.entries(a.kv)) {
    const k = aliases[k0] ?? k0;
    if (!params.some((p) => p.name === k)) throw new ShellError(`unknown parameter ${k0} for ${cmd} here${hintName(k0, params)} (takes ${params.map((p) => p.name).join(', ')})`);
    out[k] = v;
  }
  return out;
}

/** What the shell checks of every command line: the name=value names and the count of positional words. */
export function checkArgs(c: Command, at: Node, a: Args): void {
  if (c.ownArgs) return;
  const params = c.params?.(at) ?? [];
  const names = [...params.map((p) => p.name), ...Object.keys(c.aliases ?? {})];
  for (const k of Object.keys(a.kv)) {
    if (names.includes(k)) continue;
    const takes = params.length ? ` (takes ${params.map((p) => p.name).join(', ')})` : ' (it takes none)';
    throw new ShellError(`unknown parameter ${k} for ${c.name} at ${at.path}${hintName(k, params)}${takes}; usage: ${c.usage}`);
  }
  if (a.pos.length > params.length) {
    const extra = a.pos.slice(params.length).join(' ');
    throw new ShellError(`${c.name} takes ${params.length ? `at most ${params.length} arguments (${params.map((p) => p.name).join(' ')})` : 'no arguments'}, not '${extra}'; usage: ${c.usage}`);
  }
}

/** Completes a name (name= with withValues), and after name= the param's values (bool: true/false). */
export function completeParams(ctx: ShellContext, params: Param[], current: string, withValues = true): string[] {
  const eq = current.indexOf('=');
  if (eq < 0) return params.map((p) => (withValues ? `${p.name}=` : p.name));
  const name = current.slice(0, eq);
  const p = params.find((x) => x.name === name);
  const f = p?.field;
  const values = !p ? [] : p.values ? p.values(ctx) : f?.type === 'bool' ? ['true', 'false'] : f?.type === 'enum' || f?.type === 'list' ? (f.values ?? []).map(String) : [];
  return values.map((v) => `${name}=${v}`);
}
