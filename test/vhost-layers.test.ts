// The vhost fabric's seam, read from the sources' imports (type imports too):
// the vhost-user back end and its rings know no device type and no SCSI, so a
// virtio-blk device can sit beside virtio-scsi on the same back end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(__dirname, '..', '..');
const GENERIC = ['vhost-user-backend.ts', 'virtqueue.ts', 'guest-memory.ts', 'vhost-user-proto.ts', 'virtio-ring.ts'];

/** Every project file `file` reaches through relative imports. */
function reach(file: string, seen = new Set<string>()): Set<string> {
  for (const i of ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles) {
    if (!i.fileName.startsWith('.')) continue;
    const p = `${resolve(dirname(file), i.fileName)}.ts`;
    if (!existsSync(p) || seen.has(p)) continue;
    seen.add(p);
    reach(p, seen);
  }
  return seen;
}

test('the vhost-user back end imports no device type and nothing of SCSI', () => {
  const wrong: string[] = [];
  for (const f of GENERIC) {
    const file = resolve(ROOT, 'fabrics', 'vhost', f);
    assert.ok(existsSync(file), `${f} exists`);
    for (const d of reach(file)) {
      const r = relative(ROOT, d);
      const allowed = /^native\//.test(r) || r === 'src/core/log.ts' || GENERIC.some((g) => r === `fabrics/vhost/${g}`);
      if (!allowed) wrong.push(`${f} -> ${r}`);
    }
  }
  assert.deepEqual(wrong, []);
});
