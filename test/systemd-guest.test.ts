// tsiod under a real systemd: a TCG guest boots Debian's systemd (the host's,
// over 9p) and runs packaging/tsiod.service as written, with tsiod and tcli
// found where npm install -g puts them (/usr/local/bin). `systemctl start`
// returns (active) only once the portal listens; `systemctl reload` applies an
// edited saved configuration while an iSCSI session of an unchanged target
// goes on; `systemctl stop` flushes the fileio store; `journalctl -p warning`
// shows only warnings and worse. One guest for all of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectShare, runGuest } from './util/guest';

const ROOT = join(__dirname, '..', '..');
const DIST = join(ROOT, 'dist');
// The tree at its host path (a clone under /tmp is under the guest's own tmpfs otherwise).
const SHARE = projectShare(ROOT);
const A = 'iqn.2026-11.org.tsio:sysd-a';
const B = 'iqn.2026-11.org.tsio:sysd-b';

const config = (bWriteProtect: boolean, extra = '') => `storage_objects:
  - { name: f0, plugin: fileio, dev: /var/lib/tsio/f0.img, size: 16MiB, write_back: true }
  - { name: r0, plugin: rd_mcp, size: 4MiB }
${extra}targets:
  - { fabric: iscsi, wwn: ${A}, tpgs: [ { tag: 1, attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }, portals: [ { ip_address: 127.0.0.1, port: 3260 } ], luns: [ { index: 0, storage_object: /backstores/fileio/f0 } ] } ] }
  - { fabric: iscsi, wwn: ${B}, tpgs: [ { tag: 1, attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: ${bWriteProtect} }, portals: [ { ip_address: 127.0.0.1, port: 3260 } ], luns: [ { index: 0, storage_object: /backstores/rd_mcp/r0 } ] } ] }
`;

// A session on target A that stays open across the reload: it writes before, and writes and reads after.
const SESSION = `
const { RawInitiator } = require('${DIST}/test/util/iscsi-initiator.js');
const fs = require('fs');
const W = (lba, data) => [0x2a, 0, 0, 0, 0, lba, 0, 0, data.length / 512, 0];
(async () => {
  const i = await RawInitiator.connect(3260);
  await i.login('${A}');
  await i.command([0, 0, 0, 0, 0, 0]);
  const one = Buffer.alloc(4096, 0x11);
  let r = await i.command(W(0, one), { write: one });
  console.log('SESSION write1 ' + r.status);
  fs.writeFileSync('/tmp/session-ready', '');
  // Idle, the session would be pinged (NOP-In) and dropped unanswered: a TEST UNIT READY now and then keeps it busy.
  for (let n = 0; !fs.existsSync('/tmp/session-go'); n++) {
    await new Promise((res) => setTimeout(res, 100));
    if (n % 50 === 49) await i.command([0, 0, 0, 0, 0, 0]);
  }
  const two = Buffer.alloc(4096, 0x22);
  r = await i.command(W(8, two), { write: two });
  console.log('SESSION write2 ' + r.status);
  r = await i.command([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0], { read: 4096 });
  console.log('SESSION read1 ' + r.status + ' ' + (r.data.equals(one) ? 'same' : 'differs'));
  await i.logout();
  i.close();
})().catch((e) => { console.log('SESSION failed ' + e.message); process.exit(1); });
`;

