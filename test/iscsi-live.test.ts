// Live reconfiguration reaches iSCSI connections: when the control API takes
// an initiator's access away (ACL deleted, demo mode turned off, TPG disabled,
// target deleted) its session asks it to log out (Async Message, AsyncEvent 1)
// and drops its connections after a short grace; the re-login is refused with
// the RFC 7143 login status. And at ERL 0 one failed connection of an MC/S
// session ends the whole session.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ControlClient } from '../cli/client';
import { startTsiod, type Daemon } from './util/tsiod';
import { RawInitiator, type Pdu } from './util/iscsi-initiator';

const IQN = 'iqn.2026-11.org.tsio:live-acl';
const DEMO = 'iqn.2026-11.org.tsio:live-demo';
const INI_A = 'iqn.2026-11.org.tsio:ini-a';
const INI_B = 'iqn.2026-11.org.tsio:ini-b';
const INI_C = 'iqn.2026-11.org.tsio:ini-c';
/** The grace the target gives (2 s) plus slack for a loaded CI machine. */
const DROP_BOUND_MS = 5000;

let d: Daemon | undefined;
let c: ControlClient;
let port: number;
const open: RawInitiator[] = [];

before(async () => {
  const acl = (n: string) => `          - { node_wwn: ${n}, mapped_luns: [ { index: 0, tpg_lun: 0 } ] }`;
  d = await startTsiod((port) =>
    [
      'storage_objects:',
      '  - { name: ram0, plugin: rd_mcp, size: 8MiB }',
      'targets:',
      '  - fabric: iscsi',
      `    wwn: ${IQN}`,
      '    tpgs:',
      '      - tag: 1',
      '        attributes: { generate_node_acls: false, authentication: false }',
      '        parameters: { MaxConnections: 2 }',
      `        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]`,
      '        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]',
      '        node_acls:',
      acl(INI_A),
      acl(INI_B),
      acl(INI_C),
      '  - fabric: iscsi',
      `    wwn: ${DEMO}`,
      '    tpgs:',
      '      - tag: 1',
      '        attributes: { generate_node_acls: true, authentication: false }',
      `        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]`,
      '        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]',
      '',
    ].join('\n'),
  );
  port = d.port;
  c = await ControlClient.connect(d.sock);
});

after(async () => {
  for (const i of open) i.close();
  c?.close();
  await d?.stop();
});

async function login(target: string, initiator: string, extra: Record<string, string> = {}): Promise<RawInitiator> {
  const i = await RawInitiator.connect(port);
  open.push(i);
  i.isid = Buffer.from([0x80, 0, 0, 0, 0x11, open.length]);
  await i.login(target, extra, initiator);
  return i;
}

/** The login status a new login of this initiator gets. */
async function loginStatus(target: string, initiator: string): Promise<number> {
  const i = await RawInitiator.connect(port);
  open.push(i);
  try {
    await i.login(target, {}, initiator);
    return 0;
  } catch (e) {
    return (e as { status?: number }).status ?? -1;
  }
}

/** Waits for the Async Message asking for logout; returns it and how long it took. */
async function logoutRequest(i: RawInitiator, ms = 2000): Promise<Pdu> {
  const p = await i.next((x) => x.opcode === 0x32, ms);
  assert.equal(p.bhs[36], 1, 'AsyncEvent 1: target requests logout');
  assert.equal(p.bhs.readUInt16BE(42), 2, 'Parameter3: seconds to log out in');
  return p;
}

async function sessionsOf(initiator: string): Promise<unknown[]> {
  const all = await c.call<{ initiator: string }[]>('sessions.list');
  return all.filter((s) => s.initiator === initiator);
}

test('ACL deleted: logout requested, connection dropped after the grace, re-login is an authorization failure', async () => {
  const i = await login(IQN, INI_A);
  assert.equal((await i.nop(Buffer.from('up'))).data.toString(), 'up');
  assert.equal((await sessionsOf(INI_A)).length, 1);
  const t0 = Date.now();
  await c.call('acls.delete', { wwn: IQN, tag: 1, node_wwn: INI_A });
  await logoutRequest(i);
  // The initiator does not log out: the target drops it.
  assert.ok(await i.waitClosed(DROP_BOUND_MS), 'connection dropped');
  assert.ok(Date.now() - t0 >= 1500, 'not before the grace it announced');
  assert.deepEqual(await sessionsOf(INI_A), []);
  assert.equal(await loginStatus(IQN, INI_A), 0x0202, 'Authorization failure (RFC 7143 11.13.5)');
});

