// vhost-user-scsi with a running guest: one controller with three targets
// (TPGs on one socket as virtio targets 0, 1 and 255) seen at H:0:T:L; a batch
// of 32 LUNs added and then removed at once comes and goes in the guest (more
// events than the guest posts buffers for, and more than tsio keeps: the event
// queue's kick and EVENTS_MISSED), the next single LUN too; targets removed
// take their LUNs along; a grown LUN is seen at its new size; a reboot finds
// the disks again, and a new QEMU on the same socket works after the old one
// left. The fabric runs in this process, changed the way the control API
// changes it (tpg.addLun + service.refresh()).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRoot } from '../app/registry';
import { vhostFabric } from '../fabrics/vhost/vhost';
import { MAX_PENDING_EVENTS } from '../fabrics/vhost/virtio-scsi-device';
import type { FabricService } from '../src/core/fabric';
import type { StorageObject } from '../src/model/storage-object';
import { startGuest, runGuest } from './util/guest';

const dir = mkdtempSync(join(tmpdir(), 'tsio-vhost-hp-'));
const sock = join(dir, 'vhost.sock');
const root = createRoot();
let service: FabricService | undefined;
const BATCH = 32;

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
  const t1 = await root.createStorageObject({ name: 'tg1', plugin: 'rd_mcp', size: 4 << 20 });
  const t255 = await root.createStorageObject({ name: 'tg255', plugin: 'rd_mcp', size: 2 << 20 });
  const batch: StorageObject[] = [];
  for (let i = 0; i < BATCH; i++) batch.push(await root.createStorageObject({ name: `b${i}`, plugin: 'rd_mcp', size: 1 << 20 }));
  const target = root.createTarget('vhost', 'naa.5001405000000077');
  const tpg = target.addTpg(1, { generate_node_acls: true, socket: sock, num_queues: 1 });
  tpg.addLun(0, so0);
  tpg.addLun(1, so1);
  // Targets 1 and 255 of the same controller: TPGs naming the same socket.
  const tpgT1 = target.addTpg(2, { generate_node_acls: true, socket: sock, num_queues: 1, target: 1 });
  tpgT1.addLun(0, t1);
  const tpgT255 = target.addTpg(3, { generate_node_acls: true, socket: sock, num_queues: 1, target: 255 });
  tpgT255.addLun(7, t255);
  service = await vhostFabric.serve(target, root);
  return { target, tpg, tpgT1, tpgT255, so0, so2, batch };
}

const qemuArgs = ['-chardev', `socket,path=${sock},id=vus`, '-device', 'vhost-user-scsi-pci,chardev=vus'];

const COUNT = `n() { ls /sys/block | grep -c '^sd' || true; }`;
const WAIT = (cond: string) => `for i in $(seq 900); do ${cond} && break; sleep 0.1; done`;
/** Every SCSI device as H:C:T:L with its size in 512-byte sectors. */
const LIST = (mark: string) => `for d in /sys/block/sd*; do echo "${mark} $(basename $(readlink -f $d/device)) $(cat $d/size)"; done`;

test('targets 0, 1 and 255 of one controller; a batch of 32 LUNs added and removed at once; the next single LUN; targets removed; a grown LUN', { timeout: 600_000 }, async (t) => {
  const { target, tpg, tpgT1, tpgT255, so0, so2, batch } = rig;
  assert.ok(BATCH > MAX_PENDING_EVENTS + 8, 'the batch overflows the event backlog: the guest hears EVENTS_MISSED');
  const g = startGuest({
    sharedMemory: true,
    memoryMiB: 512,
    qemuArgs,
    timeoutMs: 540_000,
    script: [
      COUNT,
      WAIT('[ "$(n)" -ge 4 ]'),
      LIST('TGT'),
      'echo "HP-READY $(n)"',
      WAIT(`[ "$(n)" -ge ${4 + BATCH} ]`),
      'echo "BATCH-ADDED $(n) $(ls /sys/class/scsi_device | grep -c \':0:1:\')"',
      WAIT('[ "$(n)" -le 4 ]'),
      'echo "BATCH-REMOVED $(n)"',
      WAIT('[ "$(n)" -ge 5 ]'),
      LIST('ONE'),
      'echo "SINGLE-ADDED $(n)"',
      WAIT('[ "$(n)" -le 2 ]'),
      'echo "TARGETS-REMOVED $(n) $(ls /sys/class/scsi_device | tr "\n" " ")"',
      'for d in /sys/block/sd*; do case $(readlink -f $d/device) in *:0:0:0) L0=$d;; esac; done',
      'S0=$(cat $L0/size); echo "CAP-BEFORE $S0"',
      WAIT('[ "$(cat $L0/size)" != "$S0" ]'),
      'echo "CAP-AFTER $(cat $L0/size)"',
    ].join('\n'),
  });
  const timed = async (what: string, act: () => Promise<void>, re: RegExp): Promise<RegExpMatchArray> => {
    const t0 = Date.now();
    await act();
    const m = await g.waitFor(re, 120_000);
    t.diagnostic(`${what}: seen by the guest after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return m;
  };
  try {
    await g.waitFor(/HP-READY 4/, 180_000);
    const out = g.output();
    assert.match(out, /TGT \d+:0:0:0 65536\n/, 'target 0 LUN 0');
    assert.match(out, /TGT \d+:0:0:1 32768\n/, 'target 0 LUN 1');
    assert.match(out, /TGT \d+:0:1:0 8192\n/, 'target 1 LUN 0');
    assert.match(out, /TGT \d+:0:255:7 4096\n/, 'target 255 LUN 7');

    const added = await timed(`${BATCH} LUNs added`, async () => {
      for (let i = 0; i < BATCH; i++) tpgT1.addLun(100 + i, batch[i]);
      await service!.refresh!();
    }, /BATCH-ADDED (\d+) (\d+)\n/);
    assert.deepEqual([added[1], added[2]], [String(4 + BATCH), String(1 + BATCH)], `all ${BATCH} LUNs on target 1`);

    const removed = await timed(`${BATCH} LUNs removed`, async () => {
      for (let i = 0; i < BATCH; i++) tpgT1.removeLun(100 + i);
      await service!.refresh!();
    }, /BATCH-REMOVED (\d+)\n/);
    assert.equal(removed[1], '4');

    await timed('one LUN added after the batch', async () => {
      tpgT255.addLun(9, so2);
      await service!.refresh!();
    }, /SINGLE-ADDED 5\n/);
    assert.match(g.output(), /ONE \d+:0:255:9 16384\n/, 'LUN 9 (8 MiB) on target 255');

    const gone = await timed('targets 1 and 255 removed', async () => {
      target.tpgs.delete(tpgT1.tag);
      target.tpgs.delete(tpgT255.tag);
      await Promise.all([...tpgT1.sessions, ...tpgT255.sessions].map((s) => s.close()));
      await service!.refresh!();
    }, /TARGETS-REMOVED (\d+) (.*)\n/);
    assert.equal(gone[1], '2');
    assert.doesNotMatch(gone[2], /:0:(1|255):/);
    assert.equal(tpg.sessions.size, 1, 'target 0 keeps its nexus');

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
