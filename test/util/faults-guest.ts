// Runs inside a test guest (see test/backstore-faults-guest.test.ts), whose kernel has device-mapper:
// block LUs over dm `error` and `flakey` devices and over a virtio-scsi disk that is then deleted, driven
// through a loopback target. Prints one JSON line of what each command came back with.

import fs from 'node:fs';

import { rig } from './loopback-setup';
import { cdb16 } from './cdb';
import type { LoopbackNexus, LoopbackResult } from '../../fabrics/loopback/loopback';
import { storageObjectsRuntime } from '../../app/control/views';
import type { Live } from '../../app/daemon/reconcile';

export const RESULT_MARK = 'FAULTS-RESULT';
/** Sectors 4096..4103 of the error devices fail (one 4 KiB page, 2 MiB in). */
export const BAD_LBA = 4096;
export const BAD_BLOCKS = 8;

interface Brief {
  status: number;
  key?: number;
  asc?: number;
  ascq?: number;
  info?: string;
  /** The sense's response code: 0x70 fixed (0xf0 with VALID), 0x72 descriptor. */
  code?: number;
}

function brief(r: LoopbackResult): Brief {
  return { status: r.status, key: r.senseKey, asc: r.asc, ascq: r.ascq, info: r.info?.toString(), code: r.sense?.[0] };
}


const read16 = (n: LoopbackNexus, lun: number, lba: number, blocks: number) => n.command(lun, cdb16(0x88, lba, blocks));
const write16 = (n: LoopbackNexus, lun: number, lba: number, blocks: number) =>
  n.command(lun, cdb16(0x8a, lba, blocks), { dataOut: Buffer.alloc(blocks * 512, lba & 0xff) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const [bufDev, directDev, flakyDev, scsiDisk] = process.argv.slice(3);
  const out: Record<string, unknown> = {};
  const r = await rig([
    { plugin: 'block', dev: bufDev, attributes: { emulate_write_cache: true } },
    { plugin: 'block', dev: directDev, direct: true, attributes: { emulate_write_cache: false } },
    { plugin: 'block', dev: flakyDev, direct: true },
    { plugin: 'block', dev: scsiDisk, direct: true },
    { plugin: 'rd_mcp', size: 4 << 20 },
  ] as never);
  const live = { root: r.root } as unknown as Live;
  try {
    const n = await r.nexus();
    // dm error, page cache (LUN 0): a read across the bad page, one inside it, one before it.
    out.readAcross = brief(await read16(n, 0, BAD_LBA - 6, 16));
    out.readOne = brief(await read16(n, 0, BAD_LBA + 4, 1));
    out.readBefore = brief(await read16(n, 0, 0, 64));
    r.sos[0].lu.mode.dsense = true; // what MODE SELECT's D_SENSE sets: descriptor format from now on
    out.readAcrossDescriptor = brief(await read16(n, 0, BAD_LBA - 6, 16));
    r.sos[0].lu.mode.dsense = false;
    // Write-back: the write lands in the page cache; SYNCHRONIZE CACHE carries the device's refusal.
    out.writeBack = brief(await write16(n, 0, BAD_LBA, 8));
    out.syncCache = brief(await n.command(0, [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    // dm error, O_DIRECT and write-through (LUN 1): the write itself fails, at its first bad block.
    out.writeAcross = brief(await write16(n, 1, BAD_LBA - 100, 200));
    out.writeGood = brief(await write16(n, 1, 0, 64));
    out.readDirect = brief(await read16(n, 1, BAD_LBA - 1, 2));
    out.readAcrossDirect = brief(await read16(n, 1, BAD_LBA - 6, 16));
    // The good block just before the bad ones reads: an O_DIRECT read is never rounded up into them.
    out.readJustBefore = brief(await read16(n, 1, BAD_LBA - 1, 1));
    // dm flakey (LUN 2): 1 s up, 1 s down; every command either works or is a medium error.
    const flaky: Record<string, number> = {};
    const deadline = Date.now() + 5000;
    for (let i = 0; Date.now() < deadline; i++) {
      const res = i % 2 === 0 ? await read16(n, 2, i * 8, 8) : await write16(n, 2, i * 8, 8);
      const k = res.status === 0 ? 'good' : `${i % 2 === 0 ? 'r' : 'w'}:${res.senseKey}/${res.asc}/${res.ascq}`;
      flaky[k] = (flaky[k] ?? 0) + 1;
      await sleep(50);
    }
    out.flaky = flaky;
    out.flakyNotReady = r.sos[2].lu.fault ?? null;
    // A SCSI disk deleted under LUN 3 (as a hot unplug): NOT READY from then on, health says why.
    out.scsiBefore = brief(await read16(n, 3, 0, 8));
    fs.writeFileSync(`/sys/block/${scsiDisk.replace('/dev/', '')}/device/delete`, '1');
    await sleep(500);
    out.scsiAfter = brief(await read16(n, 3, 0, 8));
    out.scsiAgain = brief(await n.command(3, [0, 0, 0, 0, 0, 0]));
    out.scsiWrite = brief(await write16(n, 3, 0, 8));
    out.health = Object.fromEntries(Object.entries(await storageObjectsRuntime(live)).map(([k, v]) => [k, (v as { health: string }).health]));
    // The RAM LU beside them served all along.
    out.ramWrite = brief(await write16(n, 4, 0, 8));
    out.ramRead = brief(await read16(n, 4, 0, 8));
  } catch (e) {
    out.fatal = (e as Error).stack ?? String(e);
  } finally {
    await r.close().catch(() => undefined);
  }
  console.log(`${RESULT_MARK} ${JSON.stringify(out)}`);
}

// Only when the guest runs it with --run: the test runner, given the whole of dist/test, loads this file too.
if (require.main === module && process.argv[2] === '--run') void main();
