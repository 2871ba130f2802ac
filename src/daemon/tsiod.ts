#!/usr/bin/env node
// tsiod: the tsio daemon. Starts from a declarative YAML config (or the
// embedded default), serves it until SIGTERM, then flushes and exits.

import { dirname } from 'node:path';
import { ConfigError, loadConfigFile, parseConfig, defaultConfigText } from '../config/config';
import { Root } from '../model/root';
import { applyConfig } from './apply';
import { log } from '../core/log';
import { fabricModule, type FabricService } from '../../fabrics';

const USAGE = `usage: tsiod [--config FILE.yaml] [--check] [--state-dir DIR] [--log-level error|warn|info|debug]
  --config FILE   start from this configuration (default: the embedded one: RAM LUNs over iSCSI and vhost)
  --check         validate the configuration, print what it describes, and exit
  --state-dir DIR where state that outlives a restart is kept (APTPL reservations; default /var/lib/tsio)`;

interface Args {
  config?: string;
  check: boolean;
  stateDir: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { check: false, stateDir: '/var/lib/tsio' };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    if (v === '--config' || v === '-c') a.config = argv[++i];
    else if (v.startsWith('--config=')) a.config = v.slice(9);
    else if (v === '--check') a.check = true;
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
    cfg = args.config ? loadConfigFile(args.config) : parseConfig(defaultConfigText(), '<embedded default>');
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
  const root = new Root({ stateDir: args.stateDir });
  await applyConfig(root, cfg, args.config ? dirname(args.config) : process.cwd());
  const services: FabricService[] = [];
  for (const t of root.targets.values()) {
    const m = fabricModule(t.fabric);
    if (!m) {
      log.warn(`target ${t.wwn}: the ${t.fabric} fabric is not in this build yet; configured but not served`);
      continue;
    }
    services.push(await m.serve(t, root));
  }
  // A daemon serves until told to stop, even with nothing listening yet (a loopback-only config).
  const keepAlive = setInterval(() => {}, 1 << 30);
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${sig}: shutting down`);
    await Promise.all(services.map((s) => s.close()));
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
