// Starts a real tsiod in a folder of its own (config, control socket, state,
// saveconfig), and runs tcli against it.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TSIOD = join(__dirname, '..', '..', 'app', 'daemon', 'tsiod.js');
export const TCLI = join(__dirname, '..', '..', 'cli', 'tcli.js');

/** YAML text, a function of a free 127.0.0.1 port and the daemon's folder giving it, or a file to start from. */
export type TsiodConfig = string | ((port: number, dir: string) => string) | { file: string };

export interface TsiodOptions {
  /** The daemon's folder; default a fresh temporary one that stop() removes. */
  dir?: string;
  /** The port handed to a config function; default a free one. */
  port?: number;
  /** More tsiod arguments (--metrics ...). */
  args?: string[];
  /** A command tsiod runs under, e.g. ['unshare', '--net'] for a network namespace of its own. */
  wrap?: string[];
  /** Environment variables added to tsiod's. */
  env?: Record<string, string>;
}

export interface Daemon {
  proc: ChildProcess;
  dir: string;
  /** The control socket, DIR/control.sock. */
  sock: string;
  port: number;
  /** Everything tsiod printed so far. */
  log(): string;
  /** SIGTERM (SIGKILL after 10 s); resolves with the exit code once its output is read. */
  stop(): Promise<number | null>;
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const p = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return p;
}

/**
 * TSIO_IO_THREADS=N: every YAML config a test starts tsiod with gets `daemon: { io_threads: N }` (one that sets
 * its own daemon section, or is JSON, is left as it is), so a suite can run against I/O threads.
 */
function withIoThreads(text: string): string {
  const n = process.env.TSIO_IO_THREADS;
  if (n === undefined || /^daemon:/m.test(text) || text.trimStart().startsWith('{')) return text;
  return `daemon: { io_threads: ${Number(n)} }\n${text}`;
}

/** Starts tsiod on DIR/control.sock with DIR/state and DIR/etc/saveconfig.yaml; resolves once it logs ready. */
export async function startTsiod(config: TsiodConfig, opts: TsiodOptions = {}): Promise<Daemon> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'tsiod-'));
  const port = opts.port ?? (await freePort());
  let cfg: string;
  if (typeof config === 'object') cfg = config.file;
  else {
    cfg = join(dir, 'start.yaml');
    writeFileSync(cfg, withIoThreads(typeof config === 'string' ? config : config(port, dir)));
  }
  const sock = join(dir, 'control.sock');
  const args = [TSIOD, '--config', cfg, '--control', sock, '--saveconfig', join(dir, 'etc', 'saveconfig.yaml'), '--state-dir', join(dir, 'state')];
  const argv = [process.execPath, ...args, ...(opts.args ?? [])];
  const cmd = [...(opts.wrap ?? []), ...argv];
  const proc = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tsiod did not get ready:\n${out}`)), 15_000);
    const onData = (d: Buffer) => {
      out += d;
      if (out.includes('ready:')) {
        clearTimeout(t);
        resolve();
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`tsiod exited with ${code}:\n${out}`));
    });
  });
  // 'close', not 'exit': the last lines it printed are read by then.
  const closed = once(proc, 'close');
  const stop = async (): Promise<number | null> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      // Past tsiod's own bound on a shutdown (20 s, then it exits 1): a kill here is a hang, seen as exit null.
      const t = setTimeout(() => proc.kill('SIGKILL'), 25_000);
      await closed;
      clearTimeout(t);
    } else await closed;
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    return proc.exitCode;
  };
  try {
    await ready;
  } catch (e) {
    await stop();
    throw e;
  }
  return { proc, dir, sock, port, log: () => out, stop };
}

export interface TcliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs tcli once in batch mode. */
export function tcli(sock: string, args: string[], opts: { input?: string; env?: Record<string, string> } = {}): TcliResult {
  const p = spawnSync(process.execPath, [TCLI, '--control', sock, ...args], { encoding: 'utf8', input: opts.input ?? '', env: { ...process.env, NO_COLOR: '1', ...opts.env }, timeout: 30_000 });
  return { status: p.status, stdout: p.stdout, stderr: p.stderr };
}

/** One JSON-RPC call on tsiod's control socket: its result, or its error. */
export function controlRpc(sock: string, method: string, params: object): Promise<{ result?: any; error?: { code: number; message: string } }> {
  return new Promise((resolve, reject) => {
    const c = connect(sock);
    let buf = '';
    c.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        c.end();
        resolve(JSON.parse(buf.slice(0, nl)));
      }
    });
    c.on('error', reject);
    c.write(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method, params })}\n`);
  });
}

/** A scrape of tsiod's metrics endpoint: the value of a sample by its name and labels (it must be there). */
export async function scrapeMetrics(port: number): Promise<(sample: string) => number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return (sample) => {
    const m = new RegExp(`^${sample.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
    if (!m) throw new Error(`metrics carry no ${sample}`);
    return Number(m[1]);
  };
}
