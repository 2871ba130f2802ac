// The administrator's escape hatch for persistent reservations: an iSCSI
// initiator registers (with APTPL) and reserves on a LUN of a spawned tsiod;
// tcli shows the registration, and `reservations clear` drops it, removes the
// saved APTPL state and tells the initiator RESERVATIONS PREEMPTED.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTsiod, tcli, type Daemon } from './util/tsiod';
import { RawInitiator } from './util/iscsi-initiator';
import { SA, TYPES, prOutCdb } from './util/pr';

const IQN = 'iqn.2026-11.org.tsio:pr-admin';
const INITIATOR = 'iqn.2026-11.org.tsio:fenced-node';
const SO = '/backstores/rd_mcp/shared';
let daemon: Daemon | undefined;
after(async () => {
  await daemon?.stop();
});

async function prOut(ini: RawInitiator, sa: number, type: number, key: bigint, saKey: bigint, aptpl = false) {
  const p = Buffer.alloc(24);
  p.writeBigUInt64BE(key, 0);
  p.writeBigUInt64BE(saKey, 8);
  p[20] = aptpl ? 1 : 0;
  return ini.command(prOutCdb(sa, type, 24), { write: p, immediate: 24 });
}

test('tcli shows a LUN\'s registrations and reservation, and reservations clear drops them (and the APTPL file)', async () => {
  daemon = await startTsiod((port) =>
    [
      'storage_objects:',
      '  - { name: shared, plugin: rd_mcp, size: 8MiB, wwn: 5e6f7081-92a3-b4c5-d6e7-f8091a2b3c4d }',
      'targets:',
      '  - fabric: iscsi',
      `    wwn: ${IQN}`,
      '    tpgs:',
      '      - tag: 1',
      '        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }',
      `        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]`,
      `        luns: [ { index: 0, storage_object: ${SO} } ]`,
      '',
    ].join('\n'),
  );
  const ini = await RawInitiator.connect(daemon.port);
  try {
    await ini.login(IQN, {}, INITIATOR);
    for (let i = 0; i < 8 && (await ini.command([0, 0, 0, 0, 0, 0])).status !== 0; i++);

    // Nothing registered yet.
    let r = tcli(daemon.sock, ['--json', SO, 'reservations']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { generation: 0, aptpl: false, registrations: [] });

    assert.equal((await prOut(ini, SA.REGISTER, 0, 0n, 0x1234abcdn, true)).status, 0);
    assert.equal((await prOut(ini, SA.RESERVE, TYPES.WE_RO, 0x1234abcdn, 0n)).status, 0);
    const saved = join(daemon.dir, 'state', 'pr');
    assert.equal(readdirSync(saved).length, 1, 'APTPL state saved');

    r = tcli(daemon.sock, ['--json', SO, 'reservations']);
    assert.equal(r.status, 0, r.stderr);
    const port0 = `${INITIATOR},i,0x${ini.isid.toString('hex')}`;
    assert.deepEqual(JSON.parse(r.stdout), {
      generation: 1,
      aptpl: true,
      registrations: [{ initiator_port: port0, target_port: `${IQN},t,0x0001`, rel_tgt_port: 1, key: '0x000000001234abcd', holder: true }],
      reservation: { initiator_port: port0, key: '0x000000001234abcd', type: 'write_exclusive_registrants_only', scope: 0 },
    });
    // The text form names the same.
    r = tcli(daemon.sock, [SO, 'reservations']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /generation 0x1, APTPL on\nreservation: write_exclusive_registrants_only held by .*fenced-node,i,0x80123456789a key 0x000000001234abcd\nregistrations: 1\n/);

    // Batch mode wants an explicit confirmation.
    r = tcli(daemon.sock, [SO, 'reservations', 'clear']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr + r.stdout, /confirm=true/);
    assert.equal(JSON.parse(tcli(daemon.sock, ['--json', SO, 'reservations']).stdout).registrations.length, 1, 'not cleared without confirm');

    r = tcli(daemon.sock, ['--json', SO, 'reservations', 'clear', 'confirm=true']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { cleared: 1 });
    r = tcli(daemon.sock, ['--json', SO, 'reservations']);
    assert.deepEqual(JSON.parse(r.stdout), { generation: 2, aptpl: false, registrations: [] });
    assert.equal(readdirSync(saved).length, 0, 'APTPL state removed');

    // The fenced initiator learns it lost its registration, then may write again.
    const tur = await ini.command([0, 0, 0, 0, 0, 0]);
    assert.equal(tur.status, 2);
    assert.equal(tur.sense[2] & 0x0f, 6, 'UNIT ATTENTION');
    assert.deepEqual([tur.sense[12], tur.sense[13]], [0x2a, 0x03], 'RESERVATIONS PREEMPTED');
    const keys = await ini.command([0x5e, 0, 0, 0, 0, 0, 0, 0, 64, 0], { read: 64 });
    assert.equal(keys.status, 0);
    assert.equal(keys.data.readUInt32BE(4), 0, 'no keys left');

    // An unknown storage object is a precise error.
    r = tcli(daemon.sock, ['--json', '/backstores/rd_mcp/nope', 'reservations']);
    assert.notEqual(r.status, 0);
    assert.ok(existsSync(daemon.sock));
  } finally {
    ini.socket.destroy();
  }
});
