// The guest harness itself: a TCG guest boots, chroots into the host's root,
// runs host binaries and reports the script's exit code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runGuest } from './util/guest';

test('a guest runs host binaries in the shared root and reports its exit code', { timeout: 300_000 }, async () => {
  const r = await runGuest({
    script: [
      'set -e',
      'echo "node $(node --version)"',
      'modprobe scsi_debug dev_size_mb=8',
      'udevadm settle 2>/dev/null || sleep 1',
      'sg_inq /dev/sda | grep -i "vendor identification"',
      'touch /etc/writable && echo overlay-ok',
      'exit 7',
    ].join('\n'),
  });
  assert.match(r.output, new RegExp(`node ${process.version}`), r.output.slice(-2000));
  assert.match(r.output, /Vendor identification: Linux/, r.output.slice(-2000));
  assert.match(r.output, /overlay-ok/);
  assert.equal(r.exitCode, 7, r.output.slice(-2000));
});
