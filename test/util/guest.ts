// Linux guests for tests: a Debian kernel (linux-image-amd64) under QEMU TCG
// with a busybox initramfs that shares the host's root read-only over 9p, lays
// a tmpfs overlay on it and chroots there, so a test script runs the host's own
// binaries (sg3-utils, fio, iscsiadm, node) against devices the guest's kernel
// sees. Nested KVM hangs on these machines, hence TCG; -nic none, always.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemu10 } from './qemu10';

export interface GuestOptions {
  /** Bash script run as root in the chroot; its exit code is the guest's. */
  script: string;
  /** Extra QEMU arguments: drives, devices, chardevs. */
  qemuArgs?: string[];
  /** Guest RAM; default 1024. */
  memoryMiB?: number;
  /** Guest vCPUs; default 1 (multiqueue devices give one queue per vCPU). */
  cpus?: number;
  /** Back guest RAM with a shared memfd (vhost-user backends must map it). */
  sharedMemory?: boolean;
  /** Whole run, boot included; default 240 s. */
  timeoutMs?: number;
  /** Let the guest reboot instead of exiting QEMU (a reboot then runs the script again, with TSIO_BOOT=2, 3...). */
  allowReboot?: boolean;
  /** Extra kernel command line words. */
  append?: string;
  /**
   * Boot the host's systemd as init on the same overlay root instead of running the script in a chroot: the
   * script then runs as tsio-job.service (after basic.target; journald, udev and the unit files of the host's
   * /lib/systemd are there), and the guest powers off when it ends.
   */
  systemd?: boolean;
  /** Run bookworm-backports' QEMU 10 (test/util/qemu10.ts) instead of the system's. */
  qemu10?: boolean;
}

export interface GuestResult {
  /** Everything the guest printed on its console. */
  output: string;
  /** The script's exit code; -1 when the guest never reported one (crash, timeout). */
  exitCode: number;
}

