// A vhost socket, which a VMM's vhost-user device connects to (QEMU:
// -chardev socket,path=... -device vhost-user-scsi-pci,chardev=...). The
// socket is one virtio-scsi controller: every TPG of the target naming it is
// one virtio target of that controller (its `target`, 0 when absent), as LIO
// maps a vhost WWN's TPGs to targets. Every connection is a vhost-user back end
// serving one device with an I_T nexus per target; a new QEMU may connect after
// the old one left. The socket file gets the TPGs' socket_mode and
// socket_group (a QEMU run by libvirt is another user), never wider on the way.

import { chmodSync, chownSync, closeSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Tpg } from '../../src/model/target';
import { log } from '../../src/core/log';
import { FdWatcher, groupId, unixAccept, unixListen } from '../../native';
import { VhostUserBackend } from './vhost-user-backend';
import { VirtioScsiDevice, type Controller } from './virtio-scsi-device';
import { VirtioBlkDevice } from './virtio-blk-device';
import { MAX_TARGETS } from './virtio-scsi';

/**
 * The socket's mode when a TPG names none. A configured TPG always has one (the
 * application fills in specs/fabrics/vhost.yaml's default); this serves TPGs an
 * embedding program builds by hand.
 */
const SOCKET_MODE = '0660';

/** Request queues served when the TPG names no num_queues: QEMU's own limit for a virtio-scsi controller. */
export const MAX_REQUEST_QUEUES = 128;

/** The socket's permission bits and gid (-1: the daemon's own group) a TPG asks for. */
function socketOwnership(tpg: Tpg): { mode: number; gid: number } {
  const text = String(tpg.attributes.socket_mode ?? SOCKET_MODE);
  const group = tpg.attributes.socket_group;
  let gid = -1;
  if (typeof group === 'string') {
    gid = /^[0-9]+$/.test(group) ? Number(group) : groupId(group);
    if (gid < 0) throw new Error(`vhost ${tpg.portName}: socket_group: no group '${group}' on this host`);
  }
  return { mode: parseInt(text, 8), gid };
}

/** The virtio-scsi target a TPG is on its controller. */
export function virtioTarget(tpg: Tpg): number {
  const t = Number(tpg.attributes.target ?? 0);
  return Number.isInteger(t) && t >= 0 && t < MAX_TARGETS ? t : 0;
}

export class TpgListener implements Controller {
  private readonly fd: number;
  private watcher: FdWatcher | undefined;
  private ownership: { mode: number; gid: number };
  /** The TPGs on this socket, lowest tag first; the first one's socket settings are the controller's. */
  tpgs: Tpg[];
  readonly devices = new Set<VirtioScsiDevice | VirtioBlkDevice>();

  constructor(
    tpgs: Tpg[],
    readonly path: string,
  ) {
    this.tpgs = tpgs;
    mkdirSync(dirname(path), { recursive: true });
    this.ownership = socketOwnership(this.first);
    this.fd = unixListen(path, this.ownership.mode, this.ownership.gid);
    this.watcher = new FdWatcher(this.fd, () => this.accept());
    log.info(`vhost ${this.name}: listening on ${path} (mode ${this.ownership.mode.toString(8).padStart(4, '0')})`);
  }

  private get first(): Tpg {
    return this.tpgs[0];
  }

  private get name(): string {
    return this.tpgs.length === 1 ? this.first.portName : `${this.first.target.wwn} (${this.tpgs.length} TPGs)`;
  }

  targets(): Map<number, Tpg> {
    const m = new Map<number, Tpg>();
    for (const tpg of this.tpgs) {
      const t = virtioTarget(tpg);
      if (tpg.enabled && !m.has(t)) m.set(t, tpg);
    }
    return m;
  }

  /** A live change of socket_mode or socket_group: narrow first, then regroup, then the new mode. */
  private reown(): void {
    const want = socketOwnership(this.first);
    if (want.mode === this.ownership.mode && want.gid === this.ownership.gid) return;
    const cur = statSync(this.path).mode & 0o7777;
    chmodSync(this.path, cur & want.mode);
    if (want.gid !== this.ownership.gid) chownSync(this.path, -1, want.gid >= 0 ? want.gid : process.getegid!());
    chmodSync(this.path, want.mode);
    this.ownership = want;
    log.info(`vhost ${this.name}: ${this.path} now mode ${want.mode.toString(8).padStart(4, '0')}${want.gid >= 0 ? ` group ${want.gid}` : ''}`);
  }

  /** Request queues a front-end may set up. */
  get numQueues(): number {
    const v = this.first.attributes.num_queues;
    const n = Number(v);
    return v !== undefined && Number.isInteger(n) && n >= 1 && n <= MAX_REQUEST_QUEUES ? n : MAX_REQUEST_QUEUES;
  }

  private accept(): void {
    for (;;) {
      let fd: number;
      try {
        fd = unixAccept(this.fd);
      } catch (e) {
        log.warn(`vhost ${this.path}: accept failed: ${(e as Error).message}`);
        return;
      }
      if (fd < 0) return;
      if (this.targets().size === 0) {
        log.warn(`vhost ${this.path}: TPG disabled; connection refused`);
        closeSync(fd);
        continue;
      }
      try {
        const backend = new VhostUserBackend(fd, this.path);
        // device: blk serves the first TPG's one LUN as virtio-blk (vhost-user-blk-pci).
        const d = this.first.attributes.device === 'blk'
          ? new VirtioBlkDevice(backend, this.first, this.numQueues)
          : new VirtioScsiDevice(backend, this, this.numQueues);
        backend.start(d);
        this.devices.add(d);
        void backend.done.then(() => this.devices.delete(d));
      } catch (e) {
        log.warn(`vhost ${this.path}: connection refused: ${(e as Error).message}`);
        closeSync(fd);
      }
    }
  }

  refresh(): void {
    this.reown();
    for (const d of this.devices) d.refresh();
  }

  async close(): Promise<void> {
    this.watcher?.stop();
    this.watcher = undefined;
    closeSync(this.fd);
    rmSync(this.path, { force: true });
    await Promise.all([...this.devices].map((d) => d.backend.close()));
  }
}
