// Prometheus text exposition (format 0.0.4) of the I/O statistics, on an
// opt-in local HTTP port (tsiod --metrics 127.0.0.1:9595).

import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { MetricSample } from '../../src/core/fabric';
import type { Root } from '../../src/model/root';
import { fabricModules } from '../registry';
import { directIoCounts } from '../../backstores/fd-io';
import { IoStats, LATENCY_BUCKETS, LATENCY_SAMPLE_EVERY } from '../../src/core/stats';
import { tsioVersion } from '../config/version';

const esc = (v: string | number) => String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labels = (l: Record<string, string | number>) => `{${Object.entries(l).map(([k, v]) => `${k}="${esc(v)}"`).join(',')}}`;

interface Family {
  help: string;
  type: 'counter' | 'histogram' | 'gauge';
  lines: string[];
}

function addStats(fam: Map<string, Family>, prefix: string, what: string, l: Record<string, string | number>, s: IoStats): void {
  const add = (name: string, help: string, type: Family['type'], line: string) => {
    const key = `${prefix}_${name}`;
    let f = fam.get(key);
    if (!f) fam.set(key, (f = { help, type, lines: [] }));
    f.lines.push(line);
  };
  const L = labels(l);
  add('commands_total', `SCSI commands completed per ${what}, every one counted.`, 'counter', `${prefix}_commands_total${L} ${s.commands}`);
  add('errors_total', `Commands per ${what} that ended in an error status.`, 'counter', `${prefix}_errors_total${L} ${s.errors}`);
  add('read_bytes_total', `Bytes read per ${what}.`, 'counter', `${prefix}_read_bytes_total${L} ${s.bytesRead}`);
  add('written_bytes_total', `Bytes written per ${what}.`, 'counter', `${prefix}_written_bytes_total${L} ${s.bytesWritten}`);
  // One bucket layout for the whole family, every series: 1 µs to 2^30 µs in powers of two, then +Inf.
  let cum = 0;
  const name = `${prefix}_latency_seconds`;
  const help = `Command latency per ${what}, submission to completion; one command in ${LATENCY_SAMPLE_EVERY} is timed, so _count is the sampled commands (commands_total counts them all).`;
  for (let i = 0; i < LATENCY_BUCKETS - 1; i++) {
    cum += s.latency[i];
    add('latency_seconds', help, 'histogram', `${name}_bucket${labels({ ...l, le: (2 ** i / 1e6).toString() })} ${cum}`);
  }
  add('latency_seconds', help, 'histogram', `${name}_bucket${labels({ ...l, le: '+Inf' })} ${s.latencySamples}`);
  add('latency_seconds', help, 'histogram', `${name}_sum${L} ${s.latencySumUs / 1e6}`);
  add('latency_seconds', help, 'histogram', `${name}_count${L} ${s.latencySamples}`);
}

/** An initiator's counts on a TPG: its closed sessions' and its open ones', as one. */
function summed(closed: IoStats | undefined, open: IoStats[]): IoStats {
  const t = new IoStats();
  if (closed) t.addAll(closed);
  for (const s of open) t.addAll(s);
  return t;
}

