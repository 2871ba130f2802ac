// Connection faults under the Linux initiator: in a TCG guest, tsiod, the
// fault relay (tools/fault-relay) and iscsid, all over the guest's loopback;
// the initiator logs in through the relay, which drops, resets, stalls and
// black-holes its connections while fio writes with verification. The
// initiator recovers each time (its NOP-Out timeout finds the black holes;
// the target sees a reinstatement); fio sees no error and no verify failure,
// the kernel logs no I/O error. 90 s of faults in npm test, 10 minutes in soak.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { guestTsiodScript, iscsiLoginScript, runGuest } from './util/guest';
import { TSIOD } from './util/tsiod';

const IQN = 'iqn.2026-12.org.tsio:relay-guest';
const INIT = 'iqn.2026-12.org.tsio:relay-guest-initiator';
const RELAY = join(__dirname, '..', 'tools', 'fault-relay', 'cli.js');
const SECONDS = process.env.TSIO_SOAK === '1' ? 600 : 90;

test(`Linux initiator in a guest through the fault relay: fio with verify for ${SECONDS} s of faults, no error, no verify failure`, { timeout: 2_400_000 }, async () => {
  const script = `set -e
${guestTsiodScript(TSIOD, IQN, '--log-level debug')}node ${RELAY} --listen 3261 --target 127.0.0.1:3260 --seed 5 --drop 0.02 --reset 0.02 --stall 0.1 --stall-ms 200-3000 --blackhole 0.015 > /tmp/relay.log 2>&1 &
RELAY_PID=$!
for i in $(seq 1 240); do grep -q listening /tmp/relay.log && break; sleep 0.5; done
${iscsiLoginScript(INIT, IQN, `node.session.auth.authmethod = None
node.session.timeo.replacement_timeout = 300
node.conn[0].timeo.noop_out_interval = 3
node.conn[0].timeo.noop_out_timeout = 3
`, { portal: '127.0.0.1:3261', discover: false })}
set +e
fio --name=relay --filename=/dev/sda --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=8 --size=32M \\
  --verify=crc32c --verify_backlog=256 --verify_fatal=1 --time_based --runtime=${SECONDS} --output=/tmp/fio.out
echo "FIO-EXIT=$?"
cat /tmp/fio.out
kill -TERM $RELAY_PID; wait $RELAY_PID
cat /tmp/relay.log
echo "IO-ERRORS=$(dmesg | grep -ci 'i/o error')"
echo "CONN-ERRORS=$(dmesg | grep -c 'detected conn error')"
echo "REINSTATED=$(grep -c reinstated /tmp/tsio/log)"
dmesg | grep -iE 'iscsi|connection|session' | tail -20
kill -TERM $TSIOD_PID; wait $TSIOD_PID; echo "TSIOD-EXIT=$?"
`;
  const r = await runGuest({ script, memoryMiB: 1536, timeoutMs: 2_300_000 });
  const tail = r.output.slice(-6000);
  assert.match(r.output, /FIO-EXIT=0/, tail);
  assert.match(r.output, /err= 0/, tail);
  assert.doesNotMatch(r.output, /verify: bad|bad magic|crc32c: verify failed/i, tail);
  assert.match(r.output, /IO-ERRORS=0/, tail);
  const stats = /fault-relay: (\{.*\})/.exec(r.output);
  assert.ok(stats, tail);
  const s = JSON.parse(stats[1]) as { drops: number; resets: number; blackholes: number; connections: number };
  assert.ok(s.drops + s.resets + s.blackholes > 0 && s.connections > 1, `faults met the session: ${stats[1]}`);
  assert.match(r.output, /TSIOD-EXIT=0/, tail);
  const m = /write: IOPS=[^\n]*/.exec(r.output);
  console.log(`${SECONDS} s: relay ${stats[1]}; ${/CONN-ERRORS=\d+/.exec(r.output)?.[0]}, ${/REINSTATED=\d+/.exec(r.output)?.[0]}; fio ${m?.[0] ?? '?'}`);
});
