// Connection faults under load: the fault relay (tools/fault-relay) between
// a verifying client with reconnect and tsiod drops, resets, stalls,
// black-holes and delays connections; every acknowledged write reads back,
// no command is answered twice, sessions come back by reinstatement (same
// initiator port). At ERL 1, Data-Out data digests corrupted on the way are
// recovered by recovery R2Ts without the connection ever dropping. About a
// minute here; 30 minutes of faults in npm run soak.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FaultRelay } from '../tools/fault-relay/relay';
import { startTsiod, type Daemon } from './util/tsiod';
import { VerifyingClient, type VerifyStats } from './util/verify-client';

const IQN = 'iqn.2026-12.org.tsio:relay';
const SOAK = process.env.TSIO_SOAK === '1';

const config = (port: number, dir: string) => `storage_objects:
  - { name: disk, plugin: fileio, dev: ${join(dir, 'disk.img')}, size: 16MiB }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false, default_erl: 1 }
        parameters: { ErrorRecoveryLevel: 1, InitialR2T: 'Yes', ImmediateData: 'Yes', MaxRecvDataSegmentLength: 8192 }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/fileio/disk } ]
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function summary(s: VerifyStats): string {
  return `writes ${s.writes}, reads ${s.reads}, blocks verified ${s.blocksVerified}, reconnects ${s.reconnects}, reissued ${s.reissued}, ` +
    `duplicates ${s.duplicates}, unit attentions ${JSON.stringify(Object.fromEntries(s.unitAttentions))}`;
}

/** Faults off, the workers stopped, every block read back: no error, no lost write, nothing answered twice. */
async function settle(relay: FaultRelay, client: VerifyingClient): Promise<VerifyStats> {
  relay.active = false;
  const s = await client.stop();
  await client.verifyAll();
  console.log(`relay ${JSON.stringify(relay.stats)}; client ${summary(s)}`);
  assert.deepEqual(s.errors, []);
  assert.deepEqual(s.verifyFailures, []);
  assert.equal(s.duplicates, 0);
  return s;
}

async function withTarget(run: (d: Daemon) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tsiod-relay-'));
  const d = await startTsiod(config, { dir, args: ['--log-level', 'debug'] });
  try {
    await run(d);
  } finally {
    assert.equal(await d.stop(), 0, d.log());
    rmSync(dir, { recursive: true, force: true });
  }
}

test(`relay drops, resets, stalls, black holes and delays for ${SOAK ? '30 minutes' : '40 s'} (ERL 0): nothing acknowledged lost, nothing answered twice`, { timeout: 3_000_000 }, async () => {
  await withTarget(async (d) => {
    const relay = new FaultRelay({
      targetPort: d.port, seed: 4,
      faults: { drop: 0.1, reset: 0.1, stall: 0.3, stallMs: [100, 4000], blackhole: 0.05, delayMs: [0, 3] },
    });
    const port = await relay.listen();
    const client = new VerifyingClient({
      port, target: IQN, initiator: 'iqn.2026-12.org.tsio:relay-client', blocks: 8192, workers: 4, seed: 7, commandTimeoutMs: 3000, reconnectLimitMs: 30_000,
    });
    try {
      client.start();
      await sleep(SOAK ? 30 * 60_000 : 40_000);
      const s = await settle(relay, client);
      assert.ok(relay.stats.drops + relay.stats.resets + relay.stats.blackholes > 0 && s.reconnects > 0, 'faults met the sessions');
      assert.ok(s.writes > 100 && s.blocksVerified > 1000, summary(s));
      // A black-holed connection is alive to the target: the client's next login reinstates its session.
      if (relay.stats.blackholes > 0) assert.match(d.log(), /reinstat/i);
    } finally {
      await client.close();
      await relay.close();
    }
  });
});

test('ERL 1: Data-Out data digests corrupted by the relay are recovered on the same connection', { timeout: 120_000 }, async () => {
  await withTarget(async (d) => {
    const relay = new FaultRelay({ targetPort: d.port, seed: 9, digests: true, faults: { corruptDataOut: 0.05 } });
    const port = await relay.listen();
    const client = new VerifyingClient({
      port, target: IQN, initiator: 'iqn.2026-12.org.tsio:relay-erl1', blocks: 4096, workers: 4, seed: 11, commandTimeoutMs: 10_000,
      loginKeys: { ErrorRecoveryLevel: '1', HeaderDigest: 'CRC32C', DataDigest: 'CRC32C', InitialR2T: 'Yes', MaxRecvDataSegmentLength: '8192' },
    });
    try {
      client.start();
      await sleep(15_000);
      const s = await settle(relay, client);
      assert.ok(relay.stats.corrupted > 10, `digest errors injected: ${relay.stats.corrupted}`);
      assert.equal(s.reconnects, 0, `no connection dropped: every digest error recovered in place\n${d.log().split('\n').filter((l) => !/lost; asking again|Data-Out at offset/.test(l)).slice(-40).join('\n')}`);
      assert.equal(s.reissued, 0);
      assert.equal(relay.stats.connections, 1);
    } finally {
      await client.close();
      await relay.close();
    }
  });
});