/** Gauges and counters of the process, under the names Prometheus's client libraries use. */
function processLines(): string[] {
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  let fds = 0;
  let maxFds = 0;
  let vsize = 0;
  try {
    fds = readdirSync('/proc/self/fd').length;
    maxFds = Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 0);
    vsize = Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[20]);
  } catch {
    /* not Linux: left at 0 */
  }
  const g = (name: string, help: string, type: string, value: number) => [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`];
  return [
    ...g('process_cpu_seconds_total', 'User and system CPU time spent, in seconds.', 'counter', (cpu.user + cpu.system) / 1e6),
    ...g('process_resident_memory_bytes', 'Resident memory size in bytes.', 'gauge', mem.rss),
    ...g('process_virtual_memory_bytes', 'Virtual memory size in bytes.', 'gauge', vsize),
    ...g('process_heap_bytes', 'JavaScript heap in use, in bytes.', 'gauge', mem.heapUsed),
    ...g('process_open_fds', 'Open file descriptors.', 'gauge', fds),
    ...g('process_max_fds', 'Most file descriptors the process may open.', 'gauge', maxFds),
    ...g('process_start_time_seconds', 'Start time of the process since the Unix epoch, in seconds.', 'gauge', Math.round((Date.now() - process.uptime() * 1000) / 1000)),
  ];
}

function directIoSamples(): MetricSample[] {
  const c = directIoCounts;
  const help = 'O_DIRECT commands of fileio and block stores, by whether they moved the command\'s own memory or bounced through an aligned copy.';
  const n = (op: string, path: string, value: number): MetricSample => ({ name: 'tsio_direct_io_commands_total', help, type: 'counter', labels: { op, path }, value });
  return [
    n('read', 'direct', c.readsDirect), n('read', 'bounced', c.readsBounced), n('write', 'direct', c.writesDirect), n('write', 'bounced', c.writesBounced),
    { name: 'tsio_direct_io_bounced_bytes_total', help: 'Bytes O_DIRECT commands of fileio and block stores copied through bounce buffers.', type: 'counter', value: c.bouncedBytes },
  ];
}

/** What one engine (the main thread's, or an I/O thread's) has to show; plain data, so a thread can send it. */
export interface MetricPart {
  families: [string, Family][];
  sessions: string[];
  fabric: MetricSample[];
}

export function metricPart(root: Root): MetricPart {
  const fam = new Map<string, Family>();
  for (const so of root.storageObjects.values()) addStats(fam, 'tsio_lu', 'storage object', { storage_object: so.path }, so.lu.stats);
  const sessions: string[] = [];
  for (const t of root.targets.values()) {
    for (const tpg of t.tpgs.values()) {
      sessions.push(`tsio_tpg_sessions${labels({ fabric: t.fabric, target: t.wwn, tpg: tpg.tag })} ${tpg.sessions.size}`);
      // Labelled by initiator name, not session id or ISID: a reconnect continues the same series, which
      // counts the initiator's closed sessions too.
      const open = new Map<string, IoStats[]>();
      for (const name of tpg.closedStats.keys()) open.set(name, []);
      for (const s of tpg.sessions) open.set(s.initiator.name, [...(open.get(s.initiator.name) ?? []), s.stats]);
      for (const [initiator, all] of open) addStats(fam, 'tsio_session', 'initiator on a TPG (all its sessions)', { fabric: t.fabric, target: t.wwn, tpg: tpg.tag, initiator }, summed(tpg.closedStats.get(initiator), all));
    }
  }
  // What each fabric reports of its own state (FabricModule.metrics).
  const fabric: MetricSample[] = [];
  for (const m of fabricModules()) if (m.metrics !== undefined) fabric.push(...m.metrics());
  // The fd-backed stores' O_DIRECT commands (this thread's), summed over threads with the fabrics' samples.
  fabric.push(...directIoSamples());
  return { families: [...fam], sessions, fabric };
}

/** The exposition of every engine's part: series of one name together, a fabric's samples of one series summed. */
export function prometheusText(parts: MetricPart | MetricPart[]): string {
  const all = Array.isArray(parts) ? parts : [parts];
  const fam = new Map<string, Family>();
  for (const p of all) {
    for (const [name, f] of p.families) {
      const have = fam.get(name);
      if (have) have.lines.push(...f.lines);
      else fam.set(name, { ...f, lines: [...f.lines] });
    }
  }
  const out: string[] = [
    '# HELP tsio_build_info tsio\'s version and the Node.js running it.',
    '# TYPE tsio_build_info gauge',
    `tsio_build_info${labels({ version: tsioVersion(), node: process.versions.node })} 1`,
  ];
  for (const [name, f] of fam) out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`, ...f.lines);
  out.push('# HELP tsio_tpg_sessions Sessions open on a TPG.', '# TYPE tsio_tpg_sessions gauge', ...all.flatMap((p) => p.sessions));
  out.push(...sampleLines(sumSamples(all.map((p) => p.fabric))));
  out.push(...processLines());
  return out.join('\n') + '\n';
}

/** One list of samples, each name's together in first-seen order; a series several threads report, summed. */
function sumSamples(lists: MetricSample[][]): MetricSample[] {
  if (lists.length === 1) return lists[0];
  const series = new Map<string, MetricSample>();
  for (const list of lists) {
    for (const s of list) {
      const k = `${s.name}${JSON.stringify(s.labels ?? {})}`;
      const have = series.get(k);
      series.set(k, have ? { ...have, value: have.value + s.value } : s);
    }
  }
  const names = [...new Set([...series.values()].map((s) => s.name))];
  return names.flatMap((n) => [...series.values()].filter((s) => s.name === n));
}

/** Samples as exposition lines: HELP and TYPE before the first sample of each name. */
function sampleLines(samples: MetricSample[]): string[] {
  const out: string[] = [];
  let last: string | undefined;
  for (const s of samples) {
    if (s.name !== last) out.push(`# HELP ${s.name} ${s.help}`, `# TYPE ${s.name} ${s.type}`);
    last = s.name;
    out.push(`${s.name}${s.labels === undefined ? '' : labels(s.labels)} ${s.value}`);
  }
  return out;
}

/** "127.0.0.1:9595" or "[::1]:9595"; only loopback addresses are accepted, the data is not meant for a network. */
export function parseListen(spec: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(spec);
  if (!m) throw new Error(`--metrics ${spec}: expected HOST:PORT, e.g. 127.0.0.1:9595`);
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`--metrics ${spec}: port out of range`);
  if (!['127.0.0.1', '::1', 'localhost'].includes(host)) throw new Error(`--metrics ${spec}: only a loopback address (127.0.0.1, ::1) may serve metrics`);
  return { host, port };
}

/** Serves the parts the caller gathers: the main thread's root, or every I/O thread's. */
export async function listenMetrics(parts: () => Promise<MetricPart[]>, spec: string): Promise<Server> {
  const { host, port } = parseListen(spec);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    parts().then(
      (p) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(prometheusText(p)),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
    );
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(port, host, () => res());
  });
  return server;
}
