// The seed's guest benchmark (issue 17): one TCG guest (the test kernel, 1 vCPU,
// shared memfd RAM) with four storage paths attached at once, each on RAM:
//   tsio-scsi   tsiod vhost-user-scsi, one controller, 32 fileio LUNs on /dev/shm files
//   qemu-scsi   QEMU's built-in virtio-scsi-pci with an iothread, 32 scsi-hd on the same kind of files
//   qsd-blk     qemu-storage-daemon's vhost-user-blk export of one such file
//   tsio-blk    tsiod vhost-user-blk (TPG `device: blk`) of one such file
// With --vq-size N one more in the same guest: tsio-scsi-vq, the same LUNs on a controller whose virtqueues have
// N entries (QEMU's vhost-user-scsi-pci virtqueue_size, 128 by default; its built-in virtio-scsi-pci has 256).
// The guest runs the same fio jobs on each in turn (4 KiB random read, then
// write, after the seed's sequential reads of 4 to 64 KiB with --seed, or only
// those with --seed-only; libaio, direct; one job per device, group_reporting) and marks each run
// on its console; the host reads the back end's CPU time around it: the whole
// process for tsiod and qemu-storage-daemon, for QEMU's built-in path its
// iothread (`-object iothread,id=iot0`, comm "IO iot0" with debug-threads=on)
// plus the io_uring and thread-pool workers QEMU runs beside it. Under TCG the
// guest's one vCPU is the bottleneck, so MB/s and IOPS mostly measure the guest;
// back-end CPU per I/O is the figure that compares the back ends. Kicks and
// interrupts are counted in the guest for every path alike: interrupts on the
// device's MSI-X vectors (/proc/interrupts), kicks by a kprobe on the virtio
// driver's notify (vp_notify) with a histogram by virtqueue name.

import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Scenario, caseFilter, k, machineLine, numOpt, table } from './common';
import { cpuSeconds, requireTools } from './peers';
import { startQsdBlk } from './vhost';
import { startGuest } from '../test/util/guest';
import { controlRpc, startTsiod, type Daemon } from '../test/util/tsiod';

const LUNS = 32;
const LUN_MIB = 64;
const BLK_MIB = 1024;
const IDLE_SECONDS = 10;
/** How often the host samples CPU times (ms): steady windows are read off these samples at the guest's marks. */
const SAMPLE_MS = 50;
/** Raw files in QEMU and qemu-storage-daemon alike: page cache on tmpfs (O_DIRECT is not there), io_uring. */
const FILE_OPTS = 'cache.direct=off,aio=io_uring';

interface Path {
  name: string;
  /** Whose CPU it is: paths of one process share it. */
  proc: string;
  /** PCI slot of its controller in the guest. */
  slot: string;
  luns: number;
  /** Back-end CPU seconds so far. */
  cpu(): number;
}

/** fio's cases: 4 KiB random reads and writes; with --seed also the seed's sequential reads of 4 to 64 KiB. */
const RANDOM = ['randread', 'randwrite'];
const SEED = 'read';
const fioShape = (rw: string): string => (rw === SEED ? '--rw=read --bsrange=4k-64k' : `--bs=4k --rw=${rw}`);

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds per thread of pid whose comm matches re (with names, when given a map to fill). */
function threadCpu(pid: number, re: RegExp, names?: Map<number, string>): Map<number, number> {
  const m = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!re.test(comm)) continue;
      names?.set(Number(tid), comm);
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      m.set(Number(tid), (Number(f[11]) + Number(f[12])) / CLK_TCK);
    } catch {
      // the thread ended between listing and reading
    }
  }
  return m;
}

