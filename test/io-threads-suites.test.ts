// CI with io_threads: 2: libiscsi's conformance suite once (RAM units, default login parameters, without the
// minute-long Sanitize.Reset) and the vhost-user-scsi guest's file system and fio-with-verify test, both
// against a tsiod whose data path runs on I/O threads (TSIO_IO_THREADS, test/util/tsiod.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { RD_MCP_UNITS, runConformance } from './util/conformance';

test('iscsi-test-cu, every suite of ALL, against a tsiod with io_threads 2: zero failures, at least 200 passing', { timeout: 20 * 60_000 }, async () => {
  process.env.TSIO_IO_THREADS = '2';
  try {
    const r = await runConformance({
      objects: RD_MCP_UNITS,
      skipAlone: true,
    });
    assert.deepEqual(r.failures, [], 'tests failing against tsiod with io_threads 2');
    assert.ok(r.count('pass') >= 200, `at least 200 tests pass (${r.count('pass')})`);
  } finally {
    delete process.env.TSIO_IO_THREADS;
  }
});

test('the vhost-user-scsi guest: a file system, discard and fio with verify, with io_threads 2', { timeout: 450_000 }, async () => {
  const file = join(__dirname, 'vhost-guest.test.js');
  const args = ['--test', '--test-concurrency=1', '--test-name-pattern=a file system, discard on the thin LUN', file];
  const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
    // A test file of its own, not a subtest of this one: without NODE_TEST_CONTEXT the runner runs it.
    const env: NodeJS.ProcessEnv = { ...process.env, TSIO_IO_THREADS: '2' };
    delete env.NODE_TEST_CONTEXT;
    const p = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    p.stdout.on('data', (d) => (text += d));
    p.stderr.on('data', (d) => (text += d));
    p.on('close', (code) => resolve({ code, text }));
  });
  assert.equal(out.code, 0, out.text.slice(-4000));
  assert.match(out.text, /^# pass 1$/m, out.text.slice(-4000));
});
