// tsio's rbd backstore over iSCSI against tgtd's (`--bstype rbd`, Debian tgt-rbd), on the
// single-node test cluster (scripts/ceph-dev, shared with the tests through test/util/ceph.ts),
// with fio's own rbd engine (librbd in the client, no gateway) as the reference. Same clients
// as the iscsi scenario: iscsi-perf for reads, qemu-img bench for writes. Each gateway serves its
// own image (all three filled alike first), so no run pays for another's exclusive lock. Reports
// IOPS, QD 1 latency, and IOPS per CPU-second of the gateway process (tsiod, tgtd); for fio the
// CPU is its own (librbd in-process), which is what a gateway's librbd costs too. tgtd and fio read
// a copy of the cluster's ceph.conf with `rbd cache = false`, as tsio runs: with librbd's default
// cache (writearound in Ceph 16) they would acknowledge writes before the OSDs have them
// (`--peer-cache` keeps the default, to show that). `--ab` adds a second tsiod on tsio's image
// with `direct_reads: false` (every read through librbd) to the read cases, for an A/B of the
// direct read path in the same rounds. `--ab-conf key=value,...` instead adds a second tsiod whose
// client reads those settings from its own copy of ceph.conf ([client] section; direct reads in
// both): an A/B of librados settings a gateway may choose for its own client (messenger threads,
// completion threads), in the same rounds. Either prints the second tsiod's per-thread CPU
// (msgr-worker, io_context_pool, the loop) per operation beside the first's.

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { startTsiod, freePort } from '../test/util/tsiod';
import { ceph } from '../test/util/ceph';
import { Scenario, caseFilter, k, machineLine, numOpt, stats, table } from './common';
import { requireTools, runClientTimed, startTgtd, type Run } from './peers';
import { measure, writeRun, type Case, type Target } from './iscsi';

const IMAGE_BYTES = 512 << 20;
const IQN_TSIO = 'iqn.2026-12.org.tsio:bench-rbd';
const IQN_TGTD = 'iqn.2026-12.org.tsio:bench-rbd-tgtd';

const CASES: Case[] = [
  { name: 'write-1m-seq', write: true, bytes: 1 << 20, random: false, qd: 8 },
  { name: 'write-4k-rand-qd1', write: true, bytes: 4096, random: true, qd: 1 },
  { name: 'write-4k-rand', write: true, bytes: 4096, random: true, qd: 32 },
  { name: 'read-4k-rand-qd1', write: false, bytes: 4096, random: true, qd: 1 },
  { name: 'read-4k-rand', write: false, bytes: 4096, random: true, qd: 32 },
  { name: 'read-1m-seq', write: false, bytes: 1 << 20, random: false, qd: 8 },
];

/** fio's rbd engine on its own image: librbd in the client, no gateway at all. */
async function fioRun(conf: string, image: string, c: Case, seconds: number): Promise<Run> {
  const rw = c.write ? (c.random ? 'randwrite' : 'write') : c.random ? 'randread' : 'read';
  const r = await runClientTimed('env', [
    `CEPH_CONF=${conf}`, 'fio', '--name=rbd', '--ioengine=rbd', '--clientname=admin', '--pool=rbd', `--rbdname=${image}`,
    `--rw=${rw}`, `--bs=${c.bytes}`, `--iodepth=${c.qd}`, '--time_based', `--runtime=${seconds}`, '--ramp_time=1',
    '--output-format=json',
  ], (seconds + 60) * 1000);
  const json = JSON.parse(r.out.slice(r.out.indexOf('{'), r.out.lastIndexOf('}') + 1)) as {
    jobs: { read: { iops: number }; write: { iops: number } }[];
  };
  const iops = c.write ? json.jobs[0].write.iops : json.jobs[0].read.iops;
  // Its CPU covers the 1 s ramp too: scale to the measured part.
  return { ops: iops * seconds, seconds, targetCpu: (r.cpu * seconds) / (seconds + 1) };
}

/** Thread groups whose CPU the A/B prints per operation: librados' messenger and completion threads, the rest. */
const THREAD_GROUPS = ['msgr-worker', 'io_context_pool', 'node (loops, V8)', 'other'] as const;
const CLK_TCK = 100;

/** CPU seconds of a process per thread group (/proc/PID/task/TID/stat: comm, utime, stime). */
function threadCpu(pid: number): number[] {
  const out = THREAD_GROUPS.map(() => 0);
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const g = comm.startsWith('msgr-worker') ? 0 : comm === 'io_context_pool' ? 1 : comm === 'node' ? 2 : 3;
    out[g] += (Number(f[11]) + Number(f[12])) / CLK_TCK;
  }
  return out;
}

/** A read run with the target's CPU per thread group per operation (µs). */
async function measureThreads(t: Target, cs: Case, seconds: number): Promise<Run & { perOp: number[] }> {
  const before = threadCpu(t.pid);
  const r = await measure(t, cs, seconds);
  const after = threadCpu(t.pid);
  return { ...r, perOp: after.map((x, i) => ((x - before[i]) * 1e6) / Math.max(r.ops, 1)) };
}

