// libiscsi's conformance suite (test/util/conformance.ts) against tsiod serving RBD images of the
// shared test cluster (test/util/ceph.ts), the same five units as the RAM run of
// test/iscsi-conformance.test.ts: every suite of ALL, zero failures, and within 5 passes of it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { runConformance } from './util/conformance';
import { ceph, type Ceph } from './util/ceph';

/** What the RAM run passes (README: 225 of 230, 5 skip); the rbd run may pass at most 5 fewer. */
const RAM_PASSES = 225;

let c: Ceph;
const images: string[] = [];

before(() => {
  c = ceph();
});

after(() => {
  for (const i of images) c.rbd('rm', '--no-progress', `rbd/${i}`);
});

test('iscsi-test-cu -d -S on rbd units: zero failures, within 5 passes of the RAM run', { timeout: 30 * 60_000 }, async () => {
  const unit = (name: string, size: string, more = '', attributes = '') => {
    const image = c.imageName(`conf-${name}`);
    images.push(image);
    const a = ['emulate_tpu: true', 'emulate_tpws: true', attributes].filter(Boolean).join(', ');
    return `{ name: ${name}, plugin: rbd, image: ${image}, conf: ${c.conf}, size: ${size}${more}, attributes: { ${a} } }`;
  };
  const r = await runConformance({
    objects: [
      unit('thin', '1GiB'),
      unit('removable', '64MiB', '', 'removable: true'),
      unit('ro', '64MiB', '', 'readonly: true'),
      unit('slow-sanitize', '64MiB', '', 'max_sanitize_rate: 4'),
      unit('thin-512e', '64MiB', ', physical_block_size: 4096'),
    ],
  });
  assert.deepEqual(r.failures, [], 'tests failing against tsiod on rbd');
  assert.ok(r.count('pass') >= RAM_PASSES - 5, `at least ${RAM_PASSES - 5} tests pass (${r.count('pass')})`);
});
