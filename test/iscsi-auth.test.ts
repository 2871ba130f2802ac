// iSCSI security: CHAP one-way and mutual (per ACL and per TPG), discovery
// CHAP from fabric_modules, header and data digests; with libiscsi's tools
// and the raw initiator for the exact exchange.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { RawInitiator } from './util/iscsi-initiator';
import { startTsiod, type Daemon } from './util/tsiod';

const IQN = 'iqn.2026-11.org.tsio:auth';
const OPEN = 'iqn.2026-11.org.tsio:tpgauth';
const INIT = 'iqn.2026-11.org.tsio:alice';
let d: Daemon;

before(async () => {
  d = await startTsiod(
    (port) => `storage_objects:
  - { name: ram0, plugin: rd_mcp, size: 16MiB }
fabric_modules:
  - name: iscsi
    discovery_auth: { enable: true, userid: disco, password: disco-secret-1, mutual_userid: tdisco, mutual_password: tdisco-secret-1 }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { authentication: true }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]
        node_acls:
          - node_wwn: ${INIT}
            auth: { userid: alice, password: alice-secret-1, mutual_userid: target1, mutual_password: target-secret-1 }
            mapped_luns: [ { index: 0, tpg_lun: 0 } ]
  - fabric: iscsi
    wwn: ${OPEN}
    tpgs:
      - tag: 2
        attributes: { authentication: true, generate_node_acls: true, demo_mode_write_protect: false }
        auth: { userid: bob, password: bob-secret-12 }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]
`,
  );
});
after(async () => {
  assert.equal(await d.stop(), 0);
});

function tool(cmd: string, args: string[], env: Record<string, string> = {}): { status: number | null; out: string } {
  const p = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  if (p.error) throw new Error(`${cmd} not runnable (scripts/install-deps --test installs libiscsi-bin): ${p.error.message}`);
  return { status: p.status, out: p.stdout + p.stderr };
}

test('one-way and mutual CHAP per ACL with iscsi-inq; wrong secrets and missing auth are refused', () => {
  const url = (cred: string, q = '') => `iscsi://${cred}127.0.0.1:${d.port}/${IQN}/0${q}`;
  let r = tool('iscsi-inq', ['-i', INIT, url('alice%alice-secret-1@')]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /DIRECT_ACCESS/);
  r = tool('iscsi-inq', ['-i', INIT, url('alice%alice-secret-1@', '?target_user=target1&target_password=target-secret-1')]);
  assert.equal(r.status, 0, `mutual CHAP: ${r.out}`);
  r = tool('iscsi-inq', ['-i', INIT, url('alice%alice-secret-1@')], { LIBISCSI_CHAP_TARGET_USERNAME: 'target1', LIBISCSI_CHAP_TARGET_PASSWORD: 'wrong-secret-9' });
  assert.notEqual(r.status, 0, 'the initiator refuses a target that proves the wrong secret');
  r = tool('iscsi-inq', ['-i', INIT, url('alice%wrong-secret@')]);
  assert.notEqual(r.status, 0);
  assert.match(r.out, /\(513\)/, "login status 0x0201, authentication failure");
  r = tool('iscsi-inq', ['-i', INIT, url('')]);
  assert.notEqual(r.status, 0, 'authentication is required');
  r = tool('iscsi-inq', ['-i', 'iqn.2026-11.org.tsio:mallory', url('alice%alice-secret-1@')]);
  assert.notEqual(r.status, 0, 'no ACL for this initiator');
});

test('TPG-wide CHAP in demo mode, with header digests', () => {
  const r = tool('iscsi-inq', [`iscsi://bob%bob-secret-12@127.0.0.1:${d.port}/${OPEN}/0?header_digest=crc32c`]);
  assert.equal(r.status, 0, r.out);
  const w = tool('iscsi-readcapacity16', [`iscsi://bob%bob-secret-12@127.0.0.1:${d.port}/${OPEN}/0?header_digest=crc32c`]);
  assert.equal(w.status, 0, w.out);
});

test('discovery needs CHAP when fabric_modules says so (mutual too)', () => {
  let r = tool('iscsi-ls', [`iscsi://127.0.0.1:${d.port}`]);
  assert.notEqual(r.status, 0, r.out);
  r = tool('iscsi-ls', ['-i', INIT, `iscsi://disco%disco-secret-1@127.0.0.1:${d.port}?target_user=tdisco&target_password=tdisco-secret-1`]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, new RegExp(`Target:${IQN}`));
});

