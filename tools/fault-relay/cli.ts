#!/usr/bin/env node
// fault-relay: the fault-injecting relay (relay.ts) as a program, for guests
// and by hand. Prints its counts every --report seconds and when stopped
// (SIGTERM, SIGINT).

import { FaultRelay, type FaultRates } from './relay';

const USAGE = `usage: fault-relay --listen PORT --target [HOST:]PORT [--seed N] [--digests]
  [--drop R] [--reset R] [--stall R] [--stall-ms MIN-MAX] [--blackhole R] [--delay-ms MIN-MAX] [--corrupt R] [--report S]
  R: chance per connection and second (--corrupt: per Data-Out PDU, needs --digests)`;

function fail(msg: string): never {
  process.stderr.write(`fault-relay: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

function range(v: string): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(v);
  if (!m) fail(`not a range MIN-MAX: ${v}`);
  return [Number(m[1]), Number(m[2])];
}

function main(): void {
  const argv = process.argv.slice(2);
  const faults: FaultRates = {};
  let listen: number | undefined;
  let target: { host: string; port: number } | undefined;
  let seed = 1;
  let digests = false;
  let report = 0;
  for (let i = 0; i < argv.length; i++) {
    const opt = argv[i];
    const val = (): string => argv[++i] ?? fail(`${opt} needs a value`);
    const num = (): number => {
      const n = Number(val());
      if (!Number.isFinite(n) || n < 0) fail(`${opt}: not a number`);
      return n;
    };
    if (opt === '--listen') listen = num();
    else if (opt === '--target') {
      const v = val();
      const at = v.lastIndexOf(':');
      target = { host: at > 0 ? v.slice(0, at) : '127.0.0.1', port: Number(v.slice(at + 1)) };
    } else if (opt === '--seed') seed = num();
    else if (opt === '--digests') digests = true;
    else if (opt === '--drop') faults.drop = num();
    else if (opt === '--reset') faults.reset = num();
    else if (opt === '--stall') faults.stall = num();
    else if (opt === '--stall-ms') faults.stallMs = range(val());
    else if (opt === '--blackhole') faults.blackhole = num();
    else if (opt === '--delay-ms') faults.delayMs = range(val());
    else if (opt === '--corrupt') faults.corruptDataOut = num();
    else if (opt === '--report') report = num();
    else if (opt === '--help' || opt === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else fail(`unknown argument '${opt}'`);
  }
  if (listen === undefined || target === undefined) fail('--listen and --target are needed');
  const relay = new FaultRelay({ port: listen, targetHost: target.host, targetPort: target.port, seed, digests, faults });
  const print = () => process.stdout.write(`fault-relay: ${JSON.stringify(relay.stats)}\n`);
  relay.listen().then((port) => {
    process.stdout.write(`fault-relay: listening on 127.0.0.1:${port}, to ${target!.host}:${target!.port}, seed ${seed}\n`);
    if (report > 0) setInterval(print, report * 1000).unref();
  }, (e: Error) => fail(e.message));
  const stop = () => {
    print();
    void relay.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
