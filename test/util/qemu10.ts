// QEMU 10 from bookworm-backports, unpacked beside the system's QEMU 7.2 by
// scripts/install-deps --test (dpkg -x into /opt/tsio-qemu10, nothing
// installed): vhost-user-scsi reconnect arrived in QEMU 8.2, so the tests of
// restarts under a vhost-user-scsi guest need it. Its firmware comes with -L
// and its modules with QEMU_MODULE_DIR, never the system 7.2's.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const QEMU10_ROOT = '/opt/tsio-qemu10';

export interface QemuBuild {
  binary: string;
  /** Arguments every run needs (-L firmware directories). */
  args: string[];
  /** Environment added to the process's. */
  env: Record<string, string>;
}

export function qemu10(): QemuBuild {
  const binary = join(QEMU10_ROOT, 'usr/bin/qemu-system-x86_64');
  const data = join(QEMU10_ROOT, 'usr/share/qemu');
  const bios = join(QEMU10_ROOT, 'usr/share/seabios');
  for (const p of [binary, data, join(bios, 'bios-256k.bin')]) {
    if (!existsSync(p)) throw new Error(`QEMU 10 is missing (${p}): run scripts/install-deps --test (unpacks bookworm-backports' qemu-system-x86 into ${QEMU10_ROOT})`);
  }
  return { binary, args: ['-L', data, '-L', bios], env: { QEMU_MODULE_DIR: join(QEMU10_ROOT, 'usr/lib/x86_64-linux-gnu/qemu') } };
}