const HEADER = ['case', 'tsio IOPS', 'tgtd IOPS', 'fio-rbd IOPS', 'tsio IOPS/cpu-s', 'tgtd IOPS/cpu-s', 'ratio',
  'fio IOPS/cpu-s', 'tsio lat', 'tgtd lat', 'fio lat', 'tsio/fio lat'];

export const rbdScenario: Scenario = {
  name: 'rbd',
  description: 'tsiod vs tgtd --bstype rbd over iSCSI on a one-node Ceph (scripts/ceph-dev), fio rbd engine as reference',
  byDefault: false,
  async run(args) {
    requireTools([['tgtd', 'tgt'], ['tgtadm', 'tgt'], ['iscsi-perf', 'libiscsi-bin'], ['qemu-img', 'qemu-utils'], ['fio', 'fio']]);
    if (spawnSync('sh', ['-c', 'ls /usr/lib/*/tgt/backing-store/bs_rbd.so /usr/lib/tgt/backing-store/bs_rbd.so 2>/dev/null']).stdout.length === 0) {
      throw new Error('tgtd has no rbd backing store (Debian package tgt-rbd): run scripts/install-deps --bench');
    }
    const rounds = numOpt(args, '--rounds', 3);
    const peerCache = args.includes('--peer-cache');
    const abConfAt = args.indexOf('--ab-conf');
    const abConf = abConfAt < 0 ? undefined : (args[abConfAt + 1] ?? '').split(',').filter((kv) => /^\w+=\S+$/.test(kv));
    if (abConf !== undefined && abConf.length === 0) throw new Error('--ab-conf needs key=value[,key=value...]');
    const ab = args.includes('--ab') || abConf !== undefined;
    const seconds = numOpt(args, '--seconds', 5);
    const want = caseFilter(args, 'rbd');
    const c = ceph();
    console.log(machineLine());
    console.log(`${rounds} rounds per case, each run ${seconds} s, tsio, tgtd and fio alternating; 512-byte blocks; ` +
      `one ${IMAGE_BYTES >> 20} MiB image each, pool size 1, one bluestore OSD; peers' rbd cache ${peerCache ? 'librbd default' : 'off'}\n`);
    const peerConf = `${c.dir}/bench-peers-${process.pid}.conf`;
    writeFileSync(peerConf, readFileSync(c.conf, 'utf8') + (peerCache ? '' : '\n[client]\nrbd cache = false\n'));
    const images = ['tsio', 'tgtd', 'fio'].map((w) => c.imageName(`bench-${w}`));
    for (const i of images) c.rbd('create', `rbd/${i}`, '--size', `${IMAGE_BYTES >> 20}M`);
    // The A/B tsiod's client settings: the cluster's ceph.conf and a [client] section of its own.
    const abConfFile = `${c.dir}/bench-ab-${process.pid}.conf`;
    if (abConf !== undefined) {
      writeFileSync(abConfFile, `${readFileSync(c.conf, 'utf8')}\n[client]\n${abConf.map((kv) => kv.replace('=', ' = ')).join('\n')}\n`);
    }
    const tsiodConfig = (direct: boolean, conf = c.conf) => (port: number) => `storage_objects:
  - { name: img, plugin: rbd, image: ${images[0]}, conf: ${conf}, direct_reads: ${direct} }
targets:
  - fabric: iscsi
    wwn: ${IQN_TSIO}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/rbd/img } ]
`;
    const tsio = await startTsiod(tsiodConfig(true));
    // Only ever reads (no exclusive lock moves between the two).
    const librbd = !ab ? undefined : await startTsiod(abConf === undefined ? tsiodConfig(false) : tsiodConfig(true, abConfFile));
    const abName = abConf === undefined ? ['direct', 'librbd'] : ['default', abConf.join(' ')];
    let tgtd: { pid: number; stop(): void } | undefined;
    try {
      const tgtPort = await freePort();
      tgtd = await startTgtd(tgtPort, IQN_TGTD, `rbd/${images[1]}`, ['--bstype', 'rbd', '--bsopts', `conf=${peerConf};id=admin`]);
      const targets: Target[] = [
        { name: 'tsio', url: `iscsi://127.0.0.1:${tsio.port}/${IQN_TSIO}/0`, pid: tsio.proc.pid!, counts: new Map() },
        { name: 'tgtd', url: `iscsi://127.0.0.1:${tgtPort}/${IQN_TGTD}/1`, pid: tgtd.pid, counts: new Map() },
      ];
      const abTarget: Target | undefined = librbd && { name: 'tsio-librbd', url: `iscsi://127.0.0.1:${librbd.port}/${IQN_TSIO}/0`, pid: librbd.proc.pid!, counts: new Map() };
      const abRows: string[][] = [];
      const threadRows: string[][] = [];
      const threadCols = [...THREAD_GROUPS];
      let abOwns = false;
      // Fill every image once, so reads find data everywhere.
      for (const t of targets) await writeRun(t, CASES[0], IMAGE_BYTES / CASES[0].bytes);
      c.rbd('bench', '--io-type', 'write', '--io-size', '4M', '--io-total', `${IMAGE_BYTES}`, '--io-pattern', 'seq', `rbd/${images[2]}`);

      const rows: string[][] = [];
      for (const cs of CASES) {
        if (!want(cs.name)) continue;
        const runs: Run[][] = [[], [], [], []];
        const perOp: number[][][] = [[], []];
        for (const t of targets) if (cs.write) await measure(t, cs, 1); // calibrate and warm up
        if (abTarget && !cs.write && !abOwns && abConf === undefined) {
          // A few writes move the image's exclusive lock to the librbd tsiod, as a lone gateway holds it
          // (librbd's reads may depend on it: the object map); direct reads do not use it.
          await writeRun(abTarget, CASES[1], 64);
          abOwns = true;
        }
        for (let r = 0; r < rounds; r++) {
          for (const [i, t] of targets.entries()) {
            if (i === 0 && abTarget && !cs.write) {
              const r = await measureThreads(t, cs, seconds);
              runs[0].push(r);
              perOp[0].push(r.perOp);
            } else runs[i].push(await measure(t, cs, seconds));
          }
          runs[2].push(await fioRun(peerConf, images[2], cs, seconds));
          if (abTarget && !cs.write) {
            const r = await measureThreads(abTarget, cs, seconds);
            runs[3].push(r);
            perOp[1].push(r.perOp);
          }
        }
        if (runs[3].length > 0) {
          const ops = [runs[0], runs[3]].map((rs) => stats(rs.map((x) => x.ops / x.seconds)).median);
          const cpu = [runs[0], runs[3]].map((rs) => stats(rs.map((x) => x.ops / Math.max(x.targetCpu, 0.01))).median);
          abRows.push([cs.name, k(ops[0]), k(ops[1]), k(cpu[0]), k(cpu[1]), (cpu[0] / cpu[1]).toFixed(2),
            ...(cs.qd === 1 ? ops.map((x) => `${(1e6 / x).toFixed(0)} µs`) : ['-', '-'])]);
          threadRows.push([cs.name, ...THREAD_GROUPS.map((_, g) =>
            perOp.map((side) => stats(side.map((x) => x[g])).median.toFixed(1)).join(' / '))]);
        }
        const iops = runs.slice(0, 3).map((rs) => stats(rs.map((x) => x.ops / x.seconds)).median);
        const perCpu = runs.slice(0, 3).map((rs) => stats(rs.map((x) => x.ops / Math.max(x.targetCpu, 0.01))).median);
        // At queue depth 1 the mean latency is the inverse of the rate.
        const lat = iops.map((x) => (cs.qd === 1 ? `${(1e6 / x).toFixed(0)} µs` : '-'));
        const row = [cs.name, k(iops[0]), k(iops[1]), k(iops[2]), k(perCpu[0]), k(perCpu[1]), (perCpu[0] / perCpu[1]).toFixed(2),
          k(perCpu[2]), ...lat, cs.qd === 1 ? (iops[2] / iops[0]).toFixed(2) : '-'];
        rows.push(row);
        console.log(table(HEADER, [row]).split('\n')[1]);
      }
      console.log('\n' + table(HEADER, rows));
      console.log('\nmedians over rounds; IOPS/cpu-s: operations per CPU-second of the gateway process (tsiod, tgtd) or of fio ' +
        '(librbd in-process, no iSCSI); ratio = tsio / tgtd; lat: mean latency at queue depth 1');
      if (abRows.length > 0) {
        console.log(abConf === undefined
          ? '\nA/B, reads: tsiod with direct_reads (RADOS) against tsiod with every read through librbd, same image, same rounds\n'
          : `\nA/B, reads: tsiod with the default client settings (A) against tsiod with ${abName[1]} (B), same image, same rounds\n`);
        const [a, b] = abConf === undefined ? abName : ['A', 'B'];
        console.log(table(['case', `${a} IOPS`, `${b} IOPS`, `${a} IOPS/cpu-s`, `${b} IOPS/cpu-s`, 'ratio', `${a} lat`, `${b} lat`], abRows));
        console.log(`\nper-thread CPU per operation (µs, medians over rounds; ${a} / ${b}):\n`);
        console.log(table(['case', ...threadCols], threadRows));
      }
    } finally {
      tgtd?.stop();
      await tsio.stop();
      await librbd?.stop();
      for (const i of images) spawnSync('rbd', ['-c', c.conf, 'rm', '--no-progress', `rbd/${i}`]);
      rmSync(peerConf, { force: true });
      rmSync(abConfFile, { force: true });
    }
  },
};
