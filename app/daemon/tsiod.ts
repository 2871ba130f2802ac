#!/usr/bin/env node
// tsiod: the tsio daemon. Starts from a declarative YAML config (or the
// embedded default), serves it until SIGTERM, then flushes and exits.

import { dirname } from 'node:path';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { ConfigError, parseConfig, defaultConfigText, type TsioConfig } from '../config/config';
import { isLioSaveconfig, lioToDocument } from '../config/lio-import';
import { createRoot } from '../registry';
import { log } from '../../src/core/log';
import type { FabricService } from '../../src/core/fabric';
import { absolutePaths, EMPTY_CONFIG, reconcile, type Live } from './reconcile';
import { Control, listenControl } from '../control/server';
import { DEFAULT_CONTROL_PATH } from '../control/wire';
import { DEFAULT_SAVE_PATH } from '../config/save';
import { listenMetrics } from './metrics';

const USAGE = `usage: tsiod [--config FILE.yaml] [--check] [--state-dir DIR] [--control PATH|none] [--saveconfig FILE]
             [--metrics HOST:PORT] [--log-level error|warn|info|debug]
  --config FILE      start from this configuration (default: the embedded one: RAM LUNs over iSCSI and vhost);
                     a targetcli saveconfig.json is converted
  --check            validate the configuration, print what it describes, and exit
  --control PATH     the control socket tcli talks to (JSON-RPC 2.0, mode 0600; default ${DEFAULT_CONTROL_PATH})
  --saveconfig FILE  where saveconfig writes by default (default ${DEFAULT_SAVE_PATH})
  --metrics H:P      serve Prometheus metrics at http://H:P/metrics (loopback addresses only; off by default)
  --state-dir DIR    where state that outlives a restart is kept (APTPL reservations; default /var/lib/tsio)`;

interface Args {
  config?: string;
  check: boolean;
  stateDir: string;
  control?: string;
  saveconfig?: string;
  metrics?: string;
}

function loadConfig(path: string): TsioConfig {
  const text = readFileSync(path, 'utf8');
  const lio = isLioSaveconfig(text);
  if (!lio) return parseConfig(text, path);
  const conv = lioToDocument(lio);
  for (const u of conv.unmapped) log.warn(`${path}: ${u}`);
  return parseConfig(JSON.stringify(conv.document), `${path} (converted from targetcli saveconfig.json)`);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { check: false, stateDir: '/var/lib/tsio' };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    if (v === '--config' || v === '-c') a.config = argv[++i];
    else if (v.startsWith('--config=')) a.config = v.slice(9);
    else if (v === '--check') a.check = true;
    else if (v === '--control') a.control = argv[++i];
    else if (v === '--saveconfig') a.saveconfig = argv[++i];
    else if (v === '--metrics') a.metrics = argv[++i];
    else if (v === '--state-dir') a.stateDir = argv[++i];
    else if (v.startsWith('--state-dir=')) a.stateDir = v.slice(12);
    else if (v === '--log-level') log.setLevel(argv[++i] as 'info');
    else if (v === '--help' || v === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else {
      console.error(`tsiod: unknown argument '${v}'\n${USAGE}`);
      process.exit(2);
    }
  }
  return a;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  let cfg;
  try {
    cfg = args.config ? loadConfig(args.config) : parseConfig(defaultConfigText(), '<embedded default>');
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`tsiod: configuration refused:\n${e.message}`);
      process.exit(1);
    }
    throw e;
  }
  const summary = `${cfg.storage_objects.length} storage objects, ${cfg.targets.length} targets`;
  if (args.check) {
    console.log(`tsiod: configuration ok: ${summary}`);
    return;
  }
  const root = createRoot({ stateDir: args.stateDir });
  const live: Live = { root, services: new Map<string, FabricService>(), config: EMPTY_CONFIG };
  await reconcile(live, absolutePaths(cfg, args.config ? dirname(args.config) : process.cwd()));
  const control = new Control(live, { savePath: args.saveconfig });
  let controlServer: Server | undefined;
  if (args.control !== 'none') {
    const path = args.control ?? DEFAULT_CONTROL_PATH;
    try {
      controlServer = await listenControl(control, path);
      log.info(`control socket: ${path}`);
    } catch (e) {
      // The default place may be taken or unwritable (tests, a second daemon): serve anyway. An explicit one must work.
      if (args.control !== undefined) throw e;
      log.warn(`no control socket: ${(e as Error).message}`);
    }
  }
  if (args.metrics !== undefined) {
    await listenMetrics(root, args.metrics);
    log.info(`metrics: http://${args.metrics}/metrics`);
  }
  // A daemon serves until told to stop, even with nothing listening yet (a loopback-only config).
  const keepAlive = setInterval(() => {}, 1 << 30);
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${sig}: shutting down`);
    controlServer?.close();
    await Promise.all([...live.services.values()].map((s) => s.close()));
    await root.close();
    clearInterval(keepAlive);
    log.info('stopped: every store flushed');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  log.info(`ready: ${summary}`);
}

main().catch((e) => {
  console.error('tsiod: fatal:', e instanceof Error ? e.message : String(e));
  process.exit(1);
});
