// Running the peers the network benchmarks compare against, and measuring a
// process's CPU time from outside it.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

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
}

/** Runs a client command to completion; returns its stdout (throws with its output when it fails). */
export function runClient(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const p: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (out += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code, sig) => {
      clearTimeout(t);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} ended with ${code ?? sig}:\n${out.slice(-2000)}`));
    });
  });
}

/** tgtd in the foreground on 127.0.0.1:port, one target with LUN 1 on a file; stopped with SIGKILL (it ignores SIGTERM). */
export async function startTgtd(port: number, iqn: string, file: string): Promise<{ pid: number; stop(): void }> {
  const control = 2000 + (process.pid % 20000); // tgtd's control port number is a short; one per instance
  const child = spawn('tgtd', ['-f', '--iscsi', `portal=127.0.0.1:${port}`, '-C', String(control)], { stdio: 'ignore' });
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const adm = (args: string[]) => {
    const r = spawnSync('tgtadm', ['-C', String(control), '--lld', 'iscsi', ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tgtadm ${args.join(' ')}: ${r.stderr || r.stdout}`);
  };
  try {
    for (let i = 0; ; i++) {
      try {
        adm(['--op', 'new', '--mode', 'target', '--tid', '1', '-T', iqn]);
        break;
      } catch (e) {
        if (i > 50 || child.exitCode !== null) throw new Error(`tgtd did not come up: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    adm(['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '1', '-b', file]);
    adm(['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL']);
  } catch (e) {
    stop();
    throw e;
  }
  return { pid: child.pid!, stop };
}
