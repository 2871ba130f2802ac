// The commands every node offers for moving about the tree and using the
// shell (configshell's UINode commands); create's and delete's help, and the
// factories each kind of node builds its own create and delete with.

import { ShellError, type Args } from '../args';
import { commandHelp, groupHelp, overview } from '../help';
import { renderTree, type Node } from '../tree';
import { bindParams, type Command, type Param, type ShellContext, type Verb } from '../command';
import { groupsAt } from './settings';

const bookmarkNames = (ctx: ShellContext) => ctx.bookmarks.names().map((b) => `@${b}`);

/** cd and ls complete their path argument. */
function completePathArg(ctx: ShellContext, _at: Node, args: string[], current: string): string[] {
  if (args.length > 0) return [];
  return current.startsWith('@') && !current.includes('/') ? bookmarkNames(ctx) : ctx.completePath(current);
}

const PATH: Param = { name: 'path', doc: 'A node: absolute, relative, @BOOKMARK[/SUB] or - (the previous one).' };

export const cd: Command = {
  name: 'cd',
  usage: 'cd [PATH|@BOOKMARK|-]',
  doc: 'Moves to a node; no argument: the root; - the previous node. Typing a path alone does the same.',
  params: () => [PATH],
  complete: completePathArg,
  run(ctx, _at, a) {
    ctx.changeDir(a.pos.length === 0 ? ctx.root : ctx.resolvePath(a.pos[0]));
  },
};

export const pwd: Command = {
  name: 'pwd',
  usage: 'pwd',
  doc: 'Prints the current path.',
  params: () => [],
  run(ctx, at) {
    ctx.print(at.path, { path: at.path });
  },
};

function jsonTree(n: Node, depth: number): unknown {
  return { name: n.name, path: n.path, summary: n.summary, ...(depth > 0 && n.children.length ? { children: n.children.map((c) => jsonTree(c, depth - 1)) } : {}) };
}

export const ls: Command = {
  name: 'ls',
  usage: 'ls [PATH] [DEPTH]',
  doc: 'Draws the tree below a node, each node with a one-line summary.',
  params: () => [PATH, { name: 'depth', doc: 'How many levels below the node to draw (default all).' }],
  complete: completePathArg,
  run(ctx, at, a) {
    const target = a.pos[0] !== undefined && !/^\d+$/.test(a.pos[0]) ? ctx.resolvePath(a.pos[0]) : a.kv.path !== undefined ? ctx.resolvePath(a.kv.path) : at;
    const depthArg = a.kv.depth ?? a.pos.find((p) => /^\d+$/.test(p));
    if (depthArg !== undefined && !/^\d+$/.test(depthArg)) throw new ShellError(`ls: depth '${depthArg}' is not a number`);
    const depth = depthArg === undefined ? undefined : Number(depthArg);
    if (ctx.opts.json) ctx.out(JSON.stringify(jsonTree(target, depth ?? Infinity), null, 2));
    else ctx.out(renderTree(target, { width: ctx.opts.width, depth, color: ctx.opts.color }));
  },
};

export const help: Command = {
  name: 'help',
  usage: 'help [COMMAND|GROUP]',
  doc: 'Commands available here, or one command or settings group in detail.',
  params: () => [{ name: 'topic', doc: 'A command or settings group.' }],
  complete: (ctx, at) => [...ctx.commandsAt(at).map((c) => c.name), ...Object.keys(groupsAt(ctx, at))],
  run(ctx, at, a) {
    const topic = a.pos[0];
    const groups = groupsAt(ctx, at);
    if (topic === undefined) ctx.out(overview(at, ctx.commandsAt(at)));
    else if (topic in groups) ctx.out(groupHelp(topic, groups[topic]));
    else ctx.out(commandHelp(topic, ctx.command(at, topic), at, ctx));
  },
};

