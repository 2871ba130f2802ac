// Starts a real tsiod on a temporary control socket, and runs tcli against it.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const TSIOD = join(__dirname, '..', '..', 'src', 'daemon', 'tsiod.js');
export const TCLI = join(__dirname, '..', '..', 'cli', 'tcli.js');

export interface Daemon {
  child: ChildProcess;
  sock: string;
  log(): string;
  stop(): Promise<void>;
}

/** tsiod --config DIR/start.yaml (or the given file) --control DIR/control.sock; resolves once it is ready. */
export async function startDaemon(configText: string | { file: string }, dir: string, extra: string[] = []): Promise<Daemon> {
  let cfg: string;
  if (typeof configText === 'string') {
    cfg = join(dir, 'start.yaml');
    writeFileSync(cfg, configText);
  } else cfg = configText.file;
  const sock = join(dir, 'control.sock');
  const child = spawn(process.execPath, [TSIOD, '--config', cfg, '--control', sock, '--saveconfig', join(dir, 'etc', 'saveconfig.yaml'), '--state-dir', join(dir, 'state'), ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (d) => (log += d));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`tsiod did not start: ${log}`)), 15_000);
    const check = () => {
      if (log.includes('ready:')) {
        clearTimeout(t);
        child.stderr!.off('data', check);
        resolve();
      }
    };
    child.stderr!.on('data', check);
    child.once('exit', (code) => reject(new Error(`tsiod exited ${code}: ${log}`)));
  });
  return {
    child,
    sock,
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
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