function touch(file: string, mib: number): void {
  rmSync(file, { force: true });
  // Allocated, not sparse: reads and writes alike hit real pages from the first I/O.
  const r = spawnSync('fallocate', ['-l', `${mib}M`, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`fallocate ${file}: ${r.stderr}`);
}

/** Guest shell: `devs SLOT` lists the block devices under PCI slot SLOT ("0000:00:10.0"); `waitdevs SLOT N` waits for N. */
const GUEST_HELPERS = `
devs() {
  local out=""
  for b in /sys/block/*; do case "$(readlink -f "$b")" in */$1/*) out="$out /dev/$(basename "$b")";; esac; done
  echo $out
}
waitdevs() {
  for i in $(seq 600); do [ "$(devs "$1" | wc -w)" -ge "$2" ] && return 0; sleep 0.1; done
  echo "only $(devs "$1" | wc -w) of $2 devices under $1"; return 1
}
# The marks' counts are taken without a fork (a subshell waits behind 32 busy fio jobs for seconds under TCG, so
# counts read in $(...) one after another were of different stretches), by a shell reniced to -20 (set below).
# Requests completed so far on each device of $DV, into the array C.
cnt() { local d f; C=(); for d in $DV; do read -a f < /sys/block/$d/stat; C+=($((f[0] + f[4]))); done; }
# How many devices of $DV completed requests since the counts in array A, into MOVED.
moved() { local k; MOVED=0; for k in "\${!C[@]}"; do if [ "\${C[k]}" != "\${A[k]}" ]; then MOVED=$((MOVED + 1)); fi; done; }
# Interrupts the guest took from the PCI device $1 (its MSI-X vectors) so far, into IRQS.
irqs() { local n c rest; IRQS=0; while read -r n c rest; do n=\${n%:}; if [ -e /sys/bus/pci/devices/$1/msi_irqs/$n ]; then IRQS=$((IRQS + c)); fi; done < /proc/interrupts; }
# Kicks the guest's virtio drivers made so far (a kprobe on vp_notify, counted by virtqueue name), those of 9p's
# "requests" queues left out, into KICKS; -1 when the kprobe could not be set. One path runs at a time, so a
# window's kicks are its path's.
T=/sys/kernel/tracing
kprobe() {
  mountpoint -q $T || mount -t tracefs nodev $T || return 1
  echo 'p:tsiokick vp_notify name=+0(+24(%di)):string' > $T/kprobe_events || return 1
  echo 'hist:keys=name' > $T/events/kprobes/tsiokick/trigger && echo 1 > $T/events/kprobes/tsiokick/enable
}
KP=1; kprobe || KP=0
kicks() { local l; KICKS=0; if [ $KP = 0 ]; then KICKS=-1; return; fi; while read -r l; do case "$l" in *"name: requests "*) ;; "{ "*hitcount:*) KICKS=$((KICKS + \${l##*hitcount:}));; esac; done < $T/events/kprobes/tsiokick/hist; }
# A mark's counts for the PCI device $1, all at once: its devices' requests (SUM), interrupts, kicks, the clock (NOW).
mark() { local c; cnt; SUM=0; for c in "\${C[@]}"; do SUM=$((SUM + c)); done; irqs $1; kicks; NOW=$EPOCHREALTIME; }
# Waits (at most 60 s) until every device of $DV has completed a request since the counts in A: every fio job runs.
allrunning() { local i; for i in $(seq 120); do cnt; moved; if [ $MOVED -eq \${#C[@]} ]; then return 0; fi; sleep 0.5; done; }
renice -n -20 $$ > /dev/null || true
`;

const HEADER = ['case', 'fio', 'MB/s', 'IOPS', 'steady IOPS', 'backend us/IO', 'guest us/IO', 'guest irqs/IO', 'guest kicks/IO', 'tsiod kicks/IO', 'calls/IO'];

/** tsiod's vhost controllers (WWNs of the config below). */
const TSIO_WWN: Record<string, string> = {
  'tsio-scsi': 'naa.5001405000000c01', 'tsio-blk': 'naa.5001405000000c02', 'tsio-scsi-vq': 'naa.5001405000000c05',
};
type Counts = { requests: number; kicks: number; calls: number };

/** What tsiod counted on a vhost TPG's connections: requests returned, kicks taken, calls sent (the control API's tree). */
async function tsioCounts(d: Daemon, path: string): Promise<Counts | undefined> {
  const wwn = TSIO_WWN[path];
  if (wwn === undefined) return undefined;
  const r = await controlRpc(d.sock, 'tree', {});
  if (r.error) throw new Error(`tree: ${r.error.message}`);
  const c: Counts = { requests: 0, kicks: 0, calls: 0 };
  for (const fe of (r.result.runtime.tpgs[`${wwn}/1`]?.fabric?.frontends ?? []) as Counts[]) {
    for (const k of Object.keys(c) as (keyof Counts)[]) c[k] += fe[k] ?? 0;
  }
  return c;
}

export const vhostGuestScenario: Scenario = {
  name: 'vhost-guest',
  description: 'a TCG guest: tsio vhost-user-scsi (32 LUNs) vs QEMU virtio-scsi+iothread, tsio vs qsd vhost-user-blk; fio 4 KiB random',
  byDefault: false,
  async run(args) {
    requireTools([
      ['qemu-storage-daemon', 'qemu-system-common (qemu-system-x86)'],
      ['qemu-system-x86_64', 'qemu-system-x86'],
      ['fio', 'fio'],
      ['fallocate', 'util-linux'],
    ]);
    const seconds = numOpt(args, '--seconds', 15);
    const rounds = numOpt(args, '--rounds', 1);
    const qdLun = numOpt(args, '--iodepth', 4);
    const qdBlk = numOpt(args, '--blk-iodepth', 16);
    const want = caseFilter(args, 'vhost-guest');
    // --seed: the seed's case first, then the random ones; --seed-only: the seed's case alone.
    const RWS = args.includes('--seed-only') ? [SEED] : args.includes('--seed') ? [SEED, ...RANDOM] : RANDOM;
    // tsiod's ring polling (off by default): the same run with and without shows what it does.
    const pollNs = numOpt(args, '--poll-max-ns', 0);
    // The guest's virtqueue size for one more vhost-user-scsi controller of the same LUNs (0: none).
    const vqSize = numOpt(args, '--vq-size', 0);
    // CPU per I/O is taken over a window inside each run where every fio job is running.
    const steadySeconds = Math.max(2, Math.floor(seconds / 3));
    console.log(machineLine());
    console.log(`load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
    console.log(`fio in a 1-vCPU TCG guest: ${RWS.map((rw) => fioShape(rw).replace(/--/g, '')).join(', then ')}, ioengine=libaio direct=1, ${seconds} s per run, ${rounds} round(s); ` +
      `32-LUN cases: one job per LUN at iodepth ${qdLun}, group_reporting; blk cases: one job at iodepth ${qdBlk}; ` +
      `tsiod --poll-max-ns ${pollNs}` + (vqSize > 0 ? `; tsio-scsi-vq with virtqueue_size ${vqSize}` : '') + '\n');

    const dir = mkdtempSync(join(tmpdir(), 'tsio-bench-vguest-'));
    const shm = mkdtempSync('/dev/shm/tsio-bench-vguest-');
    const procs: ChildProcess[] = [];
    let tsiod: Daemon | undefined;
    let guest: ReturnType<typeof startGuest> | undefined;
    let sampler: NodeJS.Timeout | undefined;
    try {
      for (let i = 0; i < LUNS; i++) {
        touch(join(shm, `tsio-${i}.img`), LUN_MIB);
        touch(join(shm, `qemu-${i}.img`), LUN_MIB);
      }
      touch(join(shm, 'tsio-blk.img'), BLK_MIB);
      touch(join(shm, 'qsd-blk.img'), BLK_MIB);

      const sos = [...Array(LUNS).keys()].map((i) => `  - { name: l${i}, plugin: fileio, dev: ${join(shm, `tsio-${i}.img`)}, size: ${LUN_MIB}MiB }`);
      const luns = [...Array(LUNS).keys()].map((i) => `          - { index: ${i}, storage_object: /backstores/fileio/l${i} }`);
      const scsiSock = join(dir, 'tsio-scsi.sock');
      const blkSock = join(dir, 'tsio-blk.sock');
      const vqSock = join(dir, 'tsio-scsi-vq.sock');
      // The A/B controller: the same 32 LUNs, its own socket (the guest sets its virtqueue size).
      const vq = vqSize > 0 ? `
  - fabric: vhost
    wwn: ${TSIO_WWN['tsio-scsi-vq']}
    tpgs:
      - { tag: 1, socket: ${vqSock}, num_queues: 1, luns: [ ${[...Array(LUNS).keys()].map((i) => `{ index: ${i}, storage_object: /backstores/fileio/l${i} }`).join(', ')} ] }` : '';
      tsiod = await startTsiod(`storage_objects:
${sos.join('\n')}
  - { name: blk, plugin: fileio, dev: ${join(shm, 'tsio-blk.img')}, size: ${BLK_MIB}MiB }
targets:
  - fabric: vhost
    wwn: naa.5001405000000c01
    tpgs:
      - tag: 1
        socket: ${scsiSock}
        num_queues: 1
        luns:
${luns.join('\n')}
  - fabric: vhost
    wwn: naa.5001405000000c02
    tpgs:
      - { tag: 1, socket: ${blkSock}, device: blk, num_queues: 1, luns: [ { index: 0, storage_object: /backstores/fileio/blk } ] }${vq}
`, { dir, args: ['--poll-max-ns', String(pollNs)] });
      const tsiodPid = tsiod.proc.pid!;

      const qsd = await startQsdBlk(join(shm, 'qsd-blk.img'), FILE_OPTS, join(dir, 'qsd.sock'), procs);

      const builtin: string[] = ['-object', 'iothread,id=iot0', '-device', 'virtio-scsi-pci,id=vs0,iothread=iot0,num_queues=1,addr=0x11'];
      for (let i = 0; i < LUNS; i++) {
        builtin.push('-blockdev', `driver=file,node-name=q${i},filename=${join(shm, `qemu-${i}.img`)},${FILE_OPTS}`,
          '-device', `scsi-hd,drive=q${i},bus=vs0.0,channel=0,scsi-id=0,lun=${i}`);
      }
      const qemuArgs = [
        '-name', 'tsio-bench,debug-threads=on',
        '-chardev', `socket,path=${scsiSock},id=tscsi`, '-device', 'vhost-user-scsi-pci,chardev=tscsi,num_queues=1,addr=0x10',
        ...builtin,
        '-chardev', `socket,path=${join(dir, 'qsd.sock')},id=qblk`, '-device', 'vhost-user-blk-pci,chardev=qblk,num-queues=1,addr=0x12',
        '-chardev', `socket,path=${blkSock},id=tblk`, '-device', 'vhost-user-blk-pci,chardev=tblk,num-queues=1,addr=0x13',
        ...(vqSize > 0 ? ['-chardev', `socket,path=${vqSock},id=tvq`, '-device', `vhost-user-scsi-pci,chardev=tvq,num_queues=1,virtqueue_size=${vqSize},addr=0x16`] : []),
      ];

      let qemuPid = 0;
      const paths: Path[] = [
        { name: 'tsio-scsi', proc: 'tsiod', slot: '0000:00:10.0', luns: LUNS, cpu: () => cpuSeconds(tsiodPid) },
        ...(vqSize > 0 ? [{ name: 'tsio-scsi-vq', proc: 'tsiod', slot: '0000:00:16.0', luns: LUNS, cpu: () => cpuSeconds(tsiodPid) }] : []),
        { name: 'qemu-scsi', proc: 'qemu-scsi', slot: '0000:00:11.0', luns: LUNS, cpu: () => 0 },
        { name: 'qsd-blk', proc: 'qsd', slot: '0000:00:12.0', luns: 1, cpu: () => cpuSeconds(qsd.pid!) },
        { name: 'tsio-blk', proc: 'tsiod', slot: '0000:00:13.0', luns: 1, cpu: () => cpuSeconds(tsiodPid) },
      ].filter((p) => want(p.name));
      // QEMU's threads that do the built-in path's I/O: the iothread and the workers it hands requests to.
      // A worker that ends inside a run takes its CPU time with it (none did in the recorded runs: I/O never pauses).
      const qemuThreads = /^(IO iot0|iou-wrk-\d+|worker)$/;
      let begin = new Map<number, number>();
      const qemuSplit: string[] = [];

      const runs: { path: string; rw: string }[] = [];
      for (let r = 0; r < rounds; r++) for (const rw of RWS) for (const p of paths) runs.push({ path: p.name, rw });
      const script = ['set -e', GUEST_HELPERS];
      for (const p of paths) script.push(`waitdevs ${p.slot} ${p.luns}`, `echo "DEVS ${p.name}: $(devs ${p.slot})"`);
      // An idle window: what each back end burns with its devices attached and no I/O (the run windows
      // below also hold fio's start and exit, longer with 32 jobs than with one).
      script.push('echo "@@IDLE0@@"', `sleep ${IDLE_SECONDS}`, 'echo "@@IDLE1@@"');
      for (const [n, r] of runs.entries()) {
        const p = paths.find((x) => x.name === r.path)!;
        const qd = p.luns > 1 ? qdLun : qdBlk;
        script.push(
          `J=""; DV=""; for d in $(devs ${p.slot}); do J="$J --name=$(basename $d) --filename=$d"; DV="$DV $(basename $d)"; done`,
          'cnt; A=("${C[@]}")',
          `echo "@@B${n}@@"`,
          // fio at nice 0 (nice -n 20 from the script's -20), so the marks' shell runs as soon as it wakes.
          `nice -n 20 fio --ioengine=libaio --direct=1 ${fioShape(r.rw)} --iodepth=${qd} --time_based --runtime=${seconds} ` +
            `--group_reporting --output-format=terse --terse-version=3 $J > /tmp/fio.out &`,
          // The steady window: every job running (fio's start and exit, long with 32 jobs under TCG, left out).
          'allrunning; A=("${C[@]}")',
          `mark ${p.slot}; echo "@@S${n}@@ $SUM $IRQS $KICKS $NOW"`,
          `sleep ${steadySeconds}`,
          `mark ${p.slot}; moved; echo "@@T${n}@@ $SUM $IRQS $KICKS $NOW $MOVED of \${#C[@]} devices"`,
          'wait $!',
          `echo "@@E${n}@@ $(cut -d';' -f5-9,47-50 /tmp/fio.out)"`,
        );
      }
      script.push('echo ALL-DONE');

      guest = startGuest({ sharedMemory: true, memoryMiB: 1024, qemuArgs, script: script.join('\n'),
        timeoutMs: 300_000 + runs.length * (seconds + 90) * 1000 });
      qemuPid = guest.pid!;
      const builtinPath = paths.find((p) => p.name === 'qemu-scsi');
      if (builtinPath) {
        builtinPath.cpu = () => {
          let s = 0;
          for (const [tid, c] of threadCpu(qemuPid, qemuThreads)) s += c - (begin.get(tid) ?? 0);
          return s;
        };
      }
      for (const p of paths) console.log((await guest.waitFor(new RegExp(`DEVS ${p.name}: [^\n]*\n`), 240_000))[0].trim());
      await guest.waitFor(/@@IDLE0@@/);
      begin = threadCpu(qemuPid, qemuThreads);
      const idle0 = paths.map((p) => (p.name === 'qemu-scsi' ? 0 : p.cpu()));
      const t0 = Date.now();
      await guest.waitFor(/@@IDLE1@@/);
      const idleS = (Date.now() - t0) / 1000;
      const idle = [...new Set(paths.map((p) => p.proc))].map((proc) => {
        const i = paths.findIndex((p) => p.proc === proc);
        return `${proc} ${(((paths[i].cpu() - idle0[i]) / idleS) * 100).toFixed(1)}%`;
      });
      console.log(`idle back-end CPU over ${idleS.toFixed(1)} s with no I/O: ${idle.join(', ')}`);

      interface Steady { secs: number; ios: number; irqs: number; kicks: number; cpu: number; guest: number; counts?: Counts }
      interface Row { path: string; rw: string; mbs: number; iops: number; ios: number; cpu: number; guest: number; steady?: Steady }
      const results: Row[] = [];
      const vcpu = () => [...threadCpu(qemuPid, /^CPU 0\/TCG$/).values()].reduce((a, b) => a + b, 0);
      // The steady windows are the guest's (its marks S and T carry its clock, requests, interrupts and kicks); the
      // back end's and the vCPU's CPU over them are read off samples the host takes every SAMPLE_MS, at the guest's
      // times mapped to the host's clock. The guest's serial console lags behind a busy vCPU, so the host cannot
      // take a snapshot when it sees a mark; the offset between the clocks is the smallest (host saw - guest wrote)
      // over all marks, each seen within SAMPLE_MS of its arrival.
      const procCpu: Record<string, () => number> = {
        tsiod: () => cpuSeconds(tsiodPid),
        qsd: () => cpuSeconds(qsd.pid!),
        'qemu-scsi': () => [...threadCpu(qemuPid, qemuThreads).values()].reduce((a, b) => a + b, 0),
      };
      const samples: { t: number; cpu: Record<string, number>; vcpu: number }[] = [];
      const marksSeen = new Map<string, number>();
      let scanned = 0;
      const sample = () => {
        const t = Date.now() / 1000;
        const cpu: Record<string, number> = {};
        try {
          for (const [k, f] of Object.entries(procCpu)) cpu[k] = f();
          samples.push({ t, cpu, vcpu: vcpu() });
        } catch {
          return; // a process gone (the guest ended, or the bench is failing): nothing to sample
        }
        const out = guest!.output();
        for (const m of out.slice(scanned).matchAll(/@@([ST]\d+)@@ [^\n]*?([\d]+\.[\d]+)[^\n]*\n/g)) if (!marksSeen.has(m[1])) marksSeen.set(m[1], t - Number(m[2]));
        scanned = Math.max(scanned, out.lastIndexOf('\n') + 1);
      };
      sampler = setInterval(sample, SAMPLE_MS);
      /** CPU of proc (or the vCPU, proc undefined) at host time t, interpolated between samples. */
      const at = (t: number, proc?: string): number | undefined => {
        const v = (x: (typeof samples)[number]) => (proc === undefined ? x.vcpu : x.cpu[proc]);
        const i = samples.findIndex((x) => x.t >= t);
        if (i <= 0) return undefined;
        const [x, y] = [samples[i - 1], samples[i]];
        return v(x) + ((v(y) - v(x)) * (t - x.t)) / Math.max(y.t - x.t, 1e-6);
      };
      const windows: { row: Row; proc: string; g0: number; g1: number; s0: RegExpMatchArray; s1: RegExpMatchArray; counts?: Counts }[] = [];
      for (const [n, r] of runs.entries()) {
        const p = paths.find((x) => x.name === r.path)!;
        await guest.waitFor(new RegExp(`@@B${n}@@`));
        begin = threadCpu(qemuPid, qemuThreads);
        const allBegin = threadCpu(qemuPid, /./);
        const c0 = p.name === 'qemu-scsi' ? 0 : p.cpu();
        const w0 = Date.now();
        // tsiod's counts at the marks as the host sees them: ratios of one interval (requests, kicks, calls).
        const s0 = await guest.waitFor(new RegExp(`@@S${n}@@ (\\d+) (\\d+) (-?\\d+) ([\\d.]+)\n`));
        const ca = await tsioCounts(tsiod, p.name);
        const s1 = await guest.waitFor(new RegExp(`@@T${n}@@ (\\d+) (\\d+) (-?\\d+) ([\\d.]+) (\\d+) of (\\d+) devices\n`));
        const cb = await tsioCounts(tsiod, p.name);
        if (s1[5] !== s1[6]) console.log(`${p.name} ${r.rw}: only ${s1[5]} of ${s1[6]} devices did I/O throughout the steady window`);
        const counts = ca && cb ? (Object.fromEntries(Object.keys(ca).map((k) => [k, cb[k as keyof Counts] - ca[k as keyof Counts]])) as Counts) : undefined;
        const m = await guest.waitFor(new RegExp(`@@E${n}@@ ([^\n]*)\n`));
        const cpu = p.cpu() - c0;
        // Where QEMU's own time went during the run (vCPU, main loop, iothread, workers): which of its threads
        // carried the built-in path, and that vhost-user runs leave the iothread idle.
        const names = new Map<number, string>();
        const byComm = new Map<string, number>();
        for (const [tid, c] of threadCpu(qemuPid, /./, names)) {
          const comm = names.get(tid)!.replace(/^(iou-wrk)-\d+$/, '$1');
          byComm.set(comm, (byComm.get(comm) ?? 0) + c - (allBegin.get(tid) ?? 0));
        }
        qemuSplit.push(`${p.name} ${r.rw}: ` + [...byComm].filter(([, c]) => c >= 0.01).map(([n, c]) => `${n} ${c.toFixed(2)}`).join(', '));
        const f = m[1].trim().split(';').map(Number);
        // error; read kB, KiB/s, IOPS, ms; write kB, KiB/s, IOPS, ms
        if (f.length < 9 || f[0] !== 0) throw new Error(`fio failed on ${p.name} ${r.rw}: ${m[1]}\n${guest.output().slice(-3000)}`);
        const [kb, bw, iops, ms] = r.rw === 'randwrite' ? [f[5], f[6], f[7], f[8]] : [f[1], f[2], f[3], f[4]];
        // I/Os: 4 KiB each in the random cases; in the seed's (4 to 64 KiB) fio's IOPS over its runtime.
        const ios = r.rw === SEED ? Math.round((iops * ms) / 1000) : kb / 4;
        // The guest's CPU: its one vCPU thread (the bottleneck under TCG), whatever the back end.
        const row: Row = { path: p.name, rw: r.rw, mbs: (bw * 1024) / 1e6, iops, ios, cpu, guest: byComm.get('CPU 0/TCG') ?? 0 };
        results.push(row);
        windows.push({ row, proc: p.proc, g0: Number(s0[4]), g1: Number(s1[4]), s0, s1, counts });
        console.log(`${p.name} ${r.rw}: ${row.mbs.toFixed(1)} MB/s, ${row.iops} IOPS, ${row.ios} I/Os, ${cpu.toFixed(2)} backend cpu-s, ` +
          `${row.guest.toFixed(2)} guest vCPU s in a ${((Date.now() - w0) / 1000).toFixed(1)} s window`);
      }
      clearInterval(sampler);
      sample();
      const offset = Math.min(...marksSeen.values());
      console.log(`\nsteady windows (host clock = guest clock + ${offset.toFixed(3)} s, ${samples.length} samples every ${SAMPLE_MS} ms):`);
      for (const w of windows) {
        const [h0, h1] = [w.g0 + offset, w.g1 + offset];
        const [c0, c1, v0, v1] = [at(h0, w.proc), at(h1, w.proc), at(h0), at(h1)];
        if (c0 === undefined || c1 === undefined || v0 === undefined || v1 === undefined) {
          console.log(`${w.row.path} ${w.row.rw}: steady window outside the samples, left out`);
          continue;
        }
        const d = (i: number) => Number(w.s1[i]) - Number(w.s0[i]);
        const st: Steady = { secs: w.g1 - w.g0, ios: d(1), irqs: d(2), kicks: Number(w.s0[3]) < 0 ? NaN : d(3), cpu: c1 - c0, guest: v1 - v0, counts: w.counts };
        w.row.steady = st;
        const c = st.counts;
        const perIo = c && c.requests > 0 ? `; tsiod: ${(c.kicks / c.requests).toFixed(2)} kicks, ${(c.calls / c.requests).toFixed(2)} calls per request` : '';
        console.log(`${w.row.path} ${w.row.rw}: ${st.secs.toFixed(1)} s, ${st.ios} I/Os, ${st.irqs} guest interrupts, ${st.kicks} guest kicks, ` +
          `${st.cpu.toFixed(2)} backend cpu-s, ${st.guest.toFixed(2)} guest vCPU s${perIo}`);
      }
      const done = await guest.done;
      if (!/ALL-DONE/.test(done.output)) throw new Error(`guest did not finish:\n${done.output.slice(-3000)}`);
      const warnings = done.output.split('\n').filter((l) => /qemu-system|iothread|dataplane|ioeventfd/i.test(l));
      if (warnings.length) console.log(`\nQEMU said:\n${warnings.join('\n')}`);
      console.log(`\nQEMU's threads, CPU seconds per run:\n${qemuSplit.join('\n')}`);

      // Sums over rounds: MB/s and IOPS averaged, CPU per I/O from the totals.
      const agg = (path: string, rw: string) => {
        const all = results.filter((x) => x.path === path && x.rw === rw);
        if (all.length === 0) return undefined;
        // CPU per I/O over the steady windows: fio's start and exit (tens of seconds for 32 jobs under TCG) left out.
        const rs = all.flatMap((x) => (x.steady ? [x.steady] : []));
        const total = (f: (x: Steady) => number) => rs.reduce((s, x) => s + f(x), 0);
        const ios = total((x) => x.ios);
        const reqs = total((x) => x.counts?.requests ?? 0);
        const per = (f: (c: Counts) => number) => (reqs > 0 ? (total((x) => (x.counts ? f(x.counts) : 0)) / reqs).toFixed(2) : '-');
        return {
          mbs: all.reduce((s, x) => s + x.mbs, 0) / all.length, iops: all.reduce((s, x) => s + x.iops, 0) / all.length,
          steadyIops: ios / Math.max(total((x) => x.secs), 1e-3), usPerIo: (total((x) => x.cpu) / ios) * 1e6, guestUs: (total((x) => x.guest) / ios) * 1e6,
          irqs: (total((x) => x.irqs) / ios).toFixed(2), guestKicks: Number.isNaN(total((x) => x.kicks)) ? '-' : (total((x) => x.kicks) / ios).toFixed(2),
          kicks: per((c) => c.kicks), calls: per((c) => c.calls),
        };
      };
      const rows: string[][] = [];
      for (const rw of RWS) {
        for (const p of paths) {
          const a = agg(p.name, rw)!;
          const qd = p.luns > 1 ? `${p.luns} jobs x QD${qdLun}` : `1 job x QD${qdBlk}`;
          rows.push([p.name, `${rw} ${qd}`, a.mbs.toFixed(1), k(a.iops), k(a.steadyIops), a.usPerIo.toFixed(1), a.guestUs.toFixed(1), a.irqs, a.guestKicks, a.kicks, a.calls]);
        }
      }
      console.log('\n' + table(HEADER, rows));
      const ratioRows: string[][] = [];
      for (const rw of RWS) {
        for (const [a, b] of [['tsio-scsi', 'qemu-scsi'], ['tsio-blk', 'qsd-blk'], ['tsio-scsi-vq', 'tsio-scsi'], ['tsio-scsi-vq', 'qemu-scsi']]) {
          const x = agg(a, rw);
          const y = agg(b, rw);
          if (!x || !y) continue;
          ratioRows.push([`${a} / ${b}`, rw, (x.mbs / y.mbs).toFixed(2), (x.iops / y.iops).toFixed(2), (x.usPerIo / y.usPerIo).toFixed(2), (x.guestUs / y.guestUs).toFixed(2)]);
        }
      }
      if (ratioRows.length) console.log('\n' + table(['ratio', 'fio', 'MB/s', 'IOPS', 'backend CPU per I/O', 'guest CPU per I/O'], ratioRows));
      console.log('\nUnder TCG the guest (one emulated vCPU) is the bottleneck: MB/s and IOPS mostly measure the guest, and');
      console.log('backend CPU per I/O (lower is better) is the meaningful comparison of the back ends. Backend CPU: tsiod and');
      console.log('qemu-storage-daemon whole process; QEMU built-in: its iothread plus io_uring/thread-pool workers.');
      console.log('CPU per I/O, steady IOPS and interrupts per I/O are over steady windows (every fio job running); guest CPU is');
      console.log("QEMU's CPU 0/TCG thread, the cost an I/O puts on the bottleneck. Guest interrupts and kicks per I/O: the");
      console.log("guest's own counts (MSI-X vectors of the device; a kprobe on vp_notify), every path alike; tsiod kicks and");
      console.log('calls per I/O: what tsiod counted on the connection.');
    } catch (e) {
      if (guest) console.log(`guest console, last lines:\n${guest.output().slice(-4000)}`);
      throw e;
    } finally {
      clearInterval(sampler);
      guest?.kill();
      await guest?.done;
      await tsiod?.stop();
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      rmSync(shm, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
