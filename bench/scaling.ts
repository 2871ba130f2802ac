// io_threads 1 against io_threads 2: two vhost-user-scsi controllers (the
// project's front-end, each in its own process) and two iSCSI sessions to two
// targets on two portals (iscsi-perf; --one-portal: both on one, each session
// then handed to its target's thread at login), all four driven at once, 4 KiB random
// reads from RAM units. Runs alternate between a tsiod with one loop and one
// with two I/O threads; each reports the aggregate IOPS, tsiod's CPU seconds
// and how they spread over its threads (/proc/PID/task), and IOPS per tsiod
// CPU-second.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ControlClient } from '../cli/client';
import { freePort, startTsiod, type Daemon } from '../test/util/tsiod';
import { k, machineLine, numOpt, stats, table, type Scenario } from './common';
import { requireTools, runClientTimed } from './peers';

const FRONTEND = join(__dirname, '..', 'tools', 'vhost-frontend', 'cli.js');
const CLK_TCK = 100;

interface Setup {
  threads: number;
  d: Daemon;
  ports: number[];
  /** Kernel ids of the I/O threads (none with io_threads 1). */
  io: number[];
}

function config(threads: number, dir: string, ports: number[]): string {
  const lines = [`daemon: { io_threads: ${threads} }`, 'storage_objects:'];
  for (const n of ['va', 'vb', 'ia', 'ib']) lines.push(`  - { name: ${n}, plugin: rd_mcp, size: 256MiB }`);
  lines.push('targets:');
  for (const [i, n] of ['va', 'vb'].entries()) {
    lines.push('  - fabric: vhost', `    wwn: naa.50014050000009${i}${threads}`, '    tpgs:',
      `      - { tag: 1, socket: ${join(dir, `${n}.sock`)}, luns: [ { index: 0, storage_object: /backstores/rd_mcp/${n} } ] }`);
  }
  for (const [i, n] of ['ia', 'ib'].entries()) {
    lines.push('  - fabric: iscsi', `    wwn: iqn.2026-12.org.tsio:scaling-${n}`, '    tpgs:', '      - tag: 1',
      '        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }',
      `        portals: [ { ip_address: 127.0.0.1, port: ${ports[i]} } ]`,
      `        luns: [ { index: 0, storage_object: /backstores/rd_mcp/${n} } ]`);
  }
  return lines.join('\n') + '\n';
}

/** CPU ticks of each thread of pid, by thread id. */
function threadTicks(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const r = f.slice(f.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), Number(r[11]) + Number(r[12]));
    } catch {
      /* the thread ended */
    }
  }
  return out;
}

interface Result {
  vhost: number;
  iscsi: number;
  /** tsiod CPU seconds: main thread, each I/O thread, the rest (GC, libuv pool). */
  main: number;
  io: number[];
  other: number;
}

async function once(s: Setup, seconds: number, qd: number): Promise<Result> {
  const pid = s.d.proc.pid!;
  const t0 = threadTicks(pid);
  const vhost = ['va', 'vb'].map((n) => runClientTimed(process.execPath, [FRONTEND, '--socket', join(s.d.dir, `${n}.sock`), '--qd', String(qd), '--seconds', String(seconds), '--rw', 'randread', '--json'], (seconds + 60) * 1000));
  const iscsi = ['ia', 'ib'].map((n, i) => runClientTimed('iscsi-perf', ['-m', String(qd), '-b', '8', '-r', '-t', String(seconds), `iscsi://127.0.0.1:${s.ports[i]}/iqn.2026-12.org.tsio:scaling-${n}/0`], (seconds + 60) * 1000));
  const [v, i] = await Promise.all([Promise.all(vhost), Promise.all(iscsi)]);
  const t1 = threadTicks(pid);
  const used = (tid: number) => ((t1.get(tid) ?? 0) - (t0.get(tid) ?? 0)) / CLK_TCK;
  const all = [...t1.keys()].reduce((a, tid) => a + used(tid), 0);
  const main = used(pid);
  const io = s.io.map(used);
  const iopsOf = (out: string) => {
    const m = [...out.matchAll(/iops average (\d+)/g)];
    if (!m.length) throw new Error(`iscsi-perf printed no average:\n${out}`);
    return Number(m[m.length - 1][1]);
  };
  return {
    vhost: v.reduce((a, r) => a + (JSON.parse(r.out) as { iops: number }).iops, 0),
    iscsi: i.reduce((a, r) => a + iopsOf(r.out), 0),
    main, io, other: all - main - io.reduce((a, x) => a + x, 0),
  };
}

async function start(threads: number, onePortal: boolean): Promise<Setup> {
  const ports = [0, onePortal ? 0 : await freePort()];
  const d = await startTsiod((port, dir) => ((ports[0] = port), onePortal && (ports[1] = port), config(threads, dir, ports)));
  const c = await ControlClient.connect(d.sock);
  const t = await c.call<{ tid: number }[]>('threads');
  c.close();
  return { threads, d, ports, io: threads > 1 ? t.map((x) => x.tid) : [] };
}

export const scalingScenario: Scenario = {
  name: 'scaling',
  description: 'io_threads 1 vs 2: two vhost controllers (vhost-frontend processes) and two iSCSI sessions (iscsi-perf) at once, 4 KiB random reads',
  byDefault: false,
  async run(args) {
    requireTools([['iscsi-perf', 'libiscsi-bin']]);
    const rounds = numOpt(args, '--rounds', 3);
    const seconds = numOpt(args, '--seconds', 5);
    const qd = numOpt(args, '--qd', 16);
    const onePortal = args.includes('--one-portal');
    console.log(machineLine());
    console.log(`${rounds} rounds, each run ${seconds} s, QD ${qd} per client, io_threads 1 and 2 alternating${onePortal ? ', both iSCSI targets on one portal' : ''}\n`);
    const setups = [await start(1, onePortal), await start(2, onePortal)];
    try {
      const res = new Map<number, Result[]>(setups.map((s) => [s.threads, []]));
      // Warm-up: every unit's pages written once is not needed for reads of RAM units; one short run settles the JIT.
      for (const s of setups) await once(s, 2, qd);
      for (let r = 0; r < rounds; r++) for (const s of setups) res.get(s.threads)!.push(await once(s, seconds, qd));
      const rows = setups.map((s) => {
        const rs = res.get(s.threads)!;
        const total = rs.map((x) => x.vhost + x.iscsi);
        const cpu = rs.map((x) => x.main + x.other + x.io.reduce((a, y) => a + y, 0));
        const med = (xs: number[]) => stats(xs).median;
        const perCpu = rs.map((x, j) => (total[j] * seconds) / cpu[j]);
        const io = s.io.map((_, j) => `${(med(rs.map((x) => x.io[j])) / seconds).toFixed(2)}`).join(' + ');
        return [String(s.threads), k(med(rs.map((x) => x.vhost))), k(med(rs.map((x) => x.iscsi))), `${k(med(total))} (${k(stats(total).min)}-${k(stats(total).max)})`,
          (med(cpu) / seconds).toFixed(2), (med(rs.map((x) => x.main)) / seconds).toFixed(2), io || '-', (med(rs.map((x) => x.other)) / seconds).toFixed(2), k(med(perCpu))];
      });
      console.log(table(['io_threads', 'vhost IOPS', 'iSCSI IOPS', 'total IOPS (min-max)', 'tsiod cores', 'main', 'I/O threads', 'other', 'IOPS/cpu-s'], rows));
      console.log('\ncores: CPU seconds per second of run (median); other: V8 GC and libuv pool threads');
    } finally {
      for (const s of setups) await s.d.stop();
    }
  },
};
