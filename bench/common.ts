// Shared by the benchmark scenarios: option parsing, statistics, machine line.

import * as os from 'node:os';

export interface Scenario {
  name: string;
  description: string;
  /** Run by a plain `npm run bench` (false when it needs peers or tools to be installed). */
  byDefault: boolean;
  run(args: string[]): Promise<void>;
}

/** Value of `--flag N` in args, or the default. */
export function numOpt(args: string[], flag: string, dflt: number): number {
  const i = args.indexOf(flag);
  if (i < 0) return dflt;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${flag} needs a positive number`);
  return v;
}

/** Value of `--flag WORD` in args, one of `choices` (the first is the default). */
export function choiceOpt<T extends string>(args: string[], flag: string, choices: readonly T[]): T {
  const i = args.indexOf(flag);
  if (i < 0) return choices[0];
  const v = args[i + 1] as T;
  if (!choices.includes(v)) throw new Error(`${flag} takes one of: ${choices.join(', ')}`);
  return v;
}

/** Case filters given as `scenario:case` arguments. */
export function caseFilter(args: string[], scenario: string): (name: string) => boolean {
  const wanted = args.filter((a) => a.startsWith(scenario + ':')).map((a) => a.slice(scenario.length + 1));
  return (name) => wanted.length === 0 || wanted.includes(name);
}

export interface Stats {
  median: number;
  min: number;
  max: number;
}

export function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return { median: s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2, min: s[0], max: s[s.length - 1] };
}

export function machineLine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${new Date().toISOString()}  node ${process.version}  ${os.cpus().length} x ${cpu}  ${os.release()}`;
}

/** Thousands with one decimal: 123.4k. */
export function k(n: number): string {
  // Two decimals below 10k: 1 MiB cases run at a few hundred per second.
  return `${(n / 1000).toFixed(n < 10_000 ? 2 : 1)}k`;
}

export function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}
