// info: every node prints its path and summary; a kind of node that knows
// more (sizes, users, sessions, statistics) declares its own info with a
// describe function.

import { formatSize, type Node, type StatsView } from '../tree';
import type { Command, ShellContext } from '../command';

/** What a node's info adds to its path and summary: lines of text and fields of the JSON. */
export interface Description {
  lines: string[];
  json: Record<string, unknown>;
}

export function infoCommand(describe?: (ctx: ShellContext, n: Node) => Description | Promise<Description>): Command {
  return {
    name: 'info',
    usage: 'info [PATH]',
    doc: 'Details of a node (default the current one): size, users, sessions, I/O statistics.',
    params: () => [{ name: 'path', doc: 'The node to describe.' }],
    complete: (ctx, _at, args, current) => (args.length === 0 ? ctx.completePath(current) : []),
    async run(ctx, here, a) {
      const typed = a.pos[0] ?? a.kv.path;
      if (typed !== undefined) {
        // info PATH: what info at PATH says.
        const n = ctx.resolvePath(typed);
        const own = ctx.commandsAt(n).find((c) => c.name === 'info')!;
        return own.run(ctx, n, { pos: [], kv: {} });
      }
      const n = here;
      const more = describe ? await describe(ctx, n) : { lines: [], json: {} };
      ctx.print([`${n.path}: ${n.summary}`, ...more.lines].join('\n'), { path: n.path, kind: n.kind, summary: n.summary, ...more.json });
    },
  };
}

/** info at a node that adds nothing. */
export const info = infoCommand();

/** I/O statistics in three lines. */
export function fmtStats(s: StatsView | undefined): string[] {
  if (!s) return [];
  return [
    `commands: ${s.commands} (reads ${s.reads}, writes ${s.writes}, errors ${s.errors})`,
    `bytes: read ${formatSize(s.bytes_read)}, written ${formatSize(s.bytes_written)}`,
    `latency µs: avg ${s.latency_us.avg}, p50 ${s.latency_us.p50}, p90 ${s.latency_us.p90}, p99 ${s.latency_us.p99}, p99.9 ${s.latency_us.p999}`,
  ];
}
