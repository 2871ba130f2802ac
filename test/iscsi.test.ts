// The iSCSI fabric through a real tsiod: exact PDUs from a raw-socket
// initiator, and libiscsi's own tools as clients.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { RawInitiator, simpleConfig } from './util/iscsi-initiator';
import { startTsiod, type Daemon } from './util/tsiod';

const IQN = 'iqn.2026-11.org.tsio:test';
let d: Daemon;

before(async () => {
  d = await startTsiod(simpleConfig({ iqn: IQN, v6: true }));
});
after(async () => {
  assert.equal(await d.stop(), 0, 'tsiod exits cleanly on SIGTERM');
});

function tool(cmd: string, args: string[]): { status: number | null; out: string } {
  const p = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (p.error) throw new Error(`${cmd} not runnable (scripts/install-deps --test installs libiscsi-bin): ${p.error.message}`);
  return { status: p.status, out: p.stdout + p.stderr };
}

const readCdb = (op: number, lba: number, blocks: number): number[] => [op, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];

test('discovery: SendTargets=All lists the target with both portals, IPv6 in brackets', async () => {
  const i = await RawInitiator.connect(d.port);
  const keys = await i.login(undefined);
  assert.equal(keys.get('HeaderDigest'), 'None');
  const r = await i.textRequest('SendTargets=All\0', 77);
  const text = r.data.toString().split('\0').filter(Boolean);
  assert.deepEqual(text, [`TargetName=${IQN}`, `TargetAddress=127.0.0.1:${d.port},1`, `TargetAddress=[::1]:${d.port},1`]);
  // A SCSI command in a discovery session is refused with a Reject.
  void i.command([0x12, 0, 0, 0, 36, 0], { read: 36 }).catch(() => {});
  const rej = await i.next((p) => p.opcode === 0x3f);
  assert.equal(rej.bhs[2], 0x04, 'protocol error');
  assert.equal(rej.data[32], 0x12, 'the Reject carries the refused header');
  assert.equal(await i.logout(), 0);
  i.close();
});

test('login: unknown target is 0x0203 (not found), unknown keys NotUnderstood', async () => {
  let i = await RawInitiator.connect(d.port);
  await assert.rejects(i.login('iqn.2026-11.org.tsio:nope'), (e: Error & { status?: number }) => e.status === 0x0203);
  assert.ok(await i.waitClosed(), 'the target closes a refused login');
  i = await RawInitiator.connect(d.port);
  const keys = await i.login(IQN, { 'X-com.example.Thing': '1', MaxBurstLength: '100000', ErrorRecoveryLevel: '2', InitialR2T: 'No', ImmediateData: 'Yes', FirstBurstLength: '9999999999' });
  assert.equal(keys.get('X-com.example.Thing'), 'NotUnderstood');
  assert.equal(keys.get('MaxBurstLength'), '100000', 'min() of ours and theirs');
  assert.equal(keys.get('ErrorRecoveryLevel'), '0');
  assert.equal(keys.get('InitialR2T'), 'Yes', 'OR: our Yes wins');
  assert.equal(keys.get('FirstBurstLength'), 'Reject', 'out of range');
  assert.equal(keys.get('TargetPortalGroupTag'), undefined, 'TPGT comes in the first response, not the last');
  assert.equal(await i.logout(), 0);
  i.close();
});

