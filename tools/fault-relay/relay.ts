// A fault-injecting TCP relay for iSCSI (or any TCP) between an initiator
// and a target: each connection accepted is forwarded to the target, and a
// seeded schedule hits live connections with faults:
//   drop       both sides closed in order (FIN)
//   reset      both sides reset (RST)
//   stall      nothing forwarded either way for a while, then all of it
//   blackhole  nothing forwarded ever again; the initiator's side may close,
//              the target's stays open (a dead path the target has not noticed:
//              the initiator's next login reinstates its session)
//   delay      every chunk held for a random time (order kept)
//   corrupt    (iSCSI with digests) a byte of a Data-Out PDU's data segment
//              flipped, its digest left: a data digest error the target must
//              recover (ERL 1) or fail the command (ERL 0)
// The same seed gives the same sequence of draws (the timing of the traffic
// still decides which connection a fault meets).

import { connect, createServer, type Server, type Socket } from 'node:net';

export interface FaultRates {
  /** Per live connection and second: the chance of each fault starting. */
  drop?: number;
  reset?: number;
  stall?: number;
  blackhole?: number;
  /** Stall length range, ms (default 200..3000). */
  stallMs?: [number, number];
  /** Per-chunk delay range, ms (default none). */
  delayMs?: [number, number];
  /** Per Data-Out PDU: the chance its data is corrupted (needs `digests`). */
  corruptDataOut?: number;
}

export interface RelayOptions {
  targetPort: number;
  targetHost?: string;
  /** Port to listen on (127.0.0.1); 0: any free one. */
  port?: number;
  seed?: number;
  faults?: FaultRates;
  /** The sessions negotiate HeaderDigest and DataDigest CRC32C: PDUs are framed with them after login. */
  digests?: boolean;
}

export interface RelayStats {
  connections: number;
  drops: number;
  resets: number;
  stalls: number;
  blackholes: number;
  corrupted: number;
  bytes: number;
}

/** mulberry32: small, seeded, good enough to pick faults (tests pick ranges and ops with it too). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TICK_MS = 100;

/** Splits a byte stream into iSCSI PDUs (BHS, AHS, digests, padded data); `digests` turns on after login. */
class PduFramer {
  private buf: Buffer = Buffer.alloc(0);
  digests = false;

  /** The complete PDUs now available. */
  push(b: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? b : Buffer.concat([this.buf, b]);
    const out: Buffer[] = [];
    for (;;) {
      const n = this.length();
      if (n === 0 || this.buf.length < n) break;
      out.push(this.buf.subarray(0, n));
      this.buf = this.buf.subarray(n);
    }
    return out;
  }

  private length(): number {
    if (this.buf.length < 48) return 0;
    const ahs = this.buf[4] * 4;
    const dlen = this.buf.readUIntBE(5, 3);
    const hd = this.digests ? 4 : 0;
    const dd = this.digests && dlen > 0 ? 4 : 0;
    return 48 + ahs + hd + dlen + ((4 - (dlen & 3)) & 3) + dd;
  }
}

/** One direction of a relayed connection: chunks leave in order, when due and not stalled. */
class Pipe {
  private readonly queue: { due: number; b: Buffer }[] = [];
  private lastDue = 0;
  holdUntil = 0;
  dead = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly to: Socket) {}

  push(b: Buffer, delay: number): void {
    if (this.dead) return;
    const due = Math.max(this.lastDue, Date.now() + delay);
    this.lastDue = due;
    this.queue.push({ due, b });
    this.pump();
  }

  pump(): void {
    if (this.dead) return;
    const now = Date.now();
    while (this.queue.length > 0 && this.queue[0].due <= now && now >= this.holdUntil) {
      const { b } = this.queue.shift()!;
      if (!this.to.destroyed) this.to.write(b);
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queue.length > 0) this.timer = setTimeout(() => this.pump(), Math.max(1, Math.max(this.queue[0].due, this.holdUntil) - now));
  }

  stop(): void {
    this.dead = true;
    clearTimeout(this.timer);
    this.queue.length = 0;
  }
}

interface Pair {
  client: Socket;
  server: Socket;
  up: Pipe;
  down: Pipe;
  blackholed: boolean;
  closed: boolean;
}

export class FaultRelay {
  readonly stats: RelayStats = { connections: 0, drops: 0, resets: 0, stalls: 0, blackholes: 0, corrupted: 0, bytes: 0 };
  private readonly server: Server;
  private readonly pairs = new Set<Pair>();
  private readonly random: () => number;
  private ticker: NodeJS.Timeout | undefined;
  /** Faults on or off (a test turns them off to let its client finish). */
  active = true;

