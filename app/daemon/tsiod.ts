#!/usr/bin/env node
// tsiod: the tsio daemon. Starts from a declarative YAML config (or the
// embedded default), serves it until SIGTERM, then flushes and exits. SIGHUP
// applies the saved configuration live. Under systemd (Type=notify) it says
// READY=1 once every portal and socket listens, and its log lines carry
// syslog priorities for the journal.

import { dirname } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { ConfigError, formatIssue, parseConfig, defaultConfigText, type ConfigIssue, type TsioConfig } from '../config/config';
import { isLioSaveconfig, lioToDocument } from '../config/lio-import';
import { hostIssues, portBusy, type Locate } from '../config/host-check';
import { configAdvice } from '../config/advice';
import { parseYaml } from '../config/yaml';
import { tsioVersion } from '../config/version';
import { createRoot } from '../registry';
import { log, type LogLevel } from '../../src/core/log';
import type { FabricService } from '../../src/core/fabric';
import { absolutePaths, EMPTY_CONFIG, reconcile, type Live } from './reconcile';
import { Control, listenControl } from '../control/server';
import { DEFAULT_CONTROL_PATH } from '../control/wire';
import { listenMetrics, metricPart, parseListen } from './metrics';
import { IoThreads, ioThreadCount } from './io-threads';
import { monotonicUsec, sdNotify, stderrIsJournal } from './systemd';
import { TSIOD_USAGE as USAGE } from '../config/daemon-usage';
import { applyPolling, MAX_POLL_NS } from './polling';



/** Seconds a shutdown may take at most (sessions drain, then stores flush): past it, tsiod exits anyway, status 1. */
const STOP_LIMIT_S = 20;

interface Args {
  config?: string;
  check: boolean;
  stateDir: string;
  control?: string;
  saveconfig?: string;
  metrics?: string;
  pollMaxNs?: number;
}

