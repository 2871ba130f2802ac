// Restarting tsiod under the Linux initiator: in a TCG guest (tsiod and
// iscsid both inside it, over its loopback), fio writes with verification
// while tsiod is stopped (SIGTERM) and started again, same config, same
// port; the initiator recovers its session within replacement_timeout and
// reissues, and fio sees no error and no verify failure, nor does the kernel
// log an I/O error. 3 restarts in npm test, 10 in npm run soak.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guestTsiodScript, iscsiLoginScript, runGuest } from './util/guest';
import { TSIOD } from './util/tsiod';

const IQN = 'iqn.2026-12.org.tsio:restart-guest';
const INIT = 'iqn.2026-12.org.tsio:restart-guest-initiator';
const RESTARTS = process.env.TSIO_SOAK === '1' ? 10 : 3;
/** Seconds of fio between restarts. */
const PERIOD_S = 6;

test(`Linux initiator in a guest: fio with verify across ${RESTARTS} restarts of tsiod, no error, no verify failure`, { timeout: 1_800_000 }, async () => {
  const script = `set -e
${guestTsiodScript(TSIOD, IQN)}${iscsiLoginScript(INIT, IQN, `node.session.auth.authmethod = None
node.session.timeo.replacement_timeout = 300
`)}RUNTIME=$(( (${RESTARTS} + 1) * ${PERIOD_S} + 60 ))
fio --name=restart --filename=/dev/sda --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=8 --size=32M \\
  --verify=crc32c --verify_backlog=256 --verify_fatal=1 --time_based --runtime=$RUNTIME --output=/tmp/fio.out &
FIO=$!
set +e
for k in $(seq 1 ${RESTARTS}); do
  sleep ${PERIOD_S}
  kill -TERM $TSIOD_PID; wait $TSIOD_PID; echo "TSIOD-EXIT-$k=$?"
  cat /tmp/tsio/log
  start_tsiod && echo "RESTART-$k-OK"
done
wait $FIO; echo "FIO-EXIT=$?"
cat /tmp/fio.out
echo "IO-ERRORS=$(dmesg | grep -ci 'i/o error')"
dmesg | grep -iE 'iscsi|connection|session|sd 0' | tail -40
iscsiadm -m node -T ${IQN} -p 127.0.0.1:3260 --logout && echo LOGOUT-OK
kill -TERM $TSIOD_PID; wait $TSIOD_PID; echo "TSIOD-EXIT-LAST=$?"
`;
  const r = await runGuest({ script, memoryMiB: 1536, timeoutMs: 1_700_000 });
  const tail = r.output.slice(-6000);
  for (let k = 1; k <= RESTARTS; k++) {
    assert.match(r.output, new RegExp(`TSIOD-EXIT-${k}=0`), `tsiod exit ${k}: ${tail}`);
    assert.match(r.output, new RegExp(`RESTART-${k}-OK`), `restart ${k}: ${tail}`);
  }
  assert.match(r.output, /FIO-EXIT=0/, tail);
  assert.match(r.output, /err= 0/, tail);
  assert.doesNotMatch(r.output, /verify: bad|bad magic|crc32c: verify failed/i, tail);
  assert.match(r.output, /IO-ERRORS=0/, tail);
  assert.match(r.output, /LOGOUT-OK/, tail);
  assert.match(r.output, /TSIOD-EXIT-LAST=0/, tail);
  const m = /write: IOPS=[^\n]*/.exec(r.output);
  console.log(`restarts ${RESTARTS}: fio ${m?.[0] ?? '?'}`);
});
