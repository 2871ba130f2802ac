// Defects fuzzing found through iSCSI, each reproduced as it was found: on a
// 512-byte-block rd_mcp LUN through a real tsiod, the session kept.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { RawInitiator, simpleConfig } from './util/iscsi-initiator';
import { startTsiod, type Daemon } from './util/tsiod';
import { decodeSense } from '../src/core/sense';

const IQN = 'iqn.2026-12.org.tsio:fuzz-defects';
let d: Daemon;

before(async () => {
  d = await startTsiod(simpleConfig({ iqn: IQN }));
});
after(async () => {
  assert.equal(await d.stop(), 0, 'tsiod exits cleanly on SIGTERM');
});

async function session(): Promise<RawInitiator> {
  const i = await RawInitiator.connect(d.port);
  await i.login(IQN, { ImmediateData: 'Yes' });
  // The power-on unit attention.
  await i.command([0, 0, 0, 0, 0, 0]);
  return i;
}

/** The session still serves commands: the connection was kept. */
async function stillServes(i: RawInitiator): Promise<void> {
  const r = await i.command([0x12, 0, 0, 0, 36, 0], { read: 36 });
  assert.equal(r.status, 0, 'INQUIRY after the command');
  assert.equal(r.data.length, 36);
}

test('READ(16) of 0xFFFFFFFF blocks with EDTL 0: CHECK CONDITION with a saturated overflow residual, connection kept', async () => {
  const i = await session();
  try {
    const cdb = [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0];
    const r = await i.command(cdb);
    assert.equal(r.status, 0x02, 'CHECK CONDITION');
    const s = decodeSense(r.sense);
    assert.deepEqual([s.key, s.asc], [0x05, 0x21], 'ILLEGAL REQUEST, LBA OUT OF RANGE');
    // 0xFFFFFFFF * 512 bytes do not fit the 32-bit Residual Count: saturated, with O (RFC 7143 11.4.5).
    assert.equal(r.flags & 0x04, 0x04, 'O bit (overflow)');
    assert.equal(r.residual, 0xffffffff, 'residual saturated');
    await stillServes(i);
  } finally {
    i.close();
  }
});

test('UNMAP with parameter list length 24 and 8 bytes sent: ILLEGAL REQUEST PARAMETER LIST LENGTH ERROR, connection kept', async () => {
  const i = await session();
  try {
    const header = Buffer.from([0, 22, 0, 16, 0, 0, 0, 0]);
    const r = await i.command([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], { write: header, immediate: 8 });
    assert.equal(r.status, 0x02, 'CHECK CONDITION');
    const s = decodeSense(r.sense);
    assert.deepEqual([s.key, s.asc, s.ascq], [0x05, 0x1a, 0x00], 'ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR');
    await stillServes(i);
  } finally {
    i.close();
  }
});