/** A command-line mistake: the usage, exit 2. */
function usageError(msg: string): never {
  process.stderr.write(`tsiod: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { check: false, stateDir: '/var/lib/tsio' };
  const value = (i: number, opt: string): string => {
    const v = argv[i];
    if (v === undefined || v.startsWith('--')) usageError(`${opt} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    const eq = v.startsWith('--') ? v.indexOf('=') : -1;
    const [opt, inline] = eq > 0 ? [v.slice(0, eq), v.slice(eq + 1)] : [v, undefined];
    const arg = () => inline ?? value(++i, opt);
    if (opt === '--config' || opt === '-c') a.config = arg();
    else if (opt === '--check') a.check = true;
    else if (opt === '--control') a.control = arg();
    else if (opt === '--saveconfig') a.saveconfig = arg();
    else if (opt === '--metrics') a.metrics = arg();
    else if (opt === '--state-dir') a.stateDir = arg();
    else if (opt === '--poll-max-ns') {
      const n = Number(arg());
      if (!Number.isInteger(n) || n < 0 || n > MAX_POLL_NS) usageError(`--poll-max-ns: an integer from 0 to ${MAX_POLL_NS}`);
      a.pollMaxNs = n;
    }
    else if (opt === '--log-level') {
      const level = arg();
      try {
        log.setLevel(level as LogLevel);
      } catch (e) {
        usageError((e as Error).message);
      }
    } else if (opt === '--version' || opt === '-V') {
      process.stdout.write(`tsiod ${tsioVersion()}\n`);
      process.exit(0);
    } else if (opt === '--help' || opt === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else usageError(`unknown argument '${v}'`);
  }
  return a;
}

interface Loaded {
  cfg: TsioConfig;
  /** Lines of YAML paths in the file (0 where the file is not the YAML read: a converted targetcli file). */
  locate: Locate;
}

function loadConfig(path: string | undefined): Loaded {
  if (path === undefined) {
    const text = defaultConfigText();
    return { cfg: parseConfig(text, '<embedded default>'), locate: (p) => parseYaml(text, '<embedded default>').locate(p).line };
  }
  const text = readFileSync(path, 'utf8');
  const lio = isLioSaveconfig(text);
  if (!lio) {
    const cfg = parseConfig(text, path);
    const doc = parseYaml(text, path);
    return { cfg, locate: (p) => doc.locate(p).line };
  }
  const conv = lioToDocument(lio);
  for (const u of conv.unmapped) log.warn(`${path}: ${u}`);
  return { cfg: parseConfig(JSON.stringify(conv.document), `${path} (converted from targetcli saveconfig.json)`), locate: () => 0 };
}

/** Refuses to go on: each problem on its own line at error priority, exit 1. */
function refuse(what: string, lines: string[]): never {
  log.error(`${what}:`);
  for (const l of lines) log.error(`  ${l}`);
  process.exit(1);
}

/** Problems with the daemon's own sockets: the control socket's directory, the metrics port. */
async function daemonIssues(args: Args): Promise<string[]> {
  const out: string[] = [];
  if (args.control !== 'none') {
    const path = args.control ?? DEFAULT_CONTROL_PATH;
    let d = dirname(path);
    while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
    if (d !== dirname(path) && !existsSync(d)) out.push(`--control ${path}: cannot create ${dirname(path)}`);
  }
  if (args.metrics !== undefined) {
    try {
      const { host, port } = parseListen(args.metrics);
      const code = await portBusy(host, port);
      if (code) out.push(`--metrics ${args.metrics}: ${code === 'EADDRINUSE' ? 'the port is already in use' : code}`);
    } catch (e) {
      out.push((e as Error).message);
    }
  }
  return out;
}

async function main(): Promise<void> {
  if (stderrIsJournal()) log.setPriorityPrefix(true);
  const args = parseArgs(process.argv.slice(2));
  let loaded: Loaded;
  try {
    loaded = loadConfig(args.config);
  } catch (e) {
    if (e instanceof ConfigError) refuse('configuration refused', e.errors.map((i) => formatIssue(e.source, i)));
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') refuse('configuration refused', [`${args.config}: no such file`]);
    throw e;
  }
  const baseDir = args.config ? dirname(args.config) : process.cwd();
  const cfg = absolutePaths(loaded.cfg, baseDir);
  // What starting needs of this host, checked the same way for --check and for a start.
  const issues: ConfigIssue[] = await hostIssues(cfg, loaded.locate);
  const problems = [...issues.map((i) => formatIssue(loaded.cfg.source, i)), ...(await daemonIssues(args))];
  const summary = `${cfg.storage_objects.length} storage objects, ${cfg.targets.length} targets`;
  if (problems.length > 0) refuse(args.check ? 'configuration cannot start on this host' : 'cannot start', problems);
  if (args.check) {
    for (const a of configAdvice(cfg)) process.stdout.write(`tsiod: note: ${a}\n`);
    process.stdout.write(`tsiod: configuration ok: ${summary}\n`);
    return;
  }
  const root = createRoot({ stateDir: args.stateDir });
  const live: Live = { root, services: new Map<string, FabricService>(), config: EMPTY_CONFIG };
  // io_threads > 1: the data path on I/O threads, the main thread keeps control and configuration.
  const pollMaxNs = args.pollMaxNs ?? cfg.daemon?.poll_max_ns ?? 0;
  applyPolling(pollMaxNs);
  const count = ioThreadCount(cfg.daemon);
  const threads = count > 1 ? await IoThreads.start(count, args.stateDir, pollMaxNs) : undefined;
  if (threads) {
    live.threads = threads;
    log.info(`${count} I/O threads`);
  }
  try {
    await reconcile(live, cfg);
  } catch (e) {
    // Something the checks could not foresee (a race for a port, a device gone): one line, no stack.
    refuse('cannot start', [(e as Error).message]);
  }
  for (const a of configAdvice(cfg)) log.warn(a);
  const control = new Control(live, { savePath: args.saveconfig });
  let controlServer: Server | undefined;
  if (args.control !== 'none') {
    const path = args.control ?? DEFAULT_CONTROL_PATH;
    try {
      controlServer = await listenControl(control, path);
      log.info(`control socket: ${path}`);
    } catch (e) {
      // The default place may be taken or unwritable (tests, a second daemon): serve anyway. An explicit one must work.
      if (args.control !== undefined) refuse('cannot start', [`--control ${path}: ${(e as Error).message}`]);
      log.warn(`no control socket: ${(e as Error).message}`);
    }
  }
  if (args.metrics !== undefined) {
    try {
      await listenMetrics(threads ? () => threads.metrics() : async () => [metricPart(root)], args.metrics);
    } catch (e) {
      refuse('cannot start', [`--metrics ${args.metrics}: ${(e as Error).message}`]);
    }
    log.info(`metrics: http://${args.metrics}/metrics`);
  }
  // A daemon serves until told to stop, even with nothing listening yet (a loopback-only config).
  const keepAlive = setInterval(() => {}, 1 << 30);
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    sdNotify('STOPPING=1', `STATUS=${sig}: closing sessions, flushing stores`);
    log.info(`${sig}: shutting down`);
    // Bounded whatever initiators or stores do: the fabrics bound their part, a store's flush could still hang.
    setTimeout(() => {
      log.error(`${sig}: shutdown not done after ${STOP_LIMIT_S} s; exiting without waiting further`);
      process.exit(1);
    }, STOP_LIMIT_S * 1000).unref();
    controlServer?.close();
    await Promise.all([...live.services.values()].map((s) => s.close()));
    await root.close();
    await threads?.close();
    clearInterval(keepAlive);
    log.info('stopped: every store flushed');
    process.exit(0);
  };
  // SIGHUP: the saved configuration, applied as tcli restoreconfig clear_existing would (differences only).
  const reload = async () => {
    sdNotify('RELOADING=1', `MONOTONIC_USEC=${monotonicUsec()}`, 'STATUS=reloading the saved configuration');
    const r = await control.invoke('reload', {}, 'SIGHUP');
    if (r.error) log.error(`SIGHUP: the saved configuration was not applied: ${r.error}`);
    sdNotify('READY=1', `STATUS=serving ${live.config.storage_objects.length} storage objects, ${live.config.targets.length} targets`);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => void reload());
  log.info(`ready: ${summary} (tsiod ${tsioVersion()}, pid ${process.pid})`);
  sdNotify('READY=1', `STATUS=serving ${summary}`, `MAINPID=${process.pid}`);
}

main().catch((e) => {
  log.error(`fatal: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
