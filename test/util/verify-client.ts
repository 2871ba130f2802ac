// A verifying iSCSI client that reconnects, as an initiator's session
// recovery does (the Linux initiator within replacement_timeout, libiscsi
// with reconnect): a few workers write versioned patterns to their own slice
// of an LU and read them back; a command whose connection fails (or that the
// target leaves unanswered) is reissued on a new session with the same ISID
// until it completes; a target's request to log out is answered by a logout.
// Every block must read as the last version written and acknowledged:
// anything else is a lost or misplaced write. Check conditions other than
// unit attentions are errors surfaced to the application.

import { RawInitiator } from './iscsi-initiator';
import { rng } from './rng';

const BLOCK = 512;

/** Block `lba` at `version`: its number and version, then a pattern of both (version 0: never written, zeros). */
export function blockPattern(lba: number, version: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  if (version === 0) return b;
  b.writeUInt32BE(lba, 0);
  b.writeUInt32BE(version, 4);
  for (let k = 8; k < BLOCK; k++) b[k] = (lba * 7 + version * 13 + k) & 0xff;
  return b;
}

export interface VerifyStats {
  writes: number;
  reads: number;
  blocksVerified: number;
  /** Sessions logged in after the first. */
  reconnects: number;
  /** Commands reissued after their connection failed or went unanswered. */
  reissued: number;
  /** Logouts the target asked for (Async Message, AsyncEvent 1). */
  logoutRequests: number;
  /** Unit attentions met (and the command retried), by ASC/ASCQ as 4 hex digits. */
  unitAttentions: Map<string, number>;
  /** What an application would have seen: check conditions other than unit attentions, failed logins past the limit. */
  errors: string[];
  /** Blocks that read back other than as last acknowledged. */
  verifyFailures: string[];
  /** Responses to a command that had already completed (its ITT answered twice on one session). */
  duplicates: number;
}

export interface VerifyOptions {
  port: number;
  target: string;
  initiator?: string;
  /** Blocks from LBA `first` the workers share out. */
  first?: number;
  blocks: number;
  workers?: number;
  /** Blocks per command at most (default 64). */
  maxBlocks?: number;
  seed?: number;
  /** Per-command time before the client gives up on its connection (default 20 s). */
  commandTimeoutMs?: number;
  /** How long reconnecting may go on before it counts as an error (default 60 s). */
  reconnectLimitMs?: number;
  /** More login keys (digests, ErrorRecoveryLevel). */
  loginKeys?: Record<string, string>;
  /** Runs once on each new session before the workers use it. */
  onSession?: (i: RawInitiator) => Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cdb10 = (op: number, lba: number, n: number): Buffer =>
  Buffer.from([op, 0, (lba >>> 24) & 0xff, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, n >> 8, n & 0xff, 0]);

export class VerifyingClient {
  readonly stats: VerifyStats = {
    writes: 0, reads: 0, blocksVerified: 0, reconnects: 0, reissued: 0, logoutRequests: 0, unitAttentions: new Map(), errors: [], verifyFailures: [], duplicates: 0,
  };
  /** Acknowledged version of each block. */
  readonly versions: Uint32Array;
  private session: RawInitiator | undefined;
  private connecting: Promise<RawInitiator> | undefined;
  private running = false;
  private workers: Promise<void>[] = [];
  private readonly isid = Buffer.from([0x80, 0x5e, 0x00, 0x00, 0x00, 0x01]);
  private logins = 0;
  /** ITTs each session completed, to find a second response to one. */
  private readonly answered = new WeakMap<RawInitiator, Set<number>>();
  /** Completed commands (progress). */
  completed = 0;

  constructor(private readonly o: VerifyOptions) {
    this.versions = new Uint32Array(o.blocks);
  }

  start(): void {
    this.running = true;
    const n = this.o.workers ?? 4;
    const per = Math.floor(this.o.blocks / n);
    for (let w = 0; w < n; w++) this.workers.push(this.worker(w * per, per, rng((this.o.seed ?? 1) * 1000 + w)));
  }

  /** Stops the workers after their current command (the session stays: verifyAll(), then close()). */
  async stop(): Promise<VerifyStats> {
    this.running = false;
    await Promise.all(this.workers);
    return this.stats;
  }

  /** Logs out. */
  async close(): Promise<void> {
    this.running = false;
    const i = this.session;
    this.session = undefined;
    if (i && !i.closed) {
      await i.logout().catch(() => undefined);
      i.close();
    }
  }

  /** Reads every block and checks it against what was acknowledged (after stop()). */
  async verifyAll(): Promise<void> {
    for (let off = 0; off < this.o.blocks; off += 128) await this.readCheck(off, Math.min(128, this.o.blocks - off));
  }

  private async worker(from: number, count: number, r: () => number): Promise<void> {
    const max = Math.min(this.o.maxBlocks ?? 64, count);
    while (this.running) {
      const n = 1 + Math.floor(r() * max);
      const off = from + Math.floor(r() * (count - n + 1));
      if (r() < 0.6) await this.write(off, n);
      else await this.readCheck(off, n);
      if (this.stats.errors.length > 0) return;
    }
  }

  private async write(off: number, n: number): Promise<void> {
    const first = this.o.first ?? 0;
    const parts: Buffer[] = [];
    const next: number[] = [];
    for (let k = 0; k < n; k++) {
      const v = this.versions[off + k] + 1;
      next.push(v);
      parts.push(blockPattern(first + off + k, v));
    }
    const data = Buffer.concat(parts);
    // Immediate data for the small ones, R2Ts for the rest.
    const r = await this.run(cdb10(0x2a, first + off, n), { write: data, immediate: n <= 8 ? data.length : 0 });
    if (r === undefined) return;
    for (let k = 0; k < n; k++) this.versions[off + k] = next[k];
    this.stats.writes++;
  }