test('ACL deleted: an initiator that logs out when asked ends cleanly', async () => {
  const i = await login(IQN, INI_B);
  await c.call('acls.delete', { wwn: IQN, tag: 1, node_wwn: INI_B });
  await logoutRequest(i);
  const h = Buffer.alloc(48);
  h[0] = 0x46;
  h[1] = 0x80; // close the session
  h.writeUInt32BE(0x99, 16);
  h.writeUInt32BE(i.cmdSN++, 24);
  h.writeUInt32BE(i.expStatSN, 28);
  i.send(h);
  const r = await i.next((x) => x.opcode === 0x26);
  assert.equal(r.bhs[2], 0, 'logout response: success');
  assert.equal(r.bhs.readUInt16BE(42), 0, 'Time2Retain 0: nothing is kept for a reconnection');
  assert.ok(await i.waitClosed(2000));
  assert.deepEqual(await sessionsOf(INI_B), []);
  assert.equal(await loginStatus(IQN, INI_B), 0x0202);
});

test('demo mode turned off, TPG disabled, target deleted: sessions dropped, logins refused', async () => {
  const ini = 'iqn.2026-11.org.tsio:demo-user';
  let i = await login(DEMO, ini);
  await c.call('tpgs.set', { wwn: DEMO, tag: 1, attributes: { generate_node_acls: false } });
  await logoutRequest(i);
  assert.ok(await i.waitClosed(DROP_BOUND_MS));
  assert.equal(await loginStatus(DEMO, ini), 0x0202, 'no ACL and no demo mode: authorization failure');

  await c.call('tpgs.set', { wwn: DEMO, tag: 1, attributes: { generate_node_acls: true } });
  i = await login(DEMO, ini);
  await c.call('tpgs.set', { wwn: DEMO, tag: 1, enable: false });
  await logoutRequest(i);
  assert.ok(await i.waitClosed(DROP_BOUND_MS));
  assert.equal(await loginStatus(DEMO, ini), 0x0301, 'TPG disabled: service unavailable');

  await c.call('tpgs.set', { wwn: DEMO, tag: 1, enable: true });
  i = await login(DEMO, ini);
  const del = c.call('targets.delete', { wwn: DEMO });
  await logoutRequest(i);
  assert.ok(await i.waitClosed(DROP_BOUND_MS));
  await del;
  assert.equal(await loginStatus(DEMO, ini), 0x0203, 'target gone: not found');
  assert.deepEqual(await sessionsOf(ini), []);
});

test('MC/S at ERL 0: one connection failing ends the session and closes its other connection', async () => {
  const a = await login(IQN, INI_C, { MaxConnections: '2' });
  const b = await RawInitiator.connect(port);
  open.push(b);
  b.isid = a.isid;
  b.tsih = a.tsih;
  b.cid = 1;
  b.cmdSN = a.cmdSN;
  await b.login(IQN, {}, INI_C);
  assert.equal(b.tsih, a.tsih, 'one session, two connections');
  assert.equal((await sessionsOf(INI_C)).length, 1);
  await a.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
  b.cmdSN = a.cmdSN;
  // A write on b that waits for its data (R2T answered never): a task open on the connection that fails.
  const h = Buffer.alloc(48);
  h[0] = 0x01;
  h[1] = 0x80 | 0x20; // F, W
  h.writeUInt32BE(0x77, 16);
  h.writeUInt32BE(65536, 20);
  h.writeUInt32BE(b.cmdSN++, 24);
  h.writeUInt32BE(b.expStatSN, 28);
  Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 128, 0]).copy(h, 32);
  b.send(h);
  const r2t = await b.next((p) => p.opcode === 0x31);
  assert.equal(r2t.itt, 0x77);
  b.close(); // the TCP connection fails (no logout)
  assert.ok(await a.waitClosed(3000), 'the other connection of the session is closed');
  assert.deepEqual(await sessionsOf(INI_C), [], 'the nexus is gone, its tasks with it');
  // The initiator may log in again (ACL intact): a new session works.
  const n = await login(IQN, INI_C);
  assert.equal((await n.nop(Buffer.from('again'))).data.toString(), 'again');
  assert.equal(await n.logout(), 0);
});
