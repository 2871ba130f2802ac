// vhost-user-scsi with a running guest: LUNs added to and removed from the
// TPG appear and vanish in the guest without a manual rescan, a grown LUN is
// seen at its new size, a reboot finds the disks again, and a new QEMU on the
// same socket works after the old one left. The fabric runs in this process,
// changed the way the control API changes it (tpg.addLun + service.refresh()).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRoot } from '../app/registry';
import { vhostFabric } from '../fabrics/vhost/vhost';
import type { FabricService } from '../src/core/fabric';
import { startGuest, runGuest } from './util/guest';

const dir = mkdtempSync(join(tmpdir(), 'tsio-vhost-hp-'));
const sock = join(dir, 'vhost.sock');
const root = createRoot();
let service: FabricService | undefined;

after(async () => {
  await service?.close();
  await root.close();
  rmSync(dir, { recursive: true, force: true });
});

let rig: Awaited<ReturnType<typeof setup>>;
before(async () => {
  rig = await setup();
});

async function setup() {
  const so0 = await root.createStorageObject({ name: 'hp0', plugin: 'rd_mcp', size: 32 << 20 });
  const so1 = await root.createStorageObject({ name: 'hp1', plugin: 'rd_mcp', size: 16 << 20 });
  const so2 = await root.createStorageObject({ name: 'hp2', plugin: 'rd_mcp', size: 8 << 20 });
  const target = root.createTarget('vhost', 'naa.5001405000000077');
  const tpg = target.addTpg(1, { generate_node_acls: true, socket: sock, num_queues: 1 });
  tpg.addLun(0, so0);
  tpg.addLun(1, so1);
  service = await vhostFabric.serve(target, root);
  return { tpg, so0, so2 };
}

const qemuArgs = ['-chardev', `socket,path=${sock},id=vus`, '-device', 'vhost-user-scsi-pci,chardev=vus'];

const COUNT = `n() { ls /sys/block | grep -c '^sd' || true; }`;
const WAIT = (cond: string) => `for i in $(seq 900); do ${cond} && break; sleep 0.1; done`;

test('hot-plug: LUNs added and removed at runtime come and go in the guest; a grown LUN is seen at its new size', { timeout: 400_000 }, async () => {
  const { tpg, so0, so2 } = rig;
  const g = startGuest({
    sharedMemory: true,
    memoryMiB: 512,
    qemuArgs,
    timeoutMs: 300_000,
    script: [
      COUNT,
      WAIT('[ "$(n)" -ge 2 ]'),
      'echo "HP-READY $(n)"',
      WAIT('[ "$(n)" -ge 3 ]'),
      'for d in /sys/block/sd*; do echo "HPDISK $(basename $d) $(basename $(readlink -f $d/device)) $(cat $d/size)"; done',
      'echo "HP-ADDED $(n)"',
      WAIT('[ "$(n)" -le 2 ]'),
      'echo "HP-REMOVED $(n)"',
      'for d in /sys/block/sd*; do case $(readlink -f $d/device) in *:0:0:0) L0=$d;; esac; done',
      'S0=$(cat $L0/size); echo "CAP-BEFORE $S0"',
      WAIT('[ "$(cat $L0/size)" != "$S0" ]'),
      'echo "CAP-AFTER $(cat $L0/size)"',
    ].join('\n'),
  });
  try {
    await g.waitFor(/HP-READY 2/, 120_000);
    tpg.addLun(5, so2);
    await service!.refresh!();
    const added = await g.waitFor(/HP-ADDED (\d+)\n/, 60_000);
    assert.equal(added[1], '3');
    assert.match(g.output(), /HPDISK sd[a-z] \d+:0:0:5 16384\n/, `LUN 5 (8 MiB) appeared: ${g.output().slice(-1500)}`);
    tpg.removeLun(5);
    await service!.refresh!();
    const removed = await g.waitFor(/HP-REMOVED (\d+)\n/, 60_000);
    assert.equal(removed[1], '2');
    await g.waitFor(/CAP-BEFORE 65536\n/, 30_000);
    // Grown the way the control API does it: the store, then the unit's notice.
    await so0.backstore.resize!(48 << 20);
    so0.lu.capacityChanged();
    const grown = await g.waitFor(/CAP-AFTER (\d+)\n/, 60_000);
    assert.equal(grown[1], String((48 << 20) / 512));
    const r = await g.done;
    assert.equal(r.exitCode, 0, r.output.slice(-2000));
  } finally {
    g.kill();
  }
});

test('reboot finds the disks again; after QEMU exits a new QEMU on the same socket works', { timeout: 400_000 }, async () => {
  const script = [
    COUNT,
    WAIT('[ "$(n)" -ge 2 ]'),
    'for d in /sys/block/sd*; do case $(readlink -f $d/device) in *:0:0:1) L1=/dev/$(basename $d);; esac; done',
    'if [ "$TSIO_BOOT" = 1 ]; then',
    '  echo "boot-one-marker" | dd of=$L1 bs=512 conv=sync oflag=direct status=none',
    '  echo "BOOT1 $(n)"; sync; echo b > /proc/sysrq-trigger; sleep 30',
    'fi',
    'echo "BOOT$TSIO_BOOT $(n) $(dd if=$L1 bs=512 count=1 iflag=direct status=none | tr -d "\\0")"',
  ].join('\n');
  const r = await runGuest({ sharedMemory: true, memoryMiB: 512, qemuArgs, allowReboot: true, timeoutMs: 300_000, script });
  assert.match(r.output, /BOOT1 2/);
  assert.match(r.output, /BOOT2 2 boot-one-marker/, r.output.slice(-2000));
  assert.equal(r.exitCode, 0);
  // That QEMU is gone; a new one connects to the same socket.
  const r2 = await runGuest({ sharedMemory: true, memoryMiB: 512, qemuArgs, timeoutMs: 200_000, script: script.replace('if [ "$TSIO_BOOT" = 1 ]; then', 'if false; then') });
  assert.match(r2.output, /BOOT1 2 boot-one-marker/, r2.output.slice(-2000));
});
