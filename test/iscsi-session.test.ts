// iSCSI session behaviour over time: several connections per session
// (MC/S), session reinstatement by ISID, the target's NOP-In pings of idle
// initiators and their timeout, the CmdSN window, long text responses, and
// the Async logout request tsiod sends on shutdown; PDUs behind solicited data
// that never comes, and dataout_timeout at ERL 0 and 1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { RawInitiator } from './util/iscsi-initiator';
import { startTsiod, type Daemon } from './util/tsiod';

const IQN = 'iqn.2026-11.org.tsio:sessions';
const PINGED = 'iqn.2026-11.org.tsio:pinged';
const STALLED = 'iqn.2026-11.org.tsio:stalled';
const MANY = 40;
let d: Daemon;

const config = (port: number) => `storage_objects:
  - { name: ram0, plugin: rd_mcp, size: 16MiB }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false, default_cmdsn_depth: 4 }
        parameters: { MaxConnections: 2 }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]
        node_acls:
          - node_wwn: ${PINGED}
            attributes: { nopin_timeout: 3, nopin_response_timeout: 3 }
            mapped_luns: [ { index: 0, tpg_lun: 0 } ]
          - node_wwn: ${STALLED}
            attributes: { dataout_timeout: 2, dataout_timeout_retries: 2 }
            mapped_luns: [ { index: 0, tpg_lun: 0 } ]
  - fabric: iscsi
    wwn: ${IQN}-erl1
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: false, authentication: false, demo_mode_write_protect: false, default_erl: 1 }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]
        node_acls:
          - node_wwn: ${STALLED}
            attributes: { dataout_timeout: 2, dataout_timeout_retries: 2 }
            mapped_luns: [ { index: 0, tpg_lun: 0 } ]
${Array.from({ length: MANY }, (_, k) => `  - fabric: iscsi
    wwn: ${IQN}-${String(k).padStart(3, '0')}-with-a-rather-long-name-to-fill-text-segments
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]
`).join('')}`;

before(async () => {
  d = await startTsiod(config);
});
after(async () => {
  assert.equal(await d.stop(), 0);
});

test('MC/S: a second connection joins the session by TSIH; CmdSN is shared, status per connection', async () => {
  const a = await RawInitiator.connect(d.port);
  const keys = await a.login(IQN, { MaxConnections: '4' });
  assert.equal(keys.get('MaxConnections'), '2');
  assert.ok(a.tsih > 0);
  const b = await RawInitiator.connect(d.port);
  b.isid = a.isid;
  b.tsih = a.tsih;
  b.cid = 1;
  b.cmdSN = a.cmdSN;
  await b.login(IQN);
  assert.equal(b.tsih, a.tsih, 'same session');
  await a.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
  b.cmdSN = a.cmdSN;
  const block = Buffer.alloc(512, 0x3c);
  const w = await b.command([0x2a, 0, 0, 0, 0, 9, 0, 0, 1, 0], { write: block, immediate: 512 });
  assert.equal(w.status, 0);
  a.cmdSN = b.cmdSN;
  const r = await a.command([0x28, 0, 0, 0, 0, 9, 0, 0, 1, 0], { read: 512 });
  assert.ok(r.data.equals(block), 'a write on one connection is read on the other');
  // A third connection is one too many.
  const c = await RawInitiator.connect(d.port);
  c.isid = a.isid;
  c.tsih = a.tsih;
  c.cid = 2;
  await assert.rejects(c.login(IQN), (e: Error & { status?: number }) => e.status === 0x0206); // Too many connections
  c.close();
  // Logging out one connection leaves the other working.
  assert.equal(await b.logout(1, 1), 0);
  assert.ok(await b.waitClosed());
  a.cmdSN = b.cmdSN;
  assert.equal((await a.command([0, 0, 0, 0, 0, 0])).status, 0);
  assert.equal(await a.logout(), 0);
  a.close();
});

/** Sends WRITE(10) of `blocks` at LBA 0 (no immediate data); returns its ITT and CmdSN. */
function startWrite(i: RawInitiator, blocks: number): { itt: number; cmdSN: number } {
  const c = i.commandHeader([0x2a, 0, 0, 0, 0, 0, 0, blocks >> 8, blocks & 0xff, 0], { write: blocks * 512 });
  i.send(c.h);
  return c;
}

