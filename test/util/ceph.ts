// The single-node Ceph cluster the rbd tests run against, from scripts/ceph-dev.
// One cluster serves every rbd test file of a run: the first file starts it
// (about 20 s), each file leases it for as long as its process lives, and the
// cluster stops itself once nobody has leased it for CEPH_DEV_IDLE seconds.

import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CEPH_DEV = join(__dirname, '..', '..', '..', 'scripts', 'ceph-dev');

export interface Ceph {
  dir: string;
  conf: string;
  keyring: string;
  /** Runs the rbd CLI against the cluster; returns its stdout. */
  rbd(...args: string[]): string;
  /** Runs the ceph CLI against the cluster; returns its stdout. */
  ceph(...args: string[]): string;
  /**
   * Removes rbd/NAME. After an OSD restart, a watch its clients had before the outage may stay on the
   * image header until the OSD's osd_client_watch_timeout (30 s) ends it, even once every client has
   * closed the image: rm is retried while the image has watchers, for up to 60 s.
   */
  rmImage(name: string): Promise<void>;
  /** A fresh image name for this process. */
  imageName(what: string): string;
  /**
   * Stops the OSD (its data stays; resolves once its process is gone) / starts it again (resolves once
   * the osdmap shows it up). Asynchronous, so that a test's event loop keeps running, and stamps what
   * its I/O does, while the OSD goes away and comes back.
   */
  osdStop(): Promise<void>;
  osdStart(): Promise<void>;
}

let seq = 0;
const execFileP = promisify(execFile);

/** The shared test cluster, started when none runs; leased by this process. */
export function ceph(): Ceph {
  const dir = process.env.TSIO_CEPH_DIR ?? join(tmpdir(), 'tsio-test-ceph');
  const up = spawnSync(CEPH_DEV, ['up', dir], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(up.status, 0, `scripts/ceph-dev up ${dir} failed (scripts/install-deps --test installs Ceph):\n${up.stdout}${up.stderr}`);
  const lease = spawnSync(CEPH_DEV, ['lease', dir, String(process.pid)], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(lease.status, 0, `scripts/ceph-dev lease failed:\n${lease.stdout}${lease.stderr}`);
  const conf = join(dir, 'ceph.conf');
  const run = (cmd: string, args: string[]) => execFileSync(cmd, ['-c', conf, ...args], { encoding: 'utf8', timeout: 120_000 });
  const cli = (cmd: string) => (...args: string[]) => run(cmd, args);
  return {
    dir,
    conf,
    keyring: join(dir, 'keyring'),
    rbd: cli('rbd'),
    ceph: cli('ceph'),
    async rmImage(name) {
      const until = Date.now() + 60_000;
      for (;;) {
        try {
          await execFileP('rbd', ['-c', conf, 'rm', '--no-progress', `rbd/${name}`], { encoding: 'utf8', timeout: 120_000 });
          return;
        } catch (e) {
          const err = `${(e as { stderr?: string }).stderr ?? ''}`;
          if (!/has watchers/.test(err) || Date.now() > until) throw e;
          console.log(`rbd/${name} still has watchers, retrying rm: ${run('rbd', ['status', `rbd/${name}`]).trim()}`);
          await new Promise((r) => setTimeout(r, 2000));
        }
      }
    },
    imageName: (what) => `${what}-${process.pid}-${seq++}`,
    async osdStop() {
      await execFileP(CEPH_DEV, ['osd-stop', dir], { timeout: 60_000 });
    },
    async osdStart() {
      await execFileP(CEPH_DEV, ['osd-start', dir], { timeout: 60_000 });
      const until = Date.now() + 120_000;
      while (Date.now() < until) {
        const { stdout } = await execFileP('ceph', ['-c', conf, 'osd', 'stat'], { encoding: 'utf8', timeout: 120_000 });
        if (/1 up/.test(stdout)) return;
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.fail('the OSD did not come back up within 120 s');
    },
  };
}
