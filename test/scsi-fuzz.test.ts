// The SCSI-level fuzzer (test/util/scsi-fuzz.ts) against every device type
// through the loopback fabric: briefly here, seeded; `npm run fuzz` runs it at
// full length (TSIO_FUZZ=1: a million commands, or TSIO_FUZZ_COMMANDS). And
// the fuzzer's own test: bugs planted in a test-only table entry are caught.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Fuzzer, MEDIUM_SIZE, fuzzTarget, summary, type FuzzReport, type FuzzTarget } from './util/scsi-fuzz';
import { losetup } from './util/losetup';
import { CommandTable, DataDir, type CommandDef } from '../src/core/opcodes';
import type { LogicalUnit } from '../src/core/logical-unit';

const FULL = process.env.TSIO_FUZZ === '1';
const COMMANDS = Number(process.env.TSIO_FUZZ_COMMANDS ?? (FULL ? 1_000_000 : 15_000));
const SEED = Number(process.env.TSIO_FUZZ_SEED ?? 0x5c51);

let dir: string;
let loop: string;
let builds = 0;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-scsi-fuzz-'));
  const file = path.join(dir, 'loop.img');
  fs.writeFileSync(file, '');
  fs.truncateSync(file, MEDIUM_SIZE);
  loop = losetup(['--find', '--show', file]);
});

after(() => {
  losetup(['--detach', loop]);
  fs.rmSync(dir, { recursive: true, force: true });
});

function print(r: FuzzReport): void {
  console.log(`scsi fuzz (seed ${SEED}): ${summary(r)}`);
  const never = [...r.entries].filter((e) => !r.good.has(e)).sort();
  console.log(`entries never GOOD (${never.length}): ${never.join(', ')}`);
  for (const f of r.failures) console.log(`FAILURE: ${f}`);
}

test(`${COMMANDS} fuzzed commands on rd_mcp, fileio, block, tape, changer and CD/DVD units: no failure`, { timeout: FULL ? 4 * 3600_000 : 600_000 }, async () => {
  let last = 0;
  const r = await new Fuzzer({
    seed: SEED,
    commands: COMMANDS,
    build: () => fuzzTarget(dir, loop, builds++),
    progress: (p) => {
      if (FULL && p.commands - last >= 100_000) {
        last = p.commands;
        console.log(`... ${summary(p)}`);
      }
    },
  }).run();
  print(r);
  assert.deepEqual(r.failures, [], 'failures');
  assert.equal(r.failureCount, 0);
  assert.ok(r.commands >= COMMANDS, `${r.commands} commands sent`);
  assert.deepEqual([...r.entries].filter((e) => !r.covered.has(e)), [], 'every entry of every table was sent');
  assert.ok(r.tmfs > 0, 'task management ran among the commands');
});

/** A unit whose table is its own plus `extra`: how a planted bug reaches the fuzzer, the way a new opcode would. */
function plant(lu: LogicalUnit, ...extra: CommandDef[]): void {
  const t = lu.table;
  Object.defineProperty(lu, 'table', { value: new CommandTable(t.deviceType, [...t.all, ...extra] as CommandDef[]) });
}

async function planted(...extra: CommandDef[]): Promise<FuzzReport> {
  return new Fuzzer({
    seed: 7,
    commands: 4000,
    keep: 1,
    build: async (): Promise<FuzzTarget> => {
      const t = await fuzzTarget(dir, loop, builds++);
      plant(t.units[0].lu, ...extra);
      return t;
    },
  }).run();
}

test('the fuzzer catches a handler that throws, on a test-only table entry', async () => {
  const r = await planted({
    name: 'PLANTED THROW', opcode: 0xc9, usage: [0xc9, 0xff, 0xff, 0xff, 0xff, 0xff], dir: DataDir.NONE, flags: 0,
    execute: () => {
      (undefined as unknown as { x: number }).x = 1;
    },
  });
  assert.equal(r.failures.length, 1, summary(r));
  assert.match(r.failures[0], /PLANTED THROW on rd_mcp LUN 0: .*sense 70000400.* \(key 4, ASC 44h\/0h\)/);
});

test('the fuzzer catches a command that must not write and writes', async () => {
  const r = await planted({
    name: 'PLANTED WRITE', opcode: 0xc9, usage: [0xc9, 0xff, 0xff, 0xff, 0xff, 0xff], dir: DataDir.NONE, flags: 0,
    execute: (cmd) => cmd.lu.backstore.write(cmd.cdb[2] * 512, 512, [Buffer.alloc(512, 0x5a)], false),
  });
  assert.equal(r.failures.length, 1, summary(r));
  assert.match(r.failures[0], /^rd_mcp LUN 0: byte \d+ changed outside what the batch may write .*PLANTED WRITE/);
});
