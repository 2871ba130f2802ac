// The metrics endpoint as Prometheus reads it: parsed by a real text-format
// parser (Debian's python3-prometheus-client), with the names, types and
// label sets a dashboard can rely on: session series keyed by initiator name
// (a reconnect continues the same series), one bucket layout per histogram
// family, command counts of every command, login/logout/failure counters,
// process metrics and tsio_build_info.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startTsiod, type Daemon } from './util/tsiod';
import { RawInitiator } from './util/iscsi-initiator';

const IQN = 'iqn.2026-11.org.tsio:metrics';
const INIT = 'iqn.2026-11.org.example:scraper';
const daemons: Daemon[] = [];
after(async () => {
  for (const d of daemons) await d.stop();
});

/** The exposition parsed by prometheus_client: [{name, type, samples: [{name, labels, value}]}]. */
function parse(text: string): { name: string; type: string; samples: { name: string; labels: Record<string, string>; value: number }[] }[] {
  const py = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
`;
  const r = spawnSync('/usr/bin/python3', ['-c', py], { input: text, encoding: 'utf8' });
  if (r.error || /No module named 'prometheus_client'/.test(r.stderr)) throw new Error(`python3-prometheus-client is needed (scripts/install-deps --test installs it): ${r.stderr || r.error?.message}`);
  assert.equal(r.status, 0, `the parser refused the exposition: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
}

async function session(port: number, writes: number): Promise<void> {
  const i = await RawInitiator.connect(port);
  try {
    await i.login(IQN, {}, INIT);
    await i.command([0, 0, 0, 0, 0, 0]);
    for (let k = 0; k < writes; k++) await i.command([0x2a, 0, 0, 0, 0, k, 0, 0, 1, 0], { write: Buffer.alloc(512, k) });
    await i.logout();
  } finally {
    i.close();
  }
}

test('Prometheus: names, types and stable label sets, parsed by prometheus_client', async () => {
  const port = await freePort();
  const mport = await freePort();
  const d = await startTsiod(
    [
      'storage_objects: [ { name: ram0, plugin: rd_mcp, size: 1MiB } ]',
      'targets:',
      `  - { fabric: iscsi, wwn: ${IQN}, tpgs: [ { tag: 1, attributes: { authentication: false }, portals: [ { ip_address: 127.0.0.1, port: ${port} } ], luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ], node_acls: [ { node_wwn: ${INIT}, mapped_luns: [ { index: 0, tpg_lun: 0 } ] } ] } ] }`,
      '',
    ].join('\n'),
    { args: ['--metrics', `127.0.0.1:${mport}`] },
  );
  daemons.push(d);
  // Two sessions one after the other (a reconnect, a new ISID each time), and a refused login.
  await session(port, 5);
  const refused = await RawInitiator.connect(port);
  await refused.login(IQN, {}, 'iqn.2026-11.org.example:stranger').catch(() => {});
  refused.close();
  // While a third session is open, its commands are in the initiator's series.
  const i = await RawInitiator.connect(port);
  await i.login(IQN, {}, INIT);
  await i.command([0, 0, 0, 0, 0, 0]);
  for (let k = 0; k < 3; k++) await i.command([0x2a, 0, 0, 0, 0, k, 0, 0, 1, 0], { write: Buffer.alloc(512, k) });
  const families = parse(await scrape(mport));
  await i.logout();
  i.close();
  const fam = (name: string) => {
    const f = families.find((x) => x.name === name);
    assert.ok(f, `family ${name} (have: ${families.map((x) => x.name).join(', ')})`);
    return f;
  };
  const { version } = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'));
  const build = fam('tsio_build_info');
  assert.equal(build.type, 'gauge');
  assert.deepEqual(build.samples[0].labels, { version, node: process.versions.node });
  for (const [name, type] of [['tsio_lu_commands', 'counter'], ['tsio_lu_latency_seconds', 'histogram'], ['tsio_session_commands', 'counter'], ['tsio_session_latency_seconds', 'histogram'], ['tsio_tpg_sessions', 'gauge'], ['tsio_iscsi_logins', 'counter'], ['tsio_iscsi_login_failures', 'counter'], ['tsio_iscsi_logouts', 'counter'], ['process_cpu_seconds', 'counter'], ['process_resident_memory_bytes', 'gauge'], ['process_open_fds', 'gauge'], ['process_start_time_seconds', 'gauge']] as const) {
    assert.equal(fam(name).type, type, name);
  }
  // Session series: labelled by initiator name; no session id or ISID label.
  const sessionCommands = fam('tsio_session_commands').samples;
  assert.deepEqual(sessionCommands.map((s) => s.labels), [{ fabric: 'iscsi', target: IQN, tpg: '1', initiator: INIT }]);
  assert.equal(sessionCommands[0].value, 10, "every command of the initiator's closed and open sessions (2 TURs + 8 writes)");
  // LU command counts count every command, not the sampled ones: 2 TURs + 8 writes.
  assert.equal(fam('tsio_lu_commands').samples[0].value, 10);
  // One bucket layout for every series of a histogram family.
  for (const name of ['tsio_lu_latency_seconds', 'tsio_session_latency_seconds']) {
    const buckets = fam(name).samples.filter((s) => s.name.endsWith('_bucket'));
    const layouts = new Set<string>();
    const series = new Map<string, string[]>();
    for (const b of buckets) {
      const { le, ...rest } = b.labels;
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), le]);
    }
    for (const les of series.values()) layouts.add(les.join(','));
    assert.equal(layouts.size, 1, `${name}: one bucket layout`);
    assert.equal([...layouts][0].split(',').length, 32, '31 bounds and +Inf');
  }
  const logins = fam('tsio_iscsi_logins').samples[0].value;
  assert.equal(logins, 2);
  const failures = Object.fromEntries(fam('tsio_iscsi_login_failures').samples.map((s) => [s.labels.reason, s.value]));
  assert.deepEqual(failures, { authentication: 0, authorization: 1, not_found: 0, initiator_error: 0, target_error: 0 });
  assert.equal(fam('tsio_iscsi_logouts').samples[0].value, 1);
  // After the third session's logout, the same series goes on (no churn), its count kept.
  const again = parse(await scrape(mport));
  assert.equal(again.find((x) => x.name === 'tsio_iscsi_logouts')!.samples[0].value, 2);
  const kept = again.find((x) => x.name === 'tsio_session_commands')!.samples;
  assert.deepEqual(kept.map((s) => [s.labels.initiator, s.value]), [[INIT, 10]]);
});