export interface Guest {
  readonly pid: number | undefined;
  output(): string;
  /** Resolves with the first match of re in the console output (waiting for it up to ms). */
  waitFor(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  readonly done: Promise<GuestResult>;
  kill(): void;
}

const EXIT_MARK = 'TSIO-GUEST-EXIT';

// Loaded in this order after their dependencies (resolved from modules.dep).
// Crypto modules are soft dependencies modules.dep does not list.
const MODULES = [
  'virtio_pci', 'virtio_scsi', 'virtio_blk', 'scsi_mod', 'crct10dif_generic', 'crc64_rocksoft_generic', 'sd_mod',
  'sr_mod', 'st', 'sg', 'crc32c_generic', 'crc32c-intel', 'ext4', 'isofs', 'overlay', '9p', '9pnet_virtio',
];
// Anything else (scsi_debug, iscsi_tcp, loop) a script loads itself with modprobe: the host has the guest
// kernel's modules installed, and the chroot sees them.

/** The newest Debian kernel installed on the host, with its modules. */
function kernel(): { version: string; vmlinuz: string } {
  const versions = existsSync('/boot')
    ? readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-')).map((f) => f.slice(8))
        .filter((v) => existsSync(`/lib/modules/${v}/modules.dep`))
    : [];
  if (versions.length === 0) {
    throw new Error('no guest kernel: /boot/vmlinuz-* with /lib/modules is missing; run scripts/install-deps --test (linux-image-amd64)');
  }
  versions.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const version = versions[versions.length - 1];
  return { version, vmlinuz: `/boot/vmlinuz-${version}` };
}

/** Module files of MODULES and their dependencies, dependencies first. */
function moduleClosure(version: string): string[] {
  const base = `/lib/modules/${version}`;
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of readFileSync(`${base}/modules.dep`, 'utf8').split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    deps.set(m[1], m[2] ? m[2].split(/\s+/) : []);
    const name = m[1].replace(/^.*\//, '').replace(/\.ko(\..*)?$/, '');
    byName.set(name, m[1]);
    byName.set(name.replace(/-/g, '_'), m[1]);
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (rel: string) => {
    if (seen.has(rel)) return;
    seen.add(rel);
    for (const d of deps.get(rel) ?? []) visit(d);
    order.push(rel);
  };
  for (const name of MODULES) {
    const rel = byName.get(name) ?? byName.get(name.replace(/-/g, '_'));
    if (rel) visit(rel); // built in, or absent in this kernel: nothing to load
  }
  return order.map((rel) => `${base}/${rel}`);
}

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.list); do insmod /lib/modules/$m 2>/dev/null; done
mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /host || echo "guest: 9p root failed"
mount -t tmpfs -o size=512m tmpfs /rw
mkdir -p /rw/upper /rw/work
if ! mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot; then
  echo "guest: overlay failed; read-only root with tmpfs dirs"; mount --bind /host /newroot
  for d in tmp run var mnt; do mount -t tmpfs tmpfs /newroot/$d; done
fi
mount --move /proc /newroot/proc; mount --move /sys /newroot/sys; mount --move /dev /newroot/dev
mkdir -p /newroot/tsio-job /newroot/dev/pts /newroot/dev/shm
mount -t 9p -o trans=virtio,version=9p2000.L job /newroot/tsio-job
mount -t devpts devpts /newroot/dev/pts; mount -t tmpfs tmpfs /newroot/dev/shm
# /tmp stays the overlay's (writable, in guest RAM), so a checkout under the host's /tmp is still visible;
# /run starts empty so no host daemon's sockets or pid files show.
mount -t tmpfs tmpfs /newroot/run
boot=1; [ -f /newroot/tsio-job/boots ] && boot=$(( $(cat /newroot/tsio-job/boots) + 1 ))
echo $boot > /newroot/tsio-job/boots
if grep -q tsio.systemd=1 /newroot/proc/cmdline; then
  # systemd as PID 1 on the overlay: the job is a unit, the host's fstab and enabled services are left out.
  : > /newroot/etc/fstab
  mkdir -p /newroot/etc/systemd/system
  cat > /newroot/tsio-run.sh <<'RUN'
#!/bin/bash
ip link set lo up 2>/dev/null
cd /tmp
/bin/bash /tsio-job/script.sh
echo "${EXIT_MARK} $?" > /dev/console
sync
systemctl --force --force poweroff
RUN
  chmod 755 /newroot/tsio-run.sh
  cat > /newroot/etc/systemd/system/tsio-job.service <<'UNIT'
[Unit]
Description=tsio test job
After=basic.target
[Service]
Type=oneshot
Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb TSIO_BOOT=1
ExecStart=/tsio-run.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
UNIT
  cat > /newroot/etc/systemd/system/tsio-job.target <<'UNIT'
[Unit]
Description=tsio test job and only what it needs
Requires=basic.target tsio-job.service
After=basic.target tsio-job.service
AllowIsolate=yes
UNIT
  umount /newroot/run
  # The host may be a container: its marker would make systemd think so too and ignore the kernel command line.
  rm -f /newroot/.dockerenv /newroot/run/.containerenv
  exec switch_root /newroot /lib/systemd/systemd --unit=tsio-job.target
fi
chroot /newroot /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb TSIO_BOOT=$boot \\
  /bin/bash -c 'ip link set lo up 2>/dev/null; cd /tmp; exec /bin/bash /tsio-job/script.sh' </dev/console >/dev/console 2>&1
echo "${EXIT_MARK} $?"
sync
poweroff -f
`;

/** Builds (once per kernel and module set) the initramfs; returns its path. */
export function initramfs(): { kernel: string; initrd: string } {
  const k = kernel();
  const mods = moduleClosure(k.version);
  const key = createHash('sha256').update(k.version).update(mods.join('\n')).update(INIT).digest('hex').slice(0, 16);
  const cacheDir = join(tmpdir(), 'tsio-guest');
  const initrd = join(cacheDir, `initrd-${key}.cpio.gz`);
  if (existsSync(initrd)) return { kernel: k.vmlinuz, initrd };
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p) && isStatic(p));
  if (!busybox) throw new Error('no static busybox: run scripts/install-deps --test (busybox-static)');
  mkdirSync(cacheDir, { recursive: true });
  const stage = mkdtempSync(join(cacheDir, 'stage-'));
  try {
    for (const d of ['bin', 'proc', 'sys', 'dev', 'lib/modules']) mkdirSync(join(stage, d), { recursive: true });
    run('cp', [busybox, join(stage, 'bin/busybox')]);
    writeFileSync(join(stage, 'init'), INIT);
    chmodSync(join(stage, 'init'), 0o755);
    const names: string[] = [];
    for (const m of mods) {
      const name = m.replace(/^.*\//, '');
      run('cp', [m, join(stage, 'lib/modules', name)]);
      names.push(name);
    }
    writeFileSync(join(stage, 'modules.list'), names.join('\n') + '\n');
    const tmp = `${initrd}.${process.pid}`;
    run('sh', ['-c', `cd '${stage}' && find . | cpio -o -H newc --quiet | gzip -1 > '${tmp}'`]);
    renameSync(tmp, initrd);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  return { kernel: k.vmlinuz, initrd };
}

function isStatic(path: string): boolean {
  const r = spawnSync('file', ['-L', path], { encoding: 'utf8' });
  // Without `file`, trust Debian's busybox-static, which installs /bin/busybox.
  return r.status !== 0 ? path === '/bin/busybox' : /statically linked|static-pie/.test(r.stdout);
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
}

function qemuBinary(): string {
  const p = '/usr/bin/qemu-system-x86_64';
  if (!existsSync(p)) throw new Error('qemu-system-x86_64 is missing: run scripts/install-deps --test (qemu-system-x86)');
  return p;
}

/** Boots a guest running `script`; returns at once. */
export function startGuest(opts: GuestOptions): Guest {
  const { kernel: vmlinuz, initrd } = initramfs();
  const job = mkdtempSync(join(tmpdir(), 'tsio-job-'));
  writeFileSync(join(job, 'script.sh'), opts.script);
  const mem = opts.memoryMiB ?? 1024;
  const args = [
    '-accel', 'tcg', '-cpu', 'max', '-smp', String(opts.cpus ?? 1), '-m', String(mem),
    '-nodefaults', '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-nic', 'none',
    '-kernel', vmlinuz, '-initrd', initrd,
    '-append', `console=ttyS0 loglevel=4 panic=-1 rdinit=/init ${opts.systemd ? 'tsio.systemd=1 systemd.show_status=0 ' : ''}${opts.append ?? ''}`.trim(),
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${job},mount_tag=job,security_model=none,multidevs=remap`,
  ];
  if (!opts.allowReboot) args.push('-no-reboot');
  if (opts.sharedMemory) {
    args.push('-object', `memory-backend-memfd,id=mem,size=${mem}M,share=on`, '-machine', 'pc,memory-backend=mem');
  }
  args.push(...(opts.qemuArgs ?? []));
  const build = opts.qemu10 ? qemu10() : { binary: qemuBinary(), args: [], env: {} };
  const child: ChildProcess = spawn(build.binary, [...build.args, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...build.env } });
  let out = '';
  const watchers: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const onData = (d: Buffer) => {
    out += d.toString('utf8').replace(/\r/g, '');
    for (let i = watchers.length - 1; i >= 0; i--) {
      const m = out.match(watchers[i].re);
      if (m) {
        watchers[i].resolve(m);
        watchers.splice(i, 1);
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const timeoutMs = opts.timeoutMs ?? 240_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const done = new Promise<GuestResult>((resolve) => {
    child.on('close', () => {
      clearTimeout(timer);
      rmSync(job, { recursive: true, force: true });
      const marks = [...out.matchAll(new RegExp(`${EXIT_MARK} (\\d+)`, 'g'))];
      const exitCode = marks.length ? Number(marks[marks.length - 1][1]) : -1;
      if (timedOut) out += `\n[guest killed after ${timeoutMs} ms]\n`;
      resolve({ output: out, exitCode });
    });
  });
  return {
    pid: child.pid,
    output: () => out,
    waitFor(re, ms = timeoutMs) {
      const m = out.match(re);
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`guest never printed ${re} within ${ms} ms; console:\n${out.slice(-3000)}`)), ms);
        const w = { re, resolve: (x: RegExpMatchArray) => (clearTimeout(t), resolve(x)) };
        watchers.push(w);
        void done.then(() => {
          clearTimeout(t);
          const i = watchers.indexOf(w);
          if (i >= 0) {
            watchers.splice(i, 1);
            reject(new Error(`guest exited before printing ${re}; console:\n${out.slice(-3000)}`));
          }
        });
      });
    },
    done,
    kill: () => child.kill('SIGKILL'),
  };
}

