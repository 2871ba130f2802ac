// libiscsi's conformance suites that use two nexuses, across two gateways: tsiod A and tsiod B export
// one rbd image of the shared test cluster (test/util/gateways.ts); iscsi-test-cu gets the first URL
// on A and the multipath URL on B, so every PR test's second initiator and MultipathIO's second path
// go through the other gateway. Zero failures.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';

import { IQN, parseCunit, runTestCu, type Outcome } from './util/conformance';
import { ceph, type Ceph } from './util/ceph';
import { startTsiod, type Daemon } from './util/tsiod';
import { gatewayConfig, type GatewayUnit } from './util/gateways';

const SUITES = [
  'PrinReadKeys', 'PrinServiceactionRange', 'PrinReportCapabilities', 'ProutRegister', 'ProutReserve', 'ProutClear',
  'ProutPreempt', 'MultipathIO',
];

let c: Ceph;
let unit: GatewayUnit;
const gw: Daemon[] = [];

before(async () => {
  c = ceph();
  unit = { iqn: IQN, serial: 'tsio-conformance-gateways', image: c.imageName('conf-gw'), size: 64 * 1024 * 1024 };
  gw.push(await startTsiod((port) => gatewayConfig(c, unit, 1, port)));
  gw.push(await startTsiod((port) => gatewayConfig(c, unit, 2, port)));
});

after(async () => {
  for (const d of gw) await d.stop();
  c.rbd('rm', '--no-progress', `rbd/${unit.image}`);
  for (const rec of ['pr', 'alua']) {
    try {
      execFileSync('rados', ['-c', c.conf, '-p', 'rbd', 'rm', `tsio.${rec}.${unit.image}`], { stdio: 'ignore' });
    } catch {
      /* never made */
    }
  }
});

test('iscsi-test-cu -d -S, first URL on gateway A, multipath URL on gateway B: PR and MultipathIO, zero failures', { timeout: 20 * 60_000 }, async () => {
  assert.equal(spawnSync('iscsi-test-cu', ['-l'], { encoding: 'utf8' }).error, undefined, 'iscsi-test-cu missing: scripts/install-deps --test installs libiscsi-bin');
  const [a, b] = gw;
  const all = new Map<string, Outcome>();
  for (const suite of SUITES) {
    const out = await runTestCu(`ALL.${suite}`, [`iscsi://127.0.0.1:${a.port}/${IQN}/0`, `iscsi://127.0.0.1:${b.port}/${IQN}/0`]);
    const r = parseCunit(out, suite);
    assert.ok(r.size > 0, `suite ${suite} ran no test:\n${out.slice(-2000)}`);
    for (const [k, v] of r) all.set(k, v);
    const failed = [...r].filter(([, v]) => v === 'fail').map(([k]) => k);
    if (failed.length) console.log(`${suite}: FAILED ${failed.join(' ')}\n${out.slice(-6000)}`);
  }
  const count = (o: Outcome) => [...all.values()].filter((v) => v === o).length;
  console.log(`across gateways: ${all.size} tests, ${count('pass')} passed, ${count('skip')} skipped, ${count('fail')} failed`);
  const skipped = [...all].filter(([, v]) => v === 'skip').map(([k]) => k);
  if (skipped.length) console.log(`skipped: ${skipped.join(', ')}`);
  assert.deepEqual([...all].filter(([, v]) => v === 'fail').map(([k]) => k), [], 'tests failing across gateways');
  assert.ok(count('pass') >= 20, `the PR and multipath tests ran (${count('pass')} passed)`);
});