test('full feature phase: INQUIRY with underflow, WRITE with immediate data and R2Ts, READ back exact', async () => {
  const i = await RawInitiator.connect(d.port);
  await i.login(IQN, { MaxBurstLength: '65536', FirstBurstLength: '16384', ImmediateData: 'Yes' });
  const inq = await i.command([0x12, 0, 0, 0x01, 0, 0], { read: 256 });
  const ua = await i.command([0, 0, 0, 0, 0, 0]);
  assert.equal(ua.status, 2, 'a new nexus reports its power-on unit attention');
  assert.equal(ua.sense[12], 0x29);
  assert.equal(inq.status, 0);
  assert.ok(inq.flags & 0x02, 'underflow flagged');
  assert.equal(inq.residual, 256 - inq.data.length);
  const data = Buffer.alloc(300 * 512);
  for (let k = 0; k < data.length; k++) data[k] = (k * 7 + (k >> 9)) & 0xff;
  const w = await i.command([0x2a, 0, 0, 0, 0, 8, 0, 300 >> 8, 300 & 0xff, 0], { write: data, immediate: 8192 });
  assert.equal(w.status, 0, `WRITE status; sense ${w.sense.toString('hex')}`);
  assert.ok(w.r2ts >= 3, `R2Ts solicited the rest in bursts (${w.r2ts})`);
  const r = await i.command(readCdb(0x28, 8, 300), { read: data.length });
  assert.equal(r.status, 0);
  assert.ok(r.data.equals(data), 'data read back is what was written');
  // Out of range: CHECK CONDITION with sense in a SCSI Response.
  const bad = await i.command(readCdb(0x28, 0x7fffffff, 1), { read: 512 });
  assert.equal(bad.status, 2);
  assert.equal(bad.sense[2] & 0x0f, 5);
  assert.equal(await i.logout(), 0);
  i.close();
});

test('SCSI Command ATTR: untagged, SIMPLE, ORDERED and HEAD OF QUEUE are served; ACA is refused (NormACA 0)', async () => {
  const i = await RawInitiator.connect(d.port);
  await i.login(IQN);
  const inquiry = [0x12, 0, 0, 0, 36, 0];
  for (const attr of [0, 1, 2, 3]) assert.equal((await i.command(inquiry, { read: 36, attr })).status, 0, `ATTR ${attr}`);
  const aca = await i.command(inquiry, { read: 36, attr: 4 });
  assert.deepEqual([aca.status, aca.sense[2] & 0x0f, aca.sense[12]], [2, 5, 0x24], 'ACA: INVALID FIELD IN CDB');
  i.close();
});

test('NOP-Out gets its NOP-In with the ping data echoed', async () => {
  const i = await RawInitiator.connect(d.port);
  await i.login(IQN);
  const r = await i.nop(Buffer.from('hello'), 4242);
  assert.equal(r.itt, 4242);
  assert.equal(r.data.toString(), 'hello');
  i.close();
});

test('libiscsi tools: iscsi-ls discovers, iscsi-inq inquires, over IPv4 and IPv6', () => {
  let r = tool('iscsi-ls', [`iscsi://127.0.0.1:${d.port}`]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, new RegExp(`Target:${IQN}`));
  r = tool('iscsi-inq', [`iscsi://127.0.0.1:${d.port}/${IQN}/0`]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /Peripheral Device Type:DIRECT_ACCESS/);
  r = tool('iscsi-inq', ['-e', '1', '-c', '0x80', `iscsi://[::1]:${d.port}/${IQN}/0`]);
  assert.equal(r.status, 0, r.out);
});

test('256 concurrent sessions log in, each does I/O, all log out', async () => {
  const n = 256;
  const inits = await Promise.all(
    Array.from({ length: n }, async (_, k) => {
      const i = await RawInitiator.connect(d.port);
      i.isid = Buffer.from([0x80, 0, 0, 0, k >> 8, k & 0xff]);
      await i.login(IQN, {}, `iqn.2026-11.org.tsio:many-${k}`);
      return i;
    }),
  );
  await Promise.all(
    inits.map(async (i, k) => {
      const block = Buffer.alloc(512, k & 0xff);
      await i.command([0, 0, 0, 0, 0, 0]); // takes the power-on unit attention
      assert.equal((await i.command([0x2a, 0, 0, 0, (k >> 8) & 0xff, k & 0xff, 0, 0, 1, 0], { write: block, immediate: 512 })).status, 0);
      const r = await i.command(readCdb(0x28, k, 1), { read: 512 });
      assert.ok(r.data.equals(block));
    }),
  );
  const codes = await Promise.all(inits.map((i) => i.logout()));
  assert.ok(codes.every((c) => c === 0));
  for (const i of inits) i.close();
});
