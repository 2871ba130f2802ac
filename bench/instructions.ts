// Instructions per SCSI command, counted by valgrind's callgrind: an A/B between
// two built trees that the shared machine's load cannot blur (CPU-time ratios
// drift by 10-20% here when other work runs). Each side runs N and 3N commands
// through loopback on an rd_mcp LUN at QD 32; the difference divided by 2N is
// the per-command cost with startup and warm-up cancelled out. --store fileio
// (or fileio-direct) puts the LUN on a file on the disk's ext4 instead, so the
// count includes the fd-backed store's path (io_uring, page cache) in user space.
//
//   npm run bench -- instructions --against /path/to/other/tree [--tree DIR] [--commands N] [--store S]
//
// The driver loads each tree's built modules by path, so the other tree needs
// no copy of this file (only `dist/`, built).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { Scenario, numOpt, table } from './common';

const KINDS = ['read', 'write'] as const;
type Kind = (typeof KINDS)[number];
const LUN_BYTES = 64 << 20;
const QD = 32;
const STORES = ['rd_mcp', 'fileio', 'fileio-direct'];

export const instructionsScenario: Scenario = {
  name: 'instructions',
  description: 'instructions per SCSI command (valgrind), this tree (or --tree B) against --against A: loopback, rd_mcp, QD 32',
  byDefault: false,
  async run(args) {
    const child = process.env.TSIO_INSTR_CHILD; // set by count() for the run under valgrind
    if (child) return drive(...(JSON.parse(child) as [string, number, Kind, string, string]));
    const i = args.indexOf('--against');
    if (i < 0) throw new Error('instructions: --against DIR (another built tree) is required');
    const t = args.indexOf('--tree'); // B: this tree unless named
    const trees = [path.resolve(args[i + 1]), path.resolve(t >= 0 ? args[t + 1] : path.join(__dirname, '../..'))];
    const n = numOpt(args, '--commands', 10_000);
    const s = args.indexOf('--store');
    const store = s >= 0 ? args[s + 1] : 'rd_mcp';
    if (!STORES.includes(store)) throw new Error(`instructions: --store is one of ${STORES.join(', ')}`);
    // The disk's ext4, never tmpfs (whose files fileio serves on the loop like memory).
    const dir = mkdtempSync('/var/tmp/tsio-instr-');
    const rows: string[][] = [];
    try {
      for (const kind of KINDS) {
        const per = trees.map((tree) => (count(tree, 3 * n, kind, store, dir) - count(tree, n, kind, store, dir)) / (2 * n));
        rows.push([kind, ...trees.map((_, j) => Math.round(per[j]).toLocaleString('en')), (per[1] / per[0]).toFixed(3)]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    console.log(`trees: A ${trees[0]}\n       B ${trees[1]}\nstore: ${store}\n`);
    console.log(table(['case', 'instr/cmd A', 'instr/cmd B', 'B/A'], rows));
  },
};

function count(tree: string, n: number, kind: Kind, store: string, dir: string): number {
  const r = spawnSync(
    'valgrind',
    ['--tool=callgrind', '--callgrind-out-file=/dev/null', process.execPath, '--single-threaded', path.join(__dirname, 'run.js'), 'instructions'],
    { encoding: 'utf8', env: { ...process.env, TSIO_INSTR_CHILD: JSON.stringify([tree, n, kind, store, dir]) } },
  );
  if (r.error) throw new Error(`instructions: valgrind: ${r.error.message} (scripts/install-deps --bench installs it)`);
  const m = /Collected : (\d+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`instructions: the run in ${tree} failed:\n${r.stderr.slice(-2000)}`);
  return Number(m[1]);
}

/** In the child: N commands through the given tree's engine. */
async function drive(tree: string, n: number, kind: Kind, store: string, dir: string): Promise<void> {
  const load = (p: string) => require(path.join(tree, 'dist', p));
  let createRoot: () => any;
  try {
    createRoot = load('app/registry').createRoot;
  } catch {
    const { Root } = load('src/model/root'); // trees from before the application layer
    createRoot = () => new Root();
  }
  const { LoopbackNexus } = load('fabrics/loopback/loopback');
  const root = createRoot();
  const so = store === 'rd_mcp'
    ? await root.createStorageObject({ name: 'b', plugin: 'rd_mcp', size: LUN_BYTES, blockSize: 512 })
    : await root.createStorageObject({ name: 'b', plugin: 'fileio', dev: path.join(dir, 'lun.img'), size: LUN_BYTES, direct: store === 'fileio-direct' });
  const tpg = root.createTarget('loopback', 'naa.5001405000000bb1').addTpg(1, { generate_node_acls: true, demo_mode_write_protect: false });
  tpg.addLun(0, so);
  const nx = LoopbackNexus.open(tpg, 'naa.5001405000000bb2');
  for (let i = 0; i < 4; i++) await nx.command(0, Buffer.alloc(6)); // TEST UNIT READY clears the power-on UA
  const fill = [Buffer.alloc(1 << 20, 0xa5)];
  for (let off = 0; off < LUN_BYTES; off += 1 << 20) await so.backstore.write(off, 1 << 20, fill, false);
  const write = kind === 'write';
  const data = Buffer.alloc(4096, 1);
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  let sent = 0;
  let done = 0;
  await new Promise<void>((resolve) => {
    const one = (): void => {
      if (sent >= n) {
        if (done >= n) resolve();
        return;
      }
      sent++;
      const lba = (rnd() % (LUN_BYTES / 4096)) * 8;
      const cdb = Buffer.from([write ? 0x2a : 0x28, 0, lba >>> 24, (lba >>> 16) & 255, (lba >>> 8) & 255, lba & 255, 0, 0, 8, 0]);
      nx.command(0, cdb, write ? { dataOut: data } : undefined).then(() => {
        done++;
        one();
      });
    };
    for (let i = 0; i < QD; i++) one();
  });
}