const SCRIPT = `set -u
${SHARE.script.join('\n')}
step() { echo "STEP $1: $2"; }
for p in tsiod:app/daemon/tsiod.js tcli:cli/tcli.js; do
  printf '#!/bin/sh\\nexec /usr/bin/node ${DIST}/%s "$@"\\n' "\${p#*:}" > /usr/local/bin/\${p%%:*}
  chmod 755 /usr/local/bin/\${p%%:*}
done
cp ${ROOT}/packaging/tsiod.service /etc/systemd/system/tsiod.service
mkdir -p /etc/tsio && chmod 700 /etc/tsio
cat > /etc/tsio/saveconfig.yaml <<'EOF'
${config(true)}EOF
systemctl daemon-reload
systemctl start tsiod; step start $?
# Type=notify: start returned, so the portal must listen now.
if (exec 3<>/dev/tcp/127.0.0.1/3260) 2>/dev/null; then step listening yes; else step listening no; fi
step active "$(systemctl is-active tsiod)"
cat > /tmp/session.js <<'EOF'
${SESSION}
EOF
node /tmp/session.js > /tmp/session.log 2>&1 &
for i in $(seq 300); do [ -e /tmp/session-ready ] && break; sleep 0.1; done
# The saved file, edited: B's LUNs become writable and a storage object joins; A is unchanged.
cat > /etc/tsio/saveconfig.yaml <<'EOF'
${config(false, '  - { name: r9, plugin: rd_mcp, size: 4MiB }\n')}EOF
systemctl reload tsiod; step reload $?
step after-reload "$(tcli --control /run/tsio/control.sock ls /backstores/rd_mcp | grep -c r9) $(tcli --control /run/tsio/control.sock /iscsi/${B}/tpg1 get attribute demo_mode_write_protect)"
touch /tmp/session-go
wait
cat /tmp/session.log
systemctl stop tsiod; step stop $?
step result "$(systemctl show -p Result --value tsiod) $(systemctl show -p ExecMainStatus --value tsiod)"
step data "$(od -An -tx1 -N1 -j 0 /var/lib/tsio/f0.img | tr -d ' ') $(od -An -tx1 -N1 -j 4096 /var/lib/tsio/f0.img | tr -d ' ')"
echo "JOURNAL-WARNING-BEGIN"; journalctl -u tsiod -p warning -o cat --no-pager; echo "JOURNAL-WARNING-END"
echo "JOURNAL-INFO-BEGIN"; journalctl -u tsiod -p info -o cat --no-pager; echo "JOURNAL-INFO-END"
echo "JOURNAL-PRIO-BEGIN"; journalctl -u tsiod -o json --no-pager | grep -o '"PRIORITY":"[0-9]"' | sort | uniq -c; echo "JOURNAL-PRIO-END"
`;

function between(out: string, tag: string): string[] {
  const m = new RegExp(`${tag}-BEGIN\\n([\\s\\S]*?)${tag}-END`).exec(out);
  assert.ok(m, `${tag} in the output:\n${out.slice(-3000)}`);
  return m[1].split('\n').filter((l) => l.trim() !== '');
}

test('systemd: start waits for the portal, reload applies the saved file live, stop flushes, the journal filters by priority', { timeout: 420_000 }, async () => {
  const r = await runGuest({ script: SCRIPT, qemuArgs: SHARE.qemuArgs, systemd: true, memoryMiB: 1536, timeoutMs: 400_000 });
  const out = r.output;
  if (r.exitCode !== 0) writeFileSync(join(tmpdir(), 'tsio-systemd-guest.log'), out);
  assert.equal(r.exitCode, 0, `guest console (whole: ${join(tmpdir(), 'tsio-systemd-guest.log')}):\n${out.slice(-4000)}`);
  const step = (name: string) => new RegExp(`^STEP ${name}: (.*)$`, 'm').exec(out)?.[1];
  assert.equal(step('start'), '0', out.slice(-4000));
  assert.equal(step('listening'), 'yes', 'the portal listened as soon as systemctl start returned');
  assert.equal(step('active'), 'active');
  assert.equal(step('reload'), '0', out.slice(-4000));
  assert.equal(step('after-reload'), '1 demo_mode_write_protect=false', 'the edited file was applied');
  assert.match(out, /^SESSION write1 0$/m);
  assert.match(out, /^SESSION write2 0$/m, 'the session of the unchanged target went on after the reload');
  assert.match(out, /^SESSION read1 0 same$/m);
  assert.equal(step('stop'), '0');
  assert.equal(step('result'), 'success 0', 'tsiod stopped cleanly');
  assert.equal(step('data'), '11 22', 'the fileio store holds both writes after stop');
  const warnings = between(out, 'JOURNAL-WARNING');
  assert.ok(warnings.length > 0, 'the demo-mode warning is there');
  for (const l of warnings) assert.match(l, /^tsio (warn|error): /, `only warnings and worse: ${l}`);
  assert.ok(warnings.some((l) => l.includes(`/iscsi/${B}/tpg1 is in demo mode`)));
  const info = between(out, 'JOURNAL-INFO');
  assert.ok(info.some((l) => /^tsio info: ready: /.test(l)), 'info lines are there at -p info');
  assert.ok(info.some((l) => /^tsio notice: control: .*reload/.test(l)), 'the reload is a notice with who');
  assert.ok(info.some((l) => /^tsio info: stopped: every store flushed$/.test(l)));
});
