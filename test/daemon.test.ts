// tsiod as a user runs it: config checking, start, SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTsiod, TSIOD } from './util/tsiod';


function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'tsiod-test-'));
}

test('--check accepts a good file and the embedded default', () => {
  const dir = tmp();
  const f = join(dir, 'ok.yaml');
  writeFileSync(f, `storage_objects:\n  - { name: ram0, plugin: rd_mcp, size: 64MiB }\ntargets: []\n`);
  let p = spawnSync(process.execPath, [TSIOD, '--config', f, '--check'], { encoding: 'utf8' });
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /configuration ok: 1 storage objects, 0 targets/);
  p = spawnSync(process.execPath, [TSIOD, '--check'], { encoding: 'utf8' });
  assert.equal(p.status, 0, p.stderr);
  rmSync(dir, { recursive: true });
});

test('a bad config is refused before anything starts, every error with its path and line', () => {
  const dir = tmp();
  const f = join(dir, 'bad.yaml');
  writeFileSync(
    f,
    [
      'storage_objects:',
      '  - { name: ram0, plugin: rd_mcp, size: 64MiB, attributes: { emulate_tpux: true } }',
      '  - name: disk0',
      '    plugin: fileio',
      `    dev: ${join(dir, 'never-created.img')}`,
      '    size: 4 GB',
      'targets:',
      '  - fabric: iscsi',
      '    wwn: iqn.2026-11.org.tsio:t',
      '    tpgs:',
      '      - tag: 1',
      '        luns: [ { index: 0, storage_object: /backstores/rd_mcp/nope } ]',
      '',
    ].join('\n'),
  );
  const p = spawnSync(process.execPath, [TSIOD, '--config', f], { encoding: 'utf8' });
  assert.equal(p.status, 1);
  assert.match(p.stderr, new RegExp(`bad.yaml:2: storage_objects\\[0\\]\\.attributes.*emulate_tpux`));
  assert.match(p.stderr, /bad.yaml:6: storage_objects\[1\]\.size: .*not a size/);
  assert.match(p.stderr, /bad.yaml:12: targets\[0\]\.tpgs\[0\]\.luns\[0\]\.storage_object/);
  assert.throws(() => statSync(join(dir, 'never-created.img')), 'nothing was created');
  rmSync(dir, { recursive: true });
});

test('tsiod starts from a config, and SIGTERM flushes and exits cleanly', async () => {
  const d = await startTsiod(
    [
      'storage_objects:',
      '  - { name: ram0, plugin: rd_mcp, size: 64MiB }',
      '  - { name: disk0, plugin: fileio, dev: disk0.img, size: 16MiB, write_back: true }',
      'targets:',
      '  - fabric: loopback',
      '    wwn: naa.5001405000000077',
      '    tpgs:',
      '      - tag: 1',
      '        luns:',
      '          - { index: 0, storage_object: /backstores/rd_mcp/ram0 }',
      '          - { index: 1, storage_object: /backstores/fileio/disk0 }',
      '',
    ].join('\n'),
  );
  try {
    // The file is created sparse, relative to the config file's folder.
    const st = statSync(join(d.dir, 'disk0.img'));
    assert.equal(st.size, 16 << 20);
  } finally {
    assert.equal(await d.stop(), 0, d.log());
  }
  assert.match(d.log(), /every store flushed/);
});