  constructor(private readonly o: RelayOptions) {
    this.random = rng(o.seed ?? 1);
    this.server = createServer({ noDelay: true }, (c) => this.accept(c));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port ?? 0, '127.0.0.1', () => resolve());
    });
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    return (this.server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    clearInterval(this.ticker);
    for (const p of this.pairs) this.end(p, 'destroy', true);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private delay(): number {
    const d = this.o.faults?.delayMs;
    return d && this.active ? d[0] + this.random() * (d[1] - d[0]) : 0;
  }

  private accept(client: Socket): void {
    this.stats.connections++;
    const server = connect({ port: this.o.targetPort, host: this.o.targetHost ?? '127.0.0.1' });
    client.setNoDelay(true);
    server.setNoDelay(true);
    const p: Pair = { client, server, up: new Pipe(server), down: new Pipe(client), blackholed: false, closed: false };
    this.pairs.add(p);
    const toTarget = new PduFramer();
    const toInitiator = new PduFramer();
    const framed = this.o.digests === true;
    client.on('data', (b: Buffer) => {
      this.stats.bytes += b.length;
      if (!framed) return p.up.push(b, this.delay());
      for (const pdu of toTarget.push(b)) {
        if (toTarget.digests) this.maybeCorrupt(pdu);
        p.up.push(pdu, this.delay());
      }
    });
    server.on('data', (b: Buffer) => {
      this.stats.bytes += b.length;
      if (!framed) return p.down.push(b, this.delay());
      for (const pdu of toInitiator.push(b)) {
        // The last login response (T, NSG full feature phase, success): digests from the next PDU on, both ways.
        if (!toInitiator.digests && (pdu[0] & 0x3f) === 0x23 && (pdu[1] & 0x83) === 0x83 && pdu[36] === 0) {
          toInitiator.digests = true;
          toTarget.digests = true;
        }
        p.down.push(pdu, this.delay());
      }
    });
    client.on('error', () => {});
    server.on('error', () => {});
    // One side gone: the other follows, except the target's side of a black hole (it has not noticed).
    client.on('close', () => {
      if (!p.blackholed) this.end(p, 'end');
    });
    server.on('close', () => this.end(p, 'end', true));
  }

  private maybeCorrupt(pdu: Buffer): void {
    const rate = this.o.faults?.corruptDataOut ?? 0;
    if (!this.active || rate === 0 || (pdu[0] & 0x3f) !== 0x05) return;
    const dlen = pdu.readUIntBE(5, 3);
    if (dlen === 0 || this.random() >= rate) return;
    const at = 48 + pdu[4] * 4 + 4 + Math.floor(this.random() * dlen);
    pdu[at] ^= 0xff;
    this.stats.corrupted++;
  }

  private end(p: Pair, how: 'end' | 'destroy' | 'reset', all = false): void {
    if (p.closed) return;
    if (p.blackholed && !all) {
      p.client.destroy();
      return;
    }
    p.closed = true;
    this.pairs.delete(p);
    p.up.stop();
    p.down.stop();
    for (const s of [p.client, p.server]) {
      if (how === 'reset') s.resetAndDestroy();
      else if (how === 'end') s.end();
      else s.destroy();
    }
  }

  private tick(): void {
    if (!this.active) return;
    const f = this.o.faults ?? {};
    const per = TICK_MS / 1000;
    for (const p of [...this.pairs]) {
      if (p.blackholed) continue;
      const r = this.random();
      let acc = 0;
      if (r < (acc += (f.drop ?? 0) * per)) {
        this.stats.drops++;
        this.end(p, 'end');
      } else if (r < (acc += (f.reset ?? 0) * per)) {
        this.stats.resets++;
        this.end(p, 'reset');
      } else if (r < (acc += (f.blackhole ?? 0) * per)) {
        this.stats.blackholes++;
        p.blackholed = true;
        p.up.stop();
        p.down.stop();
      } else if (r < (acc += (f.stall ?? 0) * per)) {
        this.stats.stalls++;
        const [lo, hi] = f.stallMs ?? [200, 3000];
        const until = Date.now() + lo + this.random() * (hi - lo);
        p.up.holdUntil = p.down.holdUntil = until;
        p.up.pump();
        p.down.pump();
      }
    }
  }
}
