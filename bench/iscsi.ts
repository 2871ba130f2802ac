// tsio's iSCSI target against tgtd (the Linux user-space target) on
// 127.0.0.1, both serving a 1 GiB RAM LUN (tsio: rd_mcp, or with
// `--backstore fileio` a file on /dev/shm as tgtd's; tgtd: a file on
// /dev/shm). Reads are driven by libiscsi's iscsi-perf, writes by
// `qemu-img bench` (QEMU's libiscsi driver). Runs alternate between the two
// targets, so drift of the shared machine hits both alike; each reports IOPS
// and IOPS per CPU-second of the target process (/proc/PID/stat). The 1 MiB
// reads are also set against the machine's loopback TCP bandwidth (one iperf3
// stream, measured in the same rounds), with the CPU the target and the
// client each used: on 2 cores the client's share decides what is left.

import { rmSync, truncateSync, writeFileSync } from 'node:fs';
import { startTsiod, freePort } from '../test/util/tsiod';
import { Scenario, caseFilter, choiceOpt, k, machineLine, numOpt, stats, table } from './common';
import { cpuSeconds, loopbackTcp, requireTools, runClient, runClientTimed, startTgtd, type Run } from './peers';

const LUN_BYTES = 1 << 30;
const IQN_TSIO = 'iqn.2026-11.org.tsio:bench';
const IQN_TGTD = 'iqn.2026-11.org.tsio:bench-tgtd';

export interface Case {
  name: string;
  write: boolean;
  bytes: number;
  random: boolean;
  qd: number;
  /** iscsi-perf processes run side by side (each its own session at queue depth qd); default 1. */
  clients?: number;
}

// The 1 MiB write pass comes first: it also fills both LUNs, so later reads copy real data on both.
const CASES: Case[] = [
  { name: 'write-1m-seq', write: true, bytes: 1 << 20, random: false, qd: 8 },
  { name: 'write-4k-rand', write: true, bytes: 4096, random: true, qd: 32 },
  { name: 'read-4k-rand', write: false, bytes: 4096, random: true, qd: 32 },
  { name: 'read-64k-seq', write: false, bytes: 64 << 10, random: false, qd: 16 },
  { name: 'read-1m-seq', write: false, bytes: 1 << 20, random: false, qd: 8 },
  // Whether one single-threaded client is what limits 1 MiB reads.
  { name: 'read-1m-seq-2c', write: false, bytes: 1 << 20, random: false, qd: 8, clients: 2 },
];

/** Cases measured against loopback TCP. */
const vsTcp = (c: Case): boolean => !c.write && c.bytes >= 1 << 20;

export interface Target {
  name: string;
  url: string;
  pid: number;
  /** qemu-img bench request count that lasts about the asked time, per write case (calibrated in warm-up). */
  counts: Map<string, number>;
}

/** qemu-img bench: `count` writes; a random-looking order from a large odd stride (it has no random mode). */
export async function writeRun(t: Target, c: Case, count: number): Promise<Run> {
  const step = c.random ? c.bytes * 7919 : c.bytes;
  const cpu0 = cpuSeconds(t.pid);
  const out = await runClient('qemu-img', [
    'bench', '-w', '-f', 'raw', '-t', 'none', '-d', String(c.qd), '-s', String(c.bytes), '-S', String(step),
    '-c', String(count), t.url,
  ], 600_000);
  const cpu = cpuSeconds(t.pid) - cpu0;
  const m = /Run completed in ([\d.]+) seconds/.exec(out);
  if (!m) throw new Error(`qemu-img bench printed no result:\n${out}`);
  return { ops: count, seconds: Number(m[1]), targetCpu: cpu };
}

export async function readRun(t: Target, c: Case, seconds: number): Promise<Run> {
  const cpu0 = cpuSeconds(t.pid);
  const args = ['-m', String(c.qd), '-b', String(c.bytes / 512), ...(c.random ? ['-r'] : []), '-t', String(seconds), t.url];
  const outs = await Promise.all(
    Array.from({ length: c.clients ?? 1 }, () => runClientTimed('iscsi-perf', args, (seconds + 60) * 1000)),
  );
  const cpu = cpuSeconds(t.pid) - cpu0;
  let iops = 0;
  for (const { out } of outs) {
    const all = [...out.matchAll(/iops average (\d+)/g)];
    if (!all.length) throw new Error(`iscsi-perf printed no average:\n${out}`);
    iops += Number(all[all.length - 1][1]);
  }
  return { ops: iops * seconds, seconds, targetCpu: cpu, clientCpu: outs.reduce((a, o) => a + o.cpu, 0) };
}

export async function measure(t: Target, c: Case, seconds: number): Promise<Run> {
  if (!c.write) return readRun(t, c, seconds);
  let count = t.counts.get(c.name);
  if (count === undefined) {
    // Calibration: a short run tells the rate; later runs are sized to last `seconds`.
    const probe = await writeRun(t, c, c.bytes >= 1 << 20 ? 256 : 4096);
    count = Math.max(256, Math.round((probe.ops / probe.seconds) * seconds));
    t.counts.set(c.name, count);
  }
  return writeRun(t, c, count);
}

const HEADER = ['case', 'tsio IOPS', 'tgtd IOPS', 'ratio', 'tsio IOPS/cpu-s', 'tgtd IOPS/cpu-s', 'ratio', 'tsio MB/s', 'tgtd MB/s'];
const TCP_HEADER = ['case', 'tsio MB/s', '% of TCP', 'tsiod cores', 'client cores', 'tgtd MB/s', '% of TCP', 'tgtd cores',
  'client cores', 'TCP MB/s', 'iperf3 cores'];