test('solicited data that stops coming holds back nothing behind it: NOP-Out, ABORT TASK, then more I/O', async () => {
  // tsiod sleeps until the data its R2Ts asked for is queued (SO_RCVLOWAT); the initiator here sends a sliver
  // of the burst and then other PDUs, which must be answered anyway.
  const i = await RawInitiator.connect(d.port);
  await i.login(IQN);
  await i.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
  const { itt, cmdSN: writeCmdSN } = startWrite(i, 2048);
  const r2t = await i.next((p) => p.opcode === 0x31 && p.itt === itt);
  assert.ok(r2t.bhs.readUInt32BE(44) > 8192, 'the R2T asks for more than the sliver sent');
  i.sendDataOut(itt, r2t.bhs.readUInt32BE(20), Buffer.alloc(8192, 0x11), r2t.bhs.readUInt32BE(40), 8192, { final: false });
  const pong = await i.nop(Buffer.from('still served'));
  assert.equal(pong.data.toString(), 'still served');
  const tmf = Buffer.alloc(48);
  tmf[0] = 0x40 | 0x02;
  tmf[1] = 0x80 | 1; // ABORT TASK
  tmf.writeUInt32BE(0x7002, 16);
  tmf.writeUInt32BE(itt, 20);
  tmf.writeUInt32BE(i.cmdSN, 24);
  tmf.writeUInt32BE(i.expStatSN, 28);
  tmf.writeUInt32BE(writeCmdSN, 32);
  i.send(tmf);
  const rsp = await i.next((p) => p.opcode === 0x22);
  assert.equal(rsp.bhs[2], 0, 'ABORT TASK: function complete');
  const data = Buffer.alloc(256 << 10, 0x5a);
  const wr = await i.command([0x2a, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 0], { write: data });
  assert.equal(wr.status, 0);
  const rd = await i.command([0x28, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 0], { read: data.length });
  assert.ok(rd.data.equals(data), 'the session still moves data exactly');
  await i.logout();
  i.close();
});

test('dataout_timeout at ERL 0: a connection that stops sending solicited data is dropped; others go on', { timeout: 30_000 }, async () => {
  const other = await RawInitiator.connect(d.port);
  await other.login(IQN);
  await other.command([0, 0, 0, 0, 0, 0]);
  const i = await RawInitiator.connect(d.port);
  await i.login(IQN, {}, STALLED);
  await i.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
  const { itt } = startWrite(i, 2048);
  await i.next((p) => p.opcode === 0x31 && p.itt === itt);
  const t0 = Date.now();
  assert.ok(await i.waitClosed(10_000), 'the stalled connection is dropped');
  assert.ok(Date.now() - t0 >= 1500, `not before dataout_timeout (dropped after ${Date.now() - t0} ms)`);
  const data = Buffer.alloc(64 << 10, 0x6b);
  assert.equal((await other.command([0x2a, 0, 0, 0, 0, 0x10, 0, 0, 0x80, 0], { write: data })).status, 0);
  const rd = await other.command([0x28, 0, 0, 0, 0, 0x10, 0, 0, 0x80, 0], { read: data.length });
  assert.ok(rd.data.equals(data), 'the other session still moves data exactly');
  await other.logout();
  other.close();
});

test('dataout_timeout at ERL 1: a recovery R2T asks again for what is missing; answered, the write completes', { timeout: 30_000 }, async () => {
  const i = await RawInitiator.connect(d.port);
  const keys = await i.login(`${IQN}-erl1`, { ErrorRecoveryLevel: '1' }, STALLED);
  assert.equal(keys.get('ErrorRecoveryLevel'), '1', "the TPG's default_erl is offered");
  await i.command([0, 0, 0, 0, 0, 0]);
  const data = Buffer.alloc(512 << 10);
  for (let k = 0; k < data.length; k += 4) data.writeUInt32BE(k * 2654435761 >>> 0, k);
  const { itt } = startWrite(i, data.length / 512);
  const first = await i.next((p) => p.opcode === 0x31 && p.itt === itt);
  assert.equal(first.bhs.readUInt32BE(40), 0);
  // Only the first 8 KiB of the burst, not final: the rest never comes.
  i.sendDataOut(itt, first.bhs.readUInt32BE(20), data, 0, 8192, { final: false });
  const again = await i.next((p) => p.opcode === 0x31 && p.itt === itt, 10_000);
  assert.equal(again.bhs.readUInt32BE(40), 8192, 'the recovery R2T starts where the data stopped');
  assert.notEqual(again.bhs.readUInt32BE(20), first.bhs.readUInt32BE(20), 'with a new target transfer tag');
  i.answerR2t(again.bhs, data);
  for (;;) {
    const p = await i.next((x) => x.itt === itt);
    if (p.opcode === 0x31) {
      i.answerR2t(p.bhs, data);
      continue;
    }
    assert.equal(p.opcode, 0x21);
    assert.equal(p.bhs[3], 0, 'GOOD');
    i.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
    break;
  }
  const rd = await i.command([0x28, 0, 0, 0, 0, 0, 0, 0x04, 0x00, 0], { read: data.length });
  assert.ok(rd.data.equals(data), 'what was written after the recovery R2T reads back exactly');
  await i.logout();
  i.close();
});