/** Boots a guest, runs `script`, resolves when it powers off. */
export function runGuest(opts: GuestOptions): Promise<GuestResult> {
  return startGuest(opts).done;
}

/**
 * The project's tree inside the guest at the path the host has it, over a 9p share of its own (CI may clone
 * it under /tmp, which the guest covers with a tmpfs): the script lines that mount it, and QEMU's arguments.
 */
export function projectShare(project: string): { script: string[]; qemuArgs: string[] } {
  return {
    script: [
      `mkdir -p '${project}'`,
      `mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 tsioproj '${project}'`,
    ],
    qemuArgs: ['-virtfs', `local,path=${project},mount_tag=tsioproj,security_model=none,readonly=on,multidevs=remap`],
  };
}

/**
 * Guest script lines: the Linux initiator (iscsid) with `conf` added to
 * node.startup = manual in iscsid.conf, discovery of and login to `target`
 * on `portal` (default 127.0.0.1:3260, the guest's own loopback), then
 * waiting for /dev/sda. `discover: false` makes the node record by hand
 * (a relay's portal, which SendTargets does not name).
 */
export function iscsiLoginScript(initiator: string, target: string, conf: string, opts: { portal?: string; discover?: boolean } = {}): string {
  const portal = opts.portal ?? '127.0.0.1:3260';
  return `modprobe iscsi_tcp
mkdir -p /etc/iscsi /var/lib/iscsi /run/lock/iscsi
echo "InitiatorName=${initiator}" > /etc/iscsi/initiatorname.iscsi
cat > /etc/iscsi/iscsid.conf <<'EOF'
node.startup = manual
${conf}EOF
iscsid
sleep 1
${opts.discover === false ? `iscsiadm -m node -o new -T ${target} -p ${portal}` : `iscsiadm -m discovery -t sendtargets -p ${portal}`}
iscsiadm -m node -T ${target} -p ${portal} --login
for i in $(seq 1 60); do [ -b /dev/sda ] && break; sleep 0.5; done
`;
}

