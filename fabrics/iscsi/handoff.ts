// Connections handed between threads (io_threads > 1). One thread listens on a
// portal (ip:port); targets listing it may live on other threads. A login
// naming such a target is not answered here: the connection's socket (a
// duplicate of its fd) and every byte read from it so far (the login request,
// and whatever the initiator pipelined behind it) go to the target's thread,
// which logs it in from the start. A first request continued over several
// PDUs (C bit) was acknowledged here PDU by PDU before its TargetName came:
// its PDUs go along, and the receiving thread replays them without answering
// again what was answered. So a session, its reinstatement (same
// initiator port) and all its connections stay on the target's thread.
//
// The fabric knows nothing of threads: whoever runs it (the daemon's I/O
// thread) sets a router saying who listens where, where each target lives, and
// how to reach another thread, and calls adopt() with what reaches this one.

import { Socket } from 'node:net';
import { closeSync } from 'node:fs';
import { log } from '../../src/core/log';

/** A connection on its way to another thread. */
export interface Handoff {
  /** The portal it came in on, as configured. */
  ip: string;
  port: number;
  /** A duplicate of the socket's fd, now owned by the receiving thread. */
  fd: number;
  /** Bytes read from the socket and not acted on: the first login request and what followed it. */
  bytes: Buffer;
  /**
   * Login Responses already sent for the first request, which continued over several PDUs (C bit, each
   * acknowledged with an empty response): the receiving thread numbers them again but does not resend them.
   */
  answered?: number;
}

/** A target of another thread, as SendTargets lists it. */
export interface RemoteTpg {
  wwn: string;
  tag: number;
  enabled: boolean;
  /** Initiators with an ACL. */
  acls: string[];
  /** Demo mode with demo_mode_discovery: any initiator sees it. */
  openDiscovery: boolean;
  portals: { ip: string; port: number }[];
}

export interface ConnectionRouter {
  /** Whether this thread listens on ip:port (otherwise another thread does and hands connections over). */
  listens(ip: string, port: number): boolean;
  /** The thread serving target wwn through ip:port, when it is another one. */
  homeOf(ip: string, port: number, wwn: string): number | undefined;
  send(to: number, h: Handoff): void;
  /** Every iSCSI TPG served on other threads. */
  remoteTpgs(): readonly RemoteTpg[];
}

let router: ConnectionRouter | undefined;

export function setConnectionRouter(r: ConnectionRouter | undefined): void {
  router = r;
}

export function connectionRouter(): ConnectionRouter | undefined {
  return router;
}

/** Where adopted connections go: the portal registry's portal for ip:port on this thread (set by portal-registry.ts). */
let adopter: ((h: Handoff, socket: Socket) => boolean) | undefined;

export function setAdopter(f: (h: Handoff, socket: Socket) => boolean): void {
  adopter = f;
}

/** A connection another thread handed to this one: served by this thread's portal for its ip:port, or closed. */
export function adopt(h: Handoff): void {
  let socket: Socket;
  try {
    // Paused: the portal's connection reads into receive slabs, after the bytes already read.
    socket = new Socket({ fd: h.fd, readable: true, writable: true, pauseOnCreate: true } as never);
  } catch (e) {
    log.warn(`iscsi: a connection handed over for ${h.ip}:${h.port} could not be opened: ${(e as Error).message}`);
    closeSync(h.fd);
    return;
  }
  if (adopter?.(h, socket) !== true) {
    log.notice(`iscsi: a connection handed over for ${h.ip}:${h.port} found no portal here; closed`);
    socket.destroy();
  }
}
