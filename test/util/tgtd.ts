// tgtd (the tgt project's target daemon) as the peer for device types only it
// has among the others: a tape drive, a media changer with its drive, and a
// CD/DVD drive, on one iSCSI target. tgtd ignores SIGTERM: stop() kills it.
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Tgtd {
  pid: number;
  /** tgtadm with this instance's control port; throws on failure. */
  adm(args: string[]): string;
  stop(): void;
}

/** Starts tgtd on 127.0.0.1:port with an empty target tid 1 named iqn. */
export async function startTgtd(port: number, iqn: string): Promise<Tgtd> {
  const control = 2000 + ((process.pid + port) % 20000); // a short; one per instance
  const child = spawn('tgtd', ['-f', '--iscsi', `portal=127.0.0.1:${port}`, '-C', String(control)], { stdio: 'ignore' });
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const adm = (args: string[]) => {
    const r = spawnSync('tgtadm', ['-C', String(control), '--lld', 'iscsi', ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tgtadm ${args.join(' ')}: ${r.stderr || r.stdout}`);
    return r.stdout;
  };
  for (let i = 0; ; i++) {
    try {
      adm(['--op', 'new', '--mode', 'target', '--tid', '1', '-T', iqn]);
      break;
    } catch (e) {
      if (i > 50 || child.exitCode !== null) {
        stop();
        throw new Error(`tgtd did not come up: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { pid: child.pid!, adm, stop };
}

/** A tape for tgtd's ssc backing store (tgtimg), size in MB. */
export function tgtTape(dir: string, barcode: string, mb: number, type = 'data'): string {
  const file = join(dir, barcode);
  const r = spawnSync('tgtimg', ['--op', 'new', '--device-type', 'tape', '--barcode', barcode, '--size', String(mb), '--type', type, '--file', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tgtimg: ${r.stderr || r.stdout}`);
  return file;
}

/**
 * LUN 1 a tape drive with its own tape, LUN 2 a changer (transport 1 (tgtd refuses 0), slots from 0x1000,
 * import/export 0x10, a drive at 0x100: LUN 3) with tapes in its first slots,
 * LUN 4 a CD/DVD drive with an image. tgtd wants the drives before the changer,
 * a regular file behind the changer, and a tape in every drive (a cleaning one
 * stands in for none).
 */
export function tgtLibrary(t: Tgtd, dir: string, solo: string, tapes: string[], iso: string, mb: number, soloMb = mb): void {
  const lun = (n: number, type: string, file: string, bstype?: string) =>
    t.adm(['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', String(n), '--device-type', type, ...(bstype ? ['--bstype', bstype] : []), '-b', file]);
  lun(1, 'tape', tgtTape(dir, solo, soloMb), 'ssc');
  lun(3, 'tape', tgtTape(dir, 'CLN000', 1, 'clean'), 'ssc');
  for (const b of tapes) tgtTape(dir, b, mb);
  const state = join(dir, 'CHANGER');
  writeFileSync(state, '');
  lun(2, 'changer', state);
  const params = [
    `media_home=${dir}`,
    'element_type=1,start_address=1,quantity=1',
    `element_type=2,start_address=${0x1000},quantity=4`,
    `element_type=3,start_address=${0x10},quantity=1`,
    `element_type=4,start_address=${0x100},quantity=1`,
    `element_type=4,address=${0x100},tid=1,lun=3`,
    ...tapes.map((b, i) => `element_type=2,address=${0x1000 + i},barcode=${b},sides=1`),
  ];
  for (const p of params) t.adm(['--op', 'update', '--mode', 'logicalunit', '--tid', '1', '--lun', '2', '--params', p]);
  lun(4, 'cd', iso);
  t.adm(['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL']);
}
