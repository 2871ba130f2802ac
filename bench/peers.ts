// Running the peers the network benchmarks compare against, and measuring a
// process's CPU time from outside it.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { startTgtd as startTgtdTarget } from '../test/util/tgtd';

/** The tools a benchmark needs, or an error saying how to get them. */
export function requireTools(tools: [cmd: string, pkg: string][]): void {
  const missing = tools.filter(([cmd]) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0);
  if (missing.length) {
    throw new Error(`missing ${missing.map(([c, p]) => `${c} (Debian package ${p})`).join(', ')}: ` +
      'run scripts/install-deps --bench');
  }
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** User + system CPU seconds a process (all its threads) has used so far, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are 14 and 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

export interface Run {
  ops: number;
  seconds: number;
  /** CPU seconds the target process used during the run. */
  targetCpu: number;
  /** CPU seconds the client process(es) used, when measured. */
  clientCpu?: number;
}

/** Runs a client command to completion; returns its stdout (throws with its output when it fails). */
export async function runClient(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return (await runClientTimed(cmd, args, timeoutMs)).out;
}

/** Marks the line a wrapping shell prints its children's CPU times on. */
const CPU_MARK = '@@tsio-bench-client-cpu';

/**
 * runClient that also tells the CPU seconds the client used: a shell runs it
 * and then prints its own cutime and cstime from /proc (its waited-for
 * children), since a process's CPU time is gone from /proc once it exits.
 */
export function runClientTimed(cmd: string, args: string[], timeoutMs: number): Promise<{ out: string; cpu: number }> {
  const script = `"$@"; s=$?; echo; echo ${CPU_MARK} $(cat /proc/$$/stat | sed 's/.*) //' | cut -d' ' -f14,15); exit $s`;
  return new Promise((resolve, reject) => {
    const p: ChildProcess = spawn('sh', ['-c', script, 'sh', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (out += d));
    // The whole group: the shell and the client under it.
    const t = setTimeout(() => process.kill(-p.pid!, 'SIGKILL'), timeoutMs);
    p.on('exit', (code, sig) => {
      clearTimeout(t);
      const i = out.lastIndexOf(CPU_MARK);
      const ticks = i < 0 ? [] : out.slice(i + CPU_MARK.length).trim().split(/\s+/).map(Number);
      const text = i < 0 ? out : out.slice(0, i).replace(/\n$/, '');
      if (code === 0) resolve({ out: text, cpu: ((ticks[0] ?? 0) + (ticks[1] ?? 0)) / CLK_TCK });
      else reject(new Error(`${cmd} ${args.join(' ')} ended with ${code ?? sig}:\n${text.slice(-2000)}`));
    });
  });
}

/**
 * The machine's loopback TCP bandwidth in bytes per second: one iperf3
 * stream to 127.0.0.1 for `seconds`, what the receiver got. Also the CPU
 * seconds the sender used (it is the side that copies into the kernel, as a
 * target sending Data-In does).
 */
export async function loopbackTcp(port: number, seconds: number): Promise<{ bytesPerSecond: number; senderCpu: number }> {
  const server = spawn('iperf3', ['-s', '-1', '--forceflush', '-B', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let log = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`iperf3 -s did not start listening:\n${log}`)), 10_000);
      const seen = (d: Buffer) => {
        log += d;
        if (/Server listening/.test(log)) {
          clearTimeout(t);
          resolve();
        }
      };
      server.stdout!.on('data', seen);
      server.stderr!.on('data', seen);
      server.on('exit', (code) => reject(new Error(`iperf3 -s exited with ${code}:\n${log}`)));
    });
    const r = await runClientTimed('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J'], (seconds + 30) * 1000);
    const json = JSON.parse(r.out.slice(r.out.indexOf('{'), r.out.lastIndexOf('}') + 1)) as {
      end: { sum_received: { bits_per_second: number } };
    };
    return { bytesPerSecond: json.end.sum_received.bits_per_second / 8, senderCpu: r.cpu };
  } finally {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
}

/**
 * tgtd in the foreground on 127.0.0.1:port, one target with LUN 1 on a file (or, with lunArgs such as
 * ['--bstype', 'rbd', '--bsopts', 'conf=...'], on what that backing store names); stopped with SIGKILL
 * (it ignores SIGTERM).
 */
export async function startTgtd(port: number, iqn: string, file: string, lunArgs: string[] = []): Promise<{ pid: number; stop(): void }> {
  const t = await startTgtdTarget(port, iqn);
  try {
    t.adm(['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '1', '-b', file, ...lunArgs]);
    t.adm(['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL']);
  } catch (e) {
    t.stop();
    throw e;
  }
  return t;
}
