// Prometheus text exposition (format 0.0.4) of the I/O statistics, on an
// opt-in local HTTP port (tsiod --metrics 127.0.0.1:9595).

import { createServer, type Server } from 'node:http';
import type { MetricSample } from '../../src/core/fabric';
import type { Root } from '../../src/model/root';
import { fabricModules } from '../registry';
import { LATENCY_BUCKETS, LATENCY_SAMPLE_EVERY, type IoStats } from '../../src/core/stats';

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
  add('commands_total', `SCSI commands completed per ${what}.`, 'counter', `${prefix}_commands_total${L} ${s.commands}`);
  add('errors_total', `Commands per ${what} that ended in an error status.`, 'counter', `${prefix}_errors_total${L} ${s.errors}`);
  add('read_bytes_total', `Bytes read per ${what}.`, 'counter', `${prefix}_read_bytes_total${L} ${s.bytesRead}`);
  add('written_bytes_total', `Bytes written per ${what}.`, 'counter', `${prefix}_written_bytes_total${L} ${s.bytesWritten}`);
  let cum = 0;
  const name = `${prefix}_latency_seconds`;
  for (let i = 0; i < LATENCY_BUCKETS - 1; i++) {
    cum += s.latency[i];
    // Empty leading buckets say nothing; keep the exposition short.
    if (cum === 0 && i < LATENCY_BUCKETS - 2) continue;
    add('latency_seconds', `Command latency per ${what}, submission to completion (one command in ${LATENCY_SAMPLE_EVERY} sampled).`, 'histogram', `${name}_bucket${labels({ ...l, le: (2 ** i / 1e6).toString() })} ${cum}`);
  }
  add('latency_seconds', '', 'histogram', `${name}_bucket${labels({ ...l, le: '+Inf' })} ${s.latencySamples}`);
  add('latency_seconds', '', 'histogram', `${name}_sum${L} ${s.latencySumUs / 1e6}`);
  add('latency_seconds', '', 'histogram', `${name}_count${L} ${s.latencySamples}`);
}

export function prometheusText(root: Root): string {
  const fam = new Map<string, Family>();
  for (const so of root.storageObjects.values()) addStats(fam, 'tsio_lu', 'storage object', { storage_object: so.path }, so.lu.stats);
  const sessions: string[] = [];
  for (const t of root.targets.values()) {
    for (const tpg of t.tpgs.values()) {
      sessions.push(`tsio_tpg_sessions${labels({ fabric: t.fabric, target: t.wwn, tpg: tpg.tag })} ${tpg.sessions.size}`);
      for (const s of tpg.sessions) {
        addStats(fam, 'tsio_session', 'session', { session: s.id, initiator: s.initiatorPort, fabric: t.fabric, target: t.wwn, tpg: tpg.tag }, s.stats);
      }
    }
  }
  const out: string[] = [];
  for (const [name, f] of fam) out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`, ...f.lines);
  out.push('# HELP tsio_tpg_sessions Sessions open on a TPG.', '# TYPE tsio_tpg_sessions gauge', ...sessions);
  // What each fabric reports of its own state (FabricModule.metrics).
  for (const m of fabricModules()) if (m.metrics !== undefined) out.push(...sampleLines(m.metrics()));
  return out.join('\n') + '\n';
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

export async function listenMetrics(root: Root, spec: string): Promise<Server> {
  const { host, port } = parseListen(spec);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(prometheusText(root));
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(port, host, () => res());
  });
  return server;
}
