// Session reinstatement (RFC 7143 6.3.5) with a write of the old session
// still in the backstore (a gated RAM store holds it): the reinstating login
// is answered only once that write has ended, so that no write of the old
// session lands after one of the new session to the same blocks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRoot } from '../app/registry';
import { iscsiFabric } from '../fabrics/iscsi';
import { gated } from './util/gated';
import { RawInitiator } from './util/iscsi-initiator';
import { freePort } from './util/tsiod';

const IQN = 'iqn.2026-12.org.tsio:reinstate';
const INITIATOR = 'iqn.2026-12.org.tsio:reinstater';

const write10 = (lba: number, n: number) => [0x2a, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, n, 0];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a reinstating login waits for the old session\'s write in the backstore; the new session\'s write lands last', async () => {
  const root = createRoot();
  const so = await root.createStorageObject({ name: 'g', plugin: 'gated', size: 1 << 20 });
  const store = gated[gated.length - 1];
  const tpg = root.createTarget('iscsi', IQN).addTpg(1, { generate_node_acls: true, authentication: false, demo_mode_write_protect: false });
  tpg.addLun(0, so);
  const port = await freePort();
  tpg.portals.push({ ip_address: '127.0.0.1', port });
  const service = await iscsiFabric.serve(tpg.target, root);
  try {
    const a = await RawInitiator.connect(port);
    await a.login(IQN, {}, INITIATOR);
    await a.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
    const old = Buffer.alloc(512, 0x01);
    const w = a.commandHeader(write10(7, 1), { write: 512 });
    a.send(w.h, old); // ImmediateData: all of it with the command
    while (store.started === 0) await sleep(5);

    // The same initiator port logs in again (its old connection looks alive to the target).
    const b = await RawInitiator.connect(port);
    b.isid = a.isid;
    let answered = false;
    const login = b.login(IQN, {}, INITIATOR).then(() => (answered = true));
    await sleep(500);
    assert.equal(answered, false, 'no login response while the old session\'s write is in the backstore');
    store.open();
    await login;
    assert.ok(await a.waitClosed(2000), 'the old connection is dropped');
    await b.command([0, 0, 0, 0, 0, 0]);
    const fresh = Buffer.alloc(512, 0x02);
    assert.equal((await b.command(write10(7, 1), { write: fresh, immediate: 512 })).status, 0);
    const r = await b.command([0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0], { read: 512 });
    assert.ok(r.data.equals(fresh), 'the new session\'s write is the one on the LU');
    assert.equal(await b.logout(), 0);
    b.close();
    a.close();
  } finally {
    store.open();
    await service.close();
    await root.close();
  }
});
