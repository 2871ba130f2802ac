// A thin RAM LUN costs memory only for what is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

// Measured in a fresh process so that other tests' garbage does not blur the numbers.
const child = `
const { createRoot } = require('./dist/app/registry');
const { LoopbackNexus } = require('./dist/fabrics/loopback/loopback');
(async () => {
  const root = createRoot();
  // A first object loads the specs and warms the code paths, so only the big one is measured.
  await root.createStorageObject({ name: 'warm', plugin: 'rd_mcp', size: 1 << 20 });
  global.gc(); const before = process.memoryUsage().rss;
  const so = await root.createStorageObject({ name: 'big', plugin: 'rd_mcp', size: 2 ** 40 });
  const tpg = root.createTarget('loopback', 'naa.5001405000000042').addTpg(1, { generate_node_acls: true });
  tpg.addLun(0, so);
  const n = LoopbackNexus.open(tpg, 'naa.5001405aaaaaaaa1');
  await n.command(0, [0, 0, 0, 0, 0, 0]);
  // Read near the end of the LUN: unwritten ranges read zeros without allocating.
  const lba = 2 ** 31 - 8;
  const cdb = Buffer.from([0x28, 0, (lba >>> 24) & 255, (lba >>> 16) & 255, (lba >>> 8) & 255, lba & 255, 0, 0, 8, 0]);
  const r = await n.command(0, cdb);
  global.gc(); const after = process.memoryUsage().rss;
  console.log(JSON.stringify({ growth: after - before, status: r.status, zero: r.data.every((b) => b === 0), len: r.data.length, pages: so.backstore.allocatedBytes }));
})();
`;

test('a 1 TiB rd_mcp LUN costs under 1 MiB of resident memory until written', () => {
  const p = spawnSync(process.execPath, ['--expose-gc', '-e', child], { encoding: 'utf8', cwd: process.cwd() });
  assert.equal(p.status, 0, p.stderr);
  const m = JSON.parse(p.stdout.trim().split('\n').pop()!);
  assert.equal(m.status, 0);
  assert.equal(m.len, 4096);
  assert.equal(m.zero, true);
  assert.equal(m.pages, 0);
  assert.ok(m.growth < 1 << 20, `resident memory grew by ${m.growth} bytes`);
});
