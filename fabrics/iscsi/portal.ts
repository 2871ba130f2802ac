// A network portal: one TCP listener on an address and port, shared by every
// TPG (of any target) that lists it (portal-registry.ts). Each connection it
// accepts starts in login (login.ts), which finds its target among the TPGs
// the portal serves. With I/O threads, one thread listens and a login naming
// a target of another thread moves there (handoff.ts).

import { createServer, type Server, type Socket } from 'node:net';
import type { Root } from '../../src/model/root';
import type { Auth, Tpg } from '../../src/model/target';
import { log } from '../../src/core/log';
import { Connection } from './connection';
import { LoginMachine, type LoginPortal } from './login';
import { connectionRouter, type Handoff } from './handoff';

export class Portal implements LoginPortal {
  readonly tpgs = new Set<Tpg>();
  readonly connections = new Set<Connection>();
  /** Every connection's socket not yet closed: one that ended (logged out) may still be flushing its last PDUs. */
  private readonly sockets = new Set<Socket>();
  private drained: (() => void) | undefined;
  private readonly server: Server;
  /** Set once it stops accepting: resolves when the listener is closed (its connections gone too). */
  private closed: Promise<void> | undefined;
  private readonly forget = (c: Connection): void => {
    this.connections.delete(c);
  };

  constructor(
    readonly ip: string,
    readonly port: number,
    readonly root: Root,
  ) {
    // Paused: a connection's socket reads into receive slabs from its first byte (rx-slab.ts).
    this.server = createServer({ noDelay: true, pauseOnConnect: true }, (s: Socket) => this.accept(s));
    this.server.on('error', (e) => log.warn(`iscsi: portal ${ip}:${port}: ${e.message}`));
  }

  get listening(): boolean {
    return this.server.listening;
  }

  /**
   * Listens; `retries` times 100 ms more while the address is in use (another thread giving the portal
   * up closes its listener at the same time).
   */
  async listen(retries = 0): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        return await this.listenOnce();
      } catch (e) {
        if (i >= retries || !/EADDRINUSE/.test((e as Error).message)) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Stops listening (another thread listens now); connections stay. */
  unlisten(): void {
    if (this.server.listening) this.server.close();
  }

  private listenOnce(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(new Error(`iscsi: cannot listen on ${this.ip}:${this.port}: ${e.message}`));
      this.server.once('error', onError);
      this.server.listen({ host: this.ip, port: this.port, ipv6Only: this.ip.includes(':') && this.ip !== '::' }, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  /** The port actually bound (port 0 in tests). */
  get boundPort(): number {
    const a = this.server.address();
    return a && typeof a === 'object' ? a.port : this.port;
  }

  /** answered: Login Responses another thread already sent on it (handoff.ts). */
  private accept(s: Socket, answered = 0): Connection | undefined {
    if (this.tpgs.size === 0) {
      s.destroy();
      return undefined;
    }
    const c = new Connection(s, this.forget);
    // The connection's socket (slabSocket moved the handle to it: the server no longer counts it).
    this.sockets.add(c.socket);
    c.socket.once('close', () => {
      this.sockets.delete(c.socket);
      if (this.sockets.size === 0) this.drained?.();
    });
    c.login = new LoginMachine(c, this, answered);
    this.connections.add(c);
    return c;
  }

  /** A connection another thread accepted on this portal, for a target served here: its login starts over here. */
  adopt(s: Socket, h: Handoff): void {
    // A Buffer crosses threads as a plain Uint8Array.
    this.accept(s, h.answered ?? 0)?.replay(Buffer.from(h.bytes.buffer, h.bytes.byteOffset, h.bytes.byteLength));
  }

  handOff(conn: Connection, targetName: string, pdu: Buffer[], answered: number): boolean {
    const router = connectionRouter();
    if (router === undefined || [...this.tpgs].some((t) => t.target.wwn === targetName)) return false;
    const to = router.homeOf(this.ip, this.port, targetName);
    if (to === undefined) return false;
    const first = Buffer.concat(pdu);
    const given = conn.handOff();
    if (given === undefined) return false;
    router.send(to, { ip: this.ip, port: this.port, fd: given.fd, bytes: Buffer.concat([first, given.rest]), answered });
    return true;
  }

  /** Discovery CHAP settings (fabric_modules: iscsi discovery_auth). */
  discoveryAuth(): Auth & { enable?: boolean } {
    return this.root.fabricSettings.get('iscsi')?.discovery_auth ?? {};
  }

  /**
   * Stops accepting connections and ends those still logging in; sessions in
   * full feature phase keep theirs (a shutdown lets them drain first).
   */
  stop(): void {
    this.closed ??= this.server.listening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
    for (const c of [...this.connections]) if (!c.ffp) c.destroy();
  }

  /**
   * Stops accepting, then waits for the connections to end (their sessions
   * end them; a logged-out one flushes its Logout Response) for `flushMs` at
   * most; those left then are dropped.
   */
  async close(flushMs = 0): Promise<void> {
    this.stop();
    if (flushMs > 0 && this.sockets.size > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, flushMs);
        t.unref();
        this.drained = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    for (const c of [...this.connections]) c.destroy();
    for (const s of this.sockets) s.destroy();
    await this.closed;
  }
}