  private async readCheck(off: number, n: number): Promise<void> {
    const first = this.o.first ?? 0;
    const r = await this.run(cdb10(0x28, first + off, n), { read: n * BLOCK });
    if (r === undefined) return;
    this.stats.reads++;
    for (let k = 0; k < n; k++) {
      const got = r.subarray(k * BLOCK, (k + 1) * BLOCK);
      const want = blockPattern(first + off + k, this.versions[off + k]);
      if (got.equals(want)) this.stats.blocksVerified++;
      else if (this.stats.verifyFailures.length < 20) {
        this.stats.verifyFailures.push(`LBA ${first + off + k}: want version ${this.versions[off + k]}, got lba ${got.readUInt32BE(0)} version ${got.readUInt32BE(4)}`);
      } else this.stats.verifyFailures.push('...');
    }
  }

  /** Runs a command until it completes, across reconnections; undefined when it failed for good (an error). */
  private async run(cdb: Buffer, opts: { read?: number; write?: Buffer; immediate?: number }): Promise<Buffer | undefined> {
    let reissue = false;
    for (let uas = 0; ; ) {
      let i: RawInitiator;
      try {
        i = await this.connection();
      } catch (e) {
        this.stats.errors.push((e as Error).message);
        return undefined;
      }
      if (reissue) this.stats.reissued++;
      let r;
      const itt = i.itt; // the ITT command() takes (synchronously)
      try {
        r = await this.withTimeout(i, i.command(cdb, opts));
      } catch {
        // The connection failed or the command went unanswered: a new session, the command again.
        if (this.session === i) {
          i.close();
          this.session = undefined;
        }
        reissue = true;
        continue;
      }
      this.answered.get(i)?.add(itt);
      this.countDuplicates(i);
      if (r.status === 0) {
        this.completed++;
        return r.data;
      }
      const key = r.sense.length > 2 ? ((r.sense[0] & 0x7f) >= 0x72 ? r.sense[1] & 0x0f : r.sense[2] & 0x0f) : -1;
      const asc = r.sense.length > 13 ? ((r.sense[0] & 0x7f) >= 0x72 ? r.sense.readUInt16BE(2) : r.sense.readUInt16BE(12)) : -1;
      const name = asc.toString(16).padStart(4, '0');
      if (r.status === 0x02 && key === 0x06 && ++uas < 8) {
        this.stats.unitAttentions.set(name, (this.stats.unitAttentions.get(name) ?? 0) + 1);
        continue;
      }
      this.stats.errors.push(`${cdb[0].toString(16)} at LBA ${cdb.readUInt32BE(2)}: status 0x${r.status.toString(16)} sense key ${key} ASC/ASCQ ${name}`);
      return undefined;
    }
  }

  /** Responses queued for a command the session already completed. */
  private countDuplicates(i: RawInitiator): void {
    const done = this.answered.get(i);
    if (!done) return;
    for (let k = i.pdus.length - 1; k >= 0; k--) {
      const p = i.pdus[k];
      const status = p.opcode === 0x21 || (p.opcode === 0x25 && (p.flags & 0x01) !== 0);
      if (status && done.has(p.itt)) {
        this.stats.duplicates++;
        i.pdus.splice(k, 1);
      }
    }
  }

  private withTimeout<T>(i: RawInitiator, p: Promise<T>): Promise<T> {
    const ms = this.o.commandTimeoutMs ?? 20_000;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('command timed out')), ms);
      p.then((v) => {
        clearTimeout(t);
        resolve(v);
      }, (e) => {
        clearTimeout(t);
        reject(e);
      });
      void i;
    });
  }

  /** The live session, or a new one (one login at a time, retried while the target is away). */
  private connection(): Promise<RawInitiator> {
    if (this.session && !this.session.closed) return Promise.resolve(this.session);
    this.connecting ??= this.login().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async login(): Promise<RawInitiator> {
    const deadline = Date.now() + (this.o.reconnectLimitMs ?? 60_000);
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      try {
        const i = await RawInitiator.connect(this.o.port);
        this.isid.copy(i.isid);
        try {
          await i.login(this.o.target, this.o.loginKeys ?? {}, this.o.initiator);
          await this.o.onSession?.(i);
        } catch (e) {
          i.close();
          throw e;
        }
        if (this.logins++ > 0) this.stats.reconnects++;
        this.session = i;
        this.answered.set(i, new Set());
        i.socket.once('close', () => this.countDuplicates(i));
        void this.watchLogoutRequest(i);
        return i;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`could not log in again within ${this.o.reconnectLimitMs ?? 60_000} ms: ${(e as Error).message}`);
        await sleep(delay);
      }
    }
  }

  /** A target's Async Message asking to log out: a logout, then the next command logs in again. */
  private async watchLogoutRequest(i: RawInitiator): Promise<void> {
    for (;;) {
      let p;
      try {
        p = await i.next((x) => x.opcode === 0x32, 3_600_000);
      } catch {
        return; // closed
      }
      if (p.bhs[36] !== 1) continue;
      this.stats.logoutRequests++;
      if (this.session === i) this.session = undefined;
      await i.logout().catch(() => undefined);
      i.close();
      return;
    }
  }
}