test('raw CHAP: SHA-256 chosen when offered, mutual response proves the target secret', async () => {
  const i = await RawInitiator.connect(d.port);
  let r = await i.loginPdu(0x00, { InitiatorName: INIT, SessionType: 'Normal', TargetName: IQN, AuthMethod: 'CHAP,None' });
  assert.equal(r.status, 0);
  assert.equal(r.keys.get('AuthMethod'), 'CHAP');
  assert.equal(r.keys.get('TargetPortalGroupTag'), '1');
  r = await i.loginPdu(0x00, { CHAP_A: '5,7' });
  assert.equal(r.keys.get('CHAP_A'), '7');
  const id = Number(r.keys.get('CHAP_I'));
  const challenge = Buffer.from(r.keys.get('CHAP_C')!.slice(2), 'hex');
  assert.equal(challenge.length, 32);
  const resp = createHash('sha256').update(Buffer.from([id])).update('alice-secret-1').update(challenge).digest('hex');
  const myChallenge = Buffer.alloc(32, 0x5a);
  r = await i.loginPdu(0x81, { CHAP_N: 'alice', CHAP_R: '0x' + resp, CHAP_I: '9', CHAP_C: '0x' + myChallenge.toString('hex') });
  assert.equal(r.status, 0);
  assert.equal(r.pdu.flags & 0x80, 0x80, 'transit to operational');
  assert.equal(r.keys.get('CHAP_N'), 'target1');
  const want = createHash('sha256').update(Buffer.from([9])).update('target-secret-1').update(myChallenge).digest('hex');
  assert.equal(r.keys.get('CHAP_R'), '0x' + want);
  r = await i.loginPdu(0x87, { HeaderDigest: 'CRC32C', DataDigest: 'CRC32C,None', MaxRecvDataSegmentLength: '8192' });
  assert.equal(r.status, 0);
  assert.equal(r.keys.get('HeaderDigest'), 'CRC32C');
  assert.equal(r.keys.get('DataDigest'), 'CRC32C');
  i.headerDigest = i.dataDigest = true;
  // Digests on both ways: a write with immediate data and R2T, read back.
  await i.command([0, 0, 0, 0, 0, 0]);
  const data = Buffer.alloc(64 * 512);
  for (let k = 0; k < data.length; k++) data[k] = (k * 13) & 0xff;
  const w = await i.command([0x2a, 0, 0, 0, 0, 0, 0, 0, 64, 0], { write: data, immediate: 4096 });
  assert.equal(w.status, 0);
  const rd = await i.command([0x28, 0, 0, 0, 0, 0, 0, 0, 64, 0], { read: data.length });
  assert.ok(rd.data.equals(data));
  // A bad data digest is answered with a Reject (reason 0x02) and the session goes on.
  const h = Buffer.alloc(48);
  h[0] = 0x40;
  h[1] = 0x80;
  h.writeUInt32BE(999, 16);
  h.writeUInt32BE(0xffffffff, 20);
  h.writeUInt32BE(i.cmdSN, 24);
  i.dataDigest = false;
  i.send(h, Buffer.from('ping'));
  i.raw(Buffer.from([1, 2, 3, 4]));
  i.dataDigest = true;
  const rej = await i.next((p) => p.opcode === 0x3f);
  assert.equal(rej.bhs[2], 0x02);
  const again = await i.command([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { read: 512 });
  assert.ok(again.data.equals(data.subarray(0, 512)));
  assert.equal(await i.logout(), 0);
  i.close();
});

test('raw CHAP: a reflected challenge and a wrong response fail with 0x0201 (authentication); no ACL is 0x0202 (authorization)', async () => {
  const i = await RawInitiator.connect(d.port);
  await i.loginPdu(0x00, { InitiatorName: INIT, SessionType: 'Normal', TargetName: IQN, AuthMethod: 'CHAP' });
  let r = await i.loginPdu(0x00, { CHAP_A: '5' });
  const c = r.keys.get('CHAP_C')!;
  const id = Number(r.keys.get('CHAP_I'));
  const resp = createHash('md5').update(Buffer.from([id])).update('alice-secret-1').update(Buffer.from(c.slice(2), 'hex')).digest('hex');
  r = await i.loginPdu(0x81, { CHAP_N: 'alice', CHAP_R: '0x' + resp, CHAP_I: '1', CHAP_C: c });
  assert.equal(r.status, 0x0201);
  assert.ok(await i.waitClosed());
  const j = await RawInitiator.connect(d.port);
  await j.loginPdu(0x00, { InitiatorName: INIT, SessionType: 'Normal', TargetName: IQN, AuthMethod: 'CHAP' });
  await j.loginPdu(0x00, { CHAP_A: '5' });
  r = await j.loginPdu(0x81, { CHAP_N: 'alice', CHAP_R: '0x' + '00'.repeat(16) });
  assert.equal(r.status, 0x0201);
  j.close();
  // An initiator without an ACL on a TPG without demo mode: authorization failure, before any CHAP.
  const k = await RawInitiator.connect(d.port);
  r = await k.loginPdu(0x00, { InitiatorName: 'iqn.2026-11.org.tsio:mallory', SessionType: 'Normal', TargetName: IQN, AuthMethod: 'CHAP' });
  assert.equal(r.status, 0x0202);
  assert.ok(await k.waitClosed());
});