export const iscsiScenario: Scenario = {
  name: 'iscsi',
  description: 'tsiod vs tgtd over iSCSI on 127.0.0.1 (iscsi-perf reads, qemu-img bench writes), 1 GiB RAM LUNs',
  byDefault: false,
  async run(args) {
    requireTools([['tgtd', 'tgt'], ['tgtadm', 'tgt'], ['iscsi-perf', 'libiscsi-bin'], ['qemu-img', 'qemu-utils'], ['iperf3', 'iperf3']]);
    const rounds = numOpt(args, '--rounds', 3);
    const seconds = numOpt(args, '--seconds', 5);
    const want = caseFilter(args, 'iscsi');
    const backstore = choiceOpt(args, '--backstore', ['rd_mcp', 'fileio'] as const);
    console.log(machineLine());
    console.log(`${rounds} rounds per case, each run ${seconds} s, tsio (${backstore}) and tgtd alternating; 512-byte blocks\n`);

    const shm = `/dev/shm/tsio-bench-tgtd-${process.pid}.img`;
    const tsioShm = `/dev/shm/tsio-bench-tsio-${process.pid}.img`;
    const tsio = await startTsiod((port) => `storage_objects:
  - ${backstore === 'fileio' ? `{ name: ram0, plugin: fileio, dev: ${tsioShm}, size: ${LUN_BYTES} }` : `{ name: ram0, plugin: rd_mcp, size: ${LUN_BYTES} }`}
targets:
  - fabric: iscsi
    wwn: ${IQN_TSIO}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/${backstore}/ram0 } ]
`);
    let tgtd: { pid: number; stop(): void } | undefined;
    try {
      // A sparse file: tgtd's pages, like tsio's, come into being on first write.
      writeFileSync(shm, '');
      truncateSync(shm, LUN_BYTES);
      const tgtPort = await freePort();
      tgtd = await startTgtd(tgtPort, IQN_TGTD, shm);
      const targets: Target[] = [
        { name: 'tsio', url: `iscsi://127.0.0.1:${tsio.port}/${IQN_TSIO}/0`, pid: tsio.proc.pid!, counts: new Map() },
        { name: 'tgtd', url: `iscsi://127.0.0.1:${tgtPort}/${IQN_TGTD}/1`, pid: tgtd.pid, counts: new Map() },
      ];
      // Fill both LUNs once (also warms both targets up).
      for (const t of targets) await writeRun(t, CASES[0], LUN_BYTES / CASES[0].bytes);

      const rows: string[][] = [];
      const tcpRows: string[][] = [];
      for (const c of CASES) {
        if (!want(c.name)) continue;
        const runs: Run[][] = [[], []];
        const tcp: { bytesPerSecond: number; senderCpu: number }[] = [];
        for (const t of targets) if (c.write) await measure(t, c, 1); // calibrate and warm up
        for (let r = 0; r < rounds; r++) {
          for (const [i, t] of targets.entries()) runs[i].push(await measure(t, c, seconds));
          if (vsTcp(c)) tcp.push(await loopbackTcp(await freePort(), seconds));
        }
        const iops = runs.map((rs) => stats(rs.map((x) => x.ops / x.seconds)).median);
        const perCpu = runs.map((rs) => stats(rs.map((x) => x.ops / Math.max(x.targetCpu, 0.01))).median);
        const mb = iops.map((x) => ((x * c.bytes) / 1e6).toFixed(0));
        const row = [c.name, k(iops[0]), k(iops[1]), (iops[0] / iops[1]).toFixed(2), k(perCpu[0]), k(perCpu[1]),
          (perCpu[0] / perCpu[1]).toFixed(2), mb[0], mb[1]];
        rows.push(row);
        console.log(table(HEADER, [row]).split('\n')[1]);
        if (tcp.length) {
          const tcpBps = stats(tcp.map((x) => x.bytesPerSecond)).median;
          const cores = (rs: Run[], f: (x: Run) => number) => stats(rs.map((x) => f(x) / x.seconds)).median.toFixed(2);
          const tr = [c.name];
          for (const [i, rs] of runs.entries()) {
            tr.push(mb[i], `${((100 * iops[i] * c.bytes) / tcpBps).toFixed(0)}%`, cores(rs, (x) => x.targetCpu), cores(rs, (x) => x.clientCpu ?? 0));
          }
          tr.push((tcpBps / 1e6).toFixed(0), stats(tcp.map((x) => x.senderCpu / seconds)).median.toFixed(2));
          tcpRows.push(tr);
          console.log(`  ${c.name}: tsio ${tr[2]} of loopback TCP (iperf3, one stream: ${tr[9]} MB/s)`);
        }
      }
      console.log('\n' + table(HEADER, rows));
      console.log('\nmedians over rounds; ratio = tsio / tgtd; IOPS/cpu-s: operations per CPU-second of the target process');
      if (tcpRows.length) {
        console.log('\n' + table(TCP_HEADER, tcpRows));
        console.log(`\nagainst loopback TCP: one iperf3 stream on 127.0.0.1 for ${seconds} s in each round; cores: CPU-seconds per ` +
          'second of the target process and of the client process(es) (iscsi-perf; iperf3: the sender)');
      }
    } finally {
      tgtd?.stop();
      await tsio.stop();
      rmSync(shm, { force: true });
      rmSync(tsioShm, { force: true });
      rmSync(tsio.dir, { recursive: true, force: true });
    }
  },
};