test('session reinstatement: a new login with the same ISID ends the old session', async () => {
  const a = await RawInitiator.connect(d.port);
  await a.login(IQN);
  const b = await RawInitiator.connect(d.port);
  b.isid = a.isid;
  await b.login(IQN);
  assert.ok(await a.waitClosed(), 'the old connection is closed');
  assert.equal((await b.nop(Buffer.from('x'))).data.toString(), 'x');
  b.close();
});

test('the CmdSN window is the TPG depth; commands past MaxCmdSN are ignored', async () => {
  const i = await RawInitiator.connect(d.port);
  await i.login(IQN);
  const p = await i.nop(Buffer.alloc(0));
  const exp = p.bhs.readUInt32BE(28);
  const max = p.bhs.readUInt32BE(32);
  assert.equal(max - exp + 1, 4, 'window of default_cmdsn_depth commands');
  // CmdSN beyond MaxCmdSN: silently dropped; the next in-window one is answered.
  const h = Buffer.alloc(48);
  h[0] = 0x01;
  h[1] = 0x80;
  h.writeUInt32BE(555, 16);
  h.writeUInt32BE(max + 1, 24);
  i.send(h);
  const r = await i.command([0, 0, 0, 0, 0, 0]);
  assert.equal(r.status, 2, 'the unit attention, so the in-window command ran');
  assert.equal(i.pdus.filter((x) => x.itt === 555).length, 0, 'nothing for the out-of-window command');
  i.close();
});

test('a SendTargets answer longer than one PDU continues with the target transfer tag', async () => {
  const i = await RawInitiator.connect(d.port);
  await i.login(undefined, { MaxRecvDataSegmentLength: '512' });
  const send = (ttt: number, text: string) => {
    const h = Buffer.alloc(48);
    h[0] = 0x04;
    h[1] = 0x80;
    h.writeUInt32BE(31, 16);
    h.writeUInt32BE(ttt, 20);
    h.writeUInt32BE(i.cmdSN++, 24);
    i.send(h, Buffer.from(text));
  };
  send(0xffffffff, 'SendTargets=All\0');
  const parts: Buffer[] = [];
  for (;;) {
    const r = await i.next((p) => p.opcode === 0x24);
    assert.ok(r.data.length <= 512, 'each piece fits the initiator MaxRecvDataSegmentLength');
    parts.push(r.data);
    if (r.flags & 0x80) break;
    assert.equal(r.flags & 0x40, 0x40, 'C bit while more follows');
    send(r.bhs.readUInt32BE(20), '');
  }
  const names = Buffer.concat(parts).toString().split('\0').filter((s) => s.startsWith('TargetName='));
  assert.equal(names.length, MANY + 1);
  i.close();
});

test('an idle initiator is pinged with NOP-In; one that never answers is dropped', { timeout: 30_000 }, async () => {
  const i = await RawInitiator.connect(d.port);
  i.isid = Buffer.from([0x80, 0, 0, 0, 9, 9]);
  await i.login(IQN, {}, PINGED);
  const t0 = Date.now();
  const ping = await i.next((p) => p.opcode === 0x20, 10_000);
  assert.equal(ping.itt, 0xffffffff);
  assert.notEqual(ping.bhs.readUInt32BE(20), 0xffffffff, 'a TTT the initiator must echo');
  assert.ok(Date.now() - t0 >= 2000, 'only after nopin_timeout of idleness');
  // Answered: the connection lives on and is pinged again later.
  const h = Buffer.alloc(48);
  h[0] = 0x40;
  h[1] = 0x80;
  h.writeUInt32BE(0xffffffff, 16);
  h.writeUInt32BE(ping.bhs.readUInt32BE(20), 20);
  h.writeUInt32BE(i.cmdSN, 24);
  i.send(h);
  const again = await i.next((p) => p.opcode === 0x20, 10_000);
  assert.ok(again);
  // Not answered: dropped after nopin_response_timeout.
  assert.ok(await i.waitClosed(10_000), 'the silent initiator is disconnected');
});

test('on SIGTERM tsiod asks logged-in initiators to log out (Async Message), then exits', { timeout: 30_000 }, async () => {
  const own = await startTsiod(config);
  const i = await RawInitiator.connect(own.port);
  await i.login(IQN);
  const exited = own.stop();
  const a = await i.next((p) => p.opcode === 0x32, 5000);
  assert.equal(a.bhs[36], 1, 'AsyncEvent 1: target requests logout');
  assert.ok(a.bhs.readUInt16BE(42) > 0, 'with time to do it (Parameter3)');
  assert.equal(await i.logout(), 0);
  assert.equal(await exited, 0);
  i.close();
});
