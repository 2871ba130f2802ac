// Hostile input: thousands of malformed, truncated, oversized and
// out-of-order PDUs from raw sockets, while a healthy session writes and
// verifies data on its own LUN. The healthy data stays exact and tsiod stays
// up. Deterministic (seeded) and bounded in count and time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawInitiator, textOf } from './util/iscsi-initiator';
import { startTsiod } from './util/tsiod';

const IQN = 'iqn.2026-11.org.tsio:fuzz';
const GOOD = 'iqn.2026-11.org.tsio:healthy';
const BAD = 'iqn.2026-11.org.tsio:hostile';

/** xorshift32: the same hostile traffic on every run. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return {
    int: (n: number) => next() % n,
    bytes: (n: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = next() & 0xff;
      return b;
    },
  };
}

function bhs(op: number, flags: number, fill: (h: Buffer) => void): Buffer {
  const h = Buffer.alloc(48);
  h[0] = op;
  h[1] = flags;
  fill(h);
  return h;
}

test('thousands of hostile PDUs leave tsiod up and a healthy session exact', { timeout: 180_000 }, async () => {
  const d = await startTsiod((port) => `storage_objects:
  - { name: good, plugin: rd_mcp, size: 16MiB }
  - { name: bad, plugin: rd_mcp, size: 16MiB }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { authentication: false }
        parameters: { MaxRecvDataSegmentLength: 8192, FirstBurstLength: 16384, MaxBurstLength: 65536 }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns:
          - { index: 0, storage_object: /backstores/rd_mcp/good }
          - { index: 1, storage_object: /backstores/rd_mcp/bad }
        node_acls:
          - { node_wwn: ${GOOD}, mapped_luns: [ { index: 0, tpg_lun: 0 } ] }
          - { node_wwn: ${BAD}, mapped_luns: [ { index: 0, tpg_lun: 1 } ] }
`);
  const r = rng(0x15c51);
  let sent = 0;
  let stop = false;
  try {
    // The healthy session: writes patterns with immediate data and R2Ts, reads each back.
    const good = await RawInitiator.connect(d.port);
    good.isid = Buffer.from([0x80, 0, 0, 0, 0, 1]);
    await good.login(IQN, { ImmediateData: 'Yes' }, GOOD);
    await good.command([0, 0, 0, 0, 0, 0]);
    let verified = 0;
    const healthy = (async () => {
      let round = 0;
      while (!stop) {
        const lba = (round * 37) % 4000;
        const blocks = 1 + (round % 48);
        const data = Buffer.alloc(blocks * 512, (round * 7 + 1) & 0xff);
        data.writeUInt32BE(round, 0);
        const w = await good.command([0x2a, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, 0, blocks, 0], { write: data, immediate: 4096 });
        assert.equal(w.status, 0, `healthy WRITE: ${w.sense.toString('hex')}`);
        const rd = await good.command([0x28, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, 0, blocks, 0], { read: data.length });
        assert.equal(rd.status, 0);
        assert.ok(rd.data.equals(data), `healthy data exact in round ${round}`);
        verified++;
        round++;
      }
    })();

    const hostile = async (k: number): Promise<void> => {
      const c = await RawInitiator.connect(d.port);
      c.isid = Buffer.from([0x80, 1, 0, 0, k >> 8, k & 0xff]);
      const send = (h: Buffer, data?: Buffer) => {
        if (!c.closed) c.send(h, data);
        sent++;
      };
      try {
        const kind = k % 6;
        if (kind === 0) {
          // Garbage before login, of any length.
          c.raw(r.bytes(1 + r.int(300)));
          sent++;
          return;
        }
        if (kind === 1) {
          // Logins with keys out of range, malformed text, oversized segments, wrong stages.
          const variants: Buffer[] = [
            textOf({ InitiatorName: BAD, TargetName: IQN, SessionType: 'Normal', MaxRecvDataSegmentLength: '1', MaxBurstLength: '99999999999', HeaderDigest: 'MD5' }),
            Buffer.from('no-equals-sign\0=\0InitiatorName\0'),
            r.bytes(200),
            textOf({ InitiatorName: BAD, SessionType: 'Bogus' }),
            textOf({ InitiatorName: BAD, TargetName: IQN, InitiatorName2: 'x'.repeat(7000) }),
          ];
          const h = bhs(0x43, [0x81, 0x87, 0x8f, 0xc1, 0x00][k % 5], (x) => {
            x.writeUInt32BE(1, 24);
            c.isid.copy(x, 8);
          });
          send(h, variants[r.int(variants.length)]);
          if (r.int(2)) {
            const big = bhs(0x43, 0x81, () => {});
            big.writeUIntBE(0xffffff, 5, 3);
            c.raw(big); // claims 16 MiB and never sends it
            sent++;
          }
          await c.waitClosed(300);
          return;
        }
        // Logged in, then hostile PDUs in full feature phase.
        await c.login(IQN, kind === 5 ? { HeaderDigest: 'CRC32C', DataDigest: 'CRC32C' } : {}, BAD);
        for (let n = 0; n < 60 && !c.closed; n++) {
          const choice = r.int(12);
          const itt = 1000 + n;
          switch (choice) {
            case 0: // unknown opcodes
              send(bhs([0x07, 0x11, 0x1f, 0x2a, 0x3e][r.int(5)], 0x80, (h) => h.writeUInt32BE(itt, 16)));
              break;
            case 1: // a data segment past MaxRecvDataSegmentLength
              send(bhs(0x40, 0x80, (h) => {
                h.writeUInt32BE(itt, 16);
                h.writeUInt32BE(0xffffffff, 20);
              }), r.bytes(8192 + 4 + r.int(20000)));
              break;
            case 2: // CmdSN outside the window
              send(bhs(0x01, 0x81, (h) => {
                h.writeUInt32BE(itt, 16);
                h.writeUInt32BE(c.cmdSN + 1000 + r.int(1 << 30), 24);
                h[32] = 0x00;
              }));
              break;
            case 3: // Data-Out for unknown tags
              send(bhs(0x05, 0x80, (h) => {
                h.writeUInt32BE(r.int(1 << 31), 16);
                h.writeUInt32BE(r.int(1 << 31), 20);
                h.writeUInt32BE(r.int(1 << 20), 40);
              }), r.bytes(512));
              break;
            case 4: // random CDBs on its own LUN (or others), any direction
              send(bhs(0x01, 0x80 | (r.int(4) << 5) | r.int(8), (h) => {
                h[9] = r.int(4);
                h.writeUInt32BE(itt, 16);
                h.writeUInt32BE(r.int(1 << 18), 20);
                h.writeUInt32BE(c.cmdSN++, 24);
                r.bytes(16).copy(h, 32);
              }), r.int(2) ? r.bytes(r.int(8192)) : undefined);
              break;
            case 5: // immediate data past FirstBurstLength, write without W bit
              send(bhs(0x01, 0x80 | 0x20, (h) => {
                h.writeUInt32BE(itt, 16);
                h.writeUInt32BE(100, 20);
                h.writeUInt32BE(c.cmdSN++, 24);
                h[32] = 0x2a;
                h[40] = 1;
              }), r.bytes(600));
              break;
            case 6: // TMFs with any function, any referenced task
              send(bhs(0x42, 0x80 | r.int(20), (h) => {
                h[9] = r.int(3);
                h.writeUInt32BE(itt, 16);
                h.writeUInt32BE(r.int(3000), 20);
                h.writeUInt32BE(c.cmdSN, 24);
              }));
              break;
            case 7: // text: garbage, continuation tags nobody issued
              send(bhs(0x04, r.int(2) ? 0x80 : 0x40, (h) => {
                h.writeUInt32BE(itt, 16);
                h.writeUInt32BE(r.int(2) ? 0xffffffff : r.int(1000), 20);
                h.writeUInt32BE(c.cmdSN++, 24);
              }), r.int(2) ? Buffer.from('SendTargets=All\0') : r.bytes(r.int(400)));
              break;
            case 8: // SNACK, logout with a bad reason, login in full feature phase
              send(bhs([0x10, 0x46, 0x43][r.int(3)], 0x80 | (r.int(2) ? 0x7f : 0), (h) => {
                h.writeUInt32BE(itt, 16);
                h.writeUInt32BE(c.cmdSN, 24);
              }));
              break;
            case 9: // bad digests (or garbage where a digest should be)
              c.raw(Buffer.concat([bhs(0x40, 0x80, (h) => {
                h.writeUInt32BE(itt, 16);
                h.writeUInt32BE(0xffffffff, 20);
                h.writeUIntBE(8, 5, 3);
              }), c.headerDigest ? r.bytes(4) : Buffer.alloc(0), r.bytes(8), c.dataDigest ? r.bytes(4) : Buffer.alloc(0)]));
              sent++;
              break;
            case 10: // a write that leaves its R2T unanswered, then one answered out of order
              send(bhs(0x01, 0xa1, (h) => {
                h.writeUInt32BE(itt, 16);
                h.writeUInt32BE(16384, 20);
                h.writeUInt32BE(c.cmdSN++, 24);
                h[32] = 0x2a;
                h[40] = 32;
              }));
              break;
            case 11: // truncated PDU, then the connection is dropped mid-header
              c.raw(bhs(0x01, 0x80, () => {}).subarray(0, 1 + r.int(47)));
              sent++;
              c.close();
              break;
          }
          if (n % 10 === 9) await new Promise((res) => setImmediate(res));
        }
      } catch {
        // The target may drop a hostile connection at any point: that is its right.
      } finally {
        c.close();
      }
    };

    const started = Date.now();
    const N = 480;
    for (let k = 0; k < N; k += 16) {
      await Promise.all(Array.from({ length: 16 }, (_, j) => hostile(k + j)));
      assert.equal(d.proc.exitCode, null, `tsiod still up after ${k + 16} hostile connections`);
    }
    stop = true;
    await healthy;
    console.log(`fuzz: ${sent} hostile PDUs over ${N} connections in ${Date.now() - started} ms; healthy session verified ${verified} write+read rounds`);
    assert.ok(sent >= 2000, `thousands of hostile PDUs (${sent})`);
    assert.ok(verified > 10, 'the healthy session kept doing I/O');
    // A fresh session still works.
    const after = await RawInitiator.connect(d.port);
    after.isid = Buffer.from([0x80, 0, 0, 0, 0, 2]);
    await after.login(IQN, {}, GOOD);
    assert.equal((await after.command([0x12, 0, 0, 0, 36, 0], { read: 36 })).status, 0);
    assert.equal(await after.logout(), 0);
    after.close();
    assert.equal(await good.logout(), 0);
    good.close();
  } finally {
    stop = true;
    const code = await d.stop();
    assert.equal(code, 0, `tsiod exits cleanly:\n${d.log().slice(-3000)}`);
    // Hostile input is refused by design, never by an exception in the fabric or the core.
    const crashes = d.log().split('\n').filter((l) => /\b(TypeError|RangeError|ReferenceError|AssertionError)\b/.test(l));
    assert.deepEqual(crashes.slice(0, 5), [], 'no exceptions while handling hostile PDUs');
  }
});