export const bookmarks: Command = {
  name: 'bookmarks',
  usage: 'bookmarks add|del|go|show [NAME]',
  doc: 'Named paths; use @NAME (or @NAME/SUB) wherever a path goes.',
  params: () => [
    { name: 'action', doc: 'add, del, go or show.' },
    { name: 'name', doc: 'The bookmark.' },
  ],
  complete: (ctx, _at, args) => (args.length === 0 ? ['add', 'del', 'go', 'show'] : ctx.bookmarks.names()),
  run(ctx, at, a) {
    const [action, name] = a.pos;
    const marks = ctx.bookmarks;
    switch (action) {
      case 'add':
        if (!name) throw new ShellError('bookmarks add NAME');
        marks.add(name, at.path);
        return ctx.print(`Bookmarked ${at.path} as @${name}.`, { [name]: at.path });
      case 'del':
        if (!name || !marks.has(name)) throw new ShellError(`no bookmark ${name ?? ''}${marks.hint(name ?? '')}`);
        marks.delete(name);
        return ctx.print(`Deleted bookmark @${name}.`, { ok: true });
      case 'go':
        if (!name) throw new ShellError('bookmarks go NAME');
        return ctx.changeDir(ctx.resolvePath(`@${name}`));
      case undefined:
      case 'show': {
        const entries = Object.entries(marks.all);
        return ctx.print(entries.length ? entries.map(([k, v]) => `@${k}: ${v}`).join('\n') : '(no bookmarks)', marks.all);
      }
      default:
        throw new ShellError(`bookmarks ${action}: use add, del, go or show`);
    }
  },
};

export const refresh: Command = {
  name: 'refresh',
  usage: 'refresh',
  doc: 'Re-reads the tree from tsiod.',
  params: () => [],
  run: (ctx) => ctx.refresh(),
};

export const wizard: Command = {
  name: 'wizard',
  usage: 'wizard',
  doc: 'Creates a backstore, a target, a LUN, a portal and an ACL step by step; abandoned, it removes what it made.',
  params: () => [],
  async run(ctx) {
    if (!ctx.opts.prompter?.wizard || !ctx.opts.interactive) throw new ShellError('the wizard needs an interactive terminal');
    await ctx.opts.prompter.wizard(ctx);
    await ctx.refresh();
  },
};

export const exit: Command = {
  name: 'exit',
  usage: 'exit',
  doc: 'Leaves the shell; with auto_save_on_exit (the default) it saves a configuration that differs from the saved file.',
  params: () => [],
  run: () => 'exit',
};

/** create's help; each kind of node that has children to make declares its own create (createCommand). */
export const CREATE: Verb = {
  name: 'create',
  usage: 'create ARGS...',
  doc: 'Creates a child object; positional or key=value arguments (help create lists them here).',
};

/** What a node's create made: the line to print, and the daemon's answer for --json. */
export interface Made {
  msg: string;
  result: unknown;
  /** The node made, for auto_cd_after_create. */
  path?: string;
}

/**
 * A node's create: the arguments bound to its params (aliases: targetcli's names for them), made by make,
 * then the tree re-read and make's message printed.
 */
export function createCommand(
  params: (n: Node) => Param[],
  make: (ctx: ShellContext, n: Node, p: Record<string, string>) => Promise<Made>,
  more: { aliases?: Record<string, string>; complete?: Command['complete'] } = {},
): Command {
  return {
    ...CREATE,
    params,
    ...(more.aliases ? { aliases: more.aliases } : {}),
    ...(more.complete ? { complete: more.complete } : {}),
    async run(ctx, n, a) {
      const made = await make(ctx, n, bindParams(CREATE.name, params(n), a, more.aliases));
      await ctx.refresh();
      ctx.print(made.msg, made.result);
      if (made.path && ctx.prefs.values.auto_cd_after_create) ctx.changeDir(ctx.resolvePath(made.path));
    },
  };
}

/** delete's help and completion (a child's name); each kind of node with children to remove declares its own. */
export const DELETE: Verb = {
  name: 'delete',
  usage: 'delete NAME',
  doc: 'Deletes a child object; in-flight I/O finishes first.',
  complete: (_ctx, at) => at.children.map((c) => c.name),
};

/**
 * A node's delete: params are what it takes (targetcli's names: name, wwn, tag, lun, ...); remove gets the first
 * one's value and answers with what it deleted, named ("storage object /backstores/rd_mcp/ram0"); the tree is re-read.
 */
export function deleteCommand(params: Param[], remove: (ctx: ShellContext, n: Node, what: string, a: Args) => Promise<string>): Command {
  return {
    ...DELETE,
    params: () => params,
    async run(ctx, n, a) {
      const what = a.pos[0] ?? a.kv[params[0].name];
      if (what === undefined) throw new ShellError(`delete what? give ${params[0].name} (here: ${n.children.map((c) => c.name).join(', ') || 'nothing'})`);
      const named = await remove(ctx, n, what, a);
      await ctx.refresh();
      ctx.print(`Deleted ${named}.`, { ok: true, deleted: named });
    },
  };
}

/** In a terminal, asks before deleting what is in use; batch use goes ahead. */
export async function confirmDelete(ctx: ShellContext, why: string): Promise<void> {
  if (ctx.opts.interactive && ctx.opts.prompter && !(await ctx.opts.prompter.confirm(why, false))) throw new ShellError('not deleted');
}