/**
 * Guest script lines: the loopback up, and start_tsiod, a shell function
 * that starts tsiod (host binaries, `args` added) in the background on a
 * 64 MiB fileio LU in the guest's /tmp, demo mode, portal 127.0.0.1:3260,
 * sets TSIOD_PID and waits for it to be ready; called once.
 */
export function guestTsiodScript(tsiod: string, iqn: string, args = ''): string {
  return `ip link set lo up
mkdir -p /tmp/tsio
cat > /tmp/tsio/c.yaml <<'EOF'
storage_objects:
  - { name: disk, plugin: fileio, dev: /tmp/tsio/disk.img, size: 64MiB }
targets:
  - fabric: iscsi
    wwn: ${iqn}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }
        portals: [ { ip_address: 127.0.0.1, port: 3260 } ]
        luns: [ { index: 0, storage_object: /backstores/fileio/disk } ]
EOF
start_tsiod() {
  node ${tsiod} --config /tmp/tsio/c.yaml --control none --state-dir /tmp/tsio/state --saveconfig /tmp/tsio/save.json ${args} > /tmp/tsio/log 2>&1 &
  TSIOD_PID=$!
  for i in $(seq 1 240); do grep -q ready: /tmp/tsio/log && return 0; sleep 0.5; done
  cat /tmp/tsio/log; return 1
}
start_tsiod
`;
}
