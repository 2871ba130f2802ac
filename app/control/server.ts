// The control API's transport: JSON-RPC 2.0 over a unix socket (mode 0600),
// one request or batch per line. It checks each request, decodes its params
// against the method's declaration, runs the methods one at a time (each sees
// the config the previous one left), and turns what they throw into JSON-RPC
// errors. The methods themselves live in methods/, one file per subsystem;
// what a change does to the daemon is context.ts's.

import { createServer, connect, type Server, type Socket } from 'node:net';
import { chmodSync, existsSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { peerCredentials } from '../../native';
import { dirname } from 'node:path';
import { ConfigError, formatIssue } from '../config/config';
import { DEFAULT_SAVE_PATH } from '../config/save';
import { didYouMean } from '../config/validation';
import type { Live } from '../daemon/reconcile';
import { log } from '../../src/core/log';
import { RpcCode } from './wire';
import { decodeParams, isObj, RpcError } from './params';
import { ControlContext, type MethodTable } from './context';
import { CONTROL_METHODS } from './methods/index';
import { runMethod } from './threads';

export interface ControlOptions {
  /** Where saveconfig writes and restoreconfig reads by default. */
  savePath?: string;
}

export class Control {
  private queue: Promise<unknown> = Promise.resolve();
  readonly methods: MethodTable = CONTROL_METHODS;
  private readonly context: ControlContext;

  constructor(
    readonly live: Live,
    opts: ControlOptions = {},
  ) {
    this.context = new ControlContext(live, opts.savePath ?? DEFAULT_SAVE_PATH, this.methods);
  }

  get savePath(): string {
    return this.context.savePath;
  }

  /** True when the live config differs from what was last loaded or saved. */
  get dirty(): boolean {
    return this.context.dirty;
  }

  /** One line of input; returns the line to answer with, or undefined for notifications. */
  async handleLine(line: string, who?: string): Promise<string | undefined> {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch (e) {
      return JSON.stringify(errorReply(null, RpcCode.PARSE, `parse error: ${(e as Error).message}`));
    }
    if (Array.isArray(msg)) {
      if (msg.length === 0) return JSON.stringify(errorReply(null, RpcCode.INVALID_REQUEST, 'invalid request: empty batch'));
      const replies = (await Promise.all(msg.map((m) => this.handle(m, who)))).filter((r) => r !== undefined);
      return replies.length > 0 ? JSON.stringify(replies) : undefined;
    }
    const r = await this.handle(msg, who);
    return r === undefined ? undefined : JSON.stringify(r);
  }

  /** Runs one method as the daemon itself (SIGHUP's reload): queued like a request, logged like one. */
  async invoke(method: string, params: Record<string, unknown>, who: string): Promise<{ result?: unknown; error?: string }> {
    const r = (await this.handle({ jsonrpc: '2.0', id: 0, method, params }, who)) as { result?: unknown; error?: { message: string } };
    return r.error ? { error: r.error.message } : { result: r.result };
  }

  /** One request; who says where it came from (the peer's uid and program), for the log of changes. */
  async handle(msg: unknown, who = 'unknown peer'): Promise<object | undefined> {
    if (!isObj(msg)) return errorReply(null, RpcCode.INVALID_REQUEST, 'invalid request: not a JSON object');
    const id = msg.id;
    const idOk = id === undefined || id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id));
    if (!idOk) return errorReply(null, RpcCode.INVALID_REQUEST, 'invalid request: id must be a string, a number or null');
    const rid = (id ?? null) as string | number | null;
    if (msg.jsonrpc !== '2.0') return errorReply(rid, RpcCode.INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"');
    if (typeof msg.method !== 'string') return errorReply(rid, RpcCode.INVALID_REQUEST, 'invalid request: method must be a string');
    const extra = Object.keys(msg).filter((k) => !['jsonrpc', 'method', 'params', 'id'].includes(k));
    if (extra.length > 0) return errorReply(rid, RpcCode.INVALID_REQUEST, `invalid request: unknown member '${extra[0]}'`);
    const notification = !('id' in msg);
    const def = Object.prototype.hasOwnProperty.call(this.methods, msg.method) ? this.methods[msg.method] : undefined;
    let reply: object;
    if (!def) {
      const guess = didYouMean(msg.method, Object.keys(this.methods));
      reply = errorReply(rid, RpcCode.METHOD, `method not found: ${msg.method}${guess ? ` (did you mean ${guess}?)` : ''}`);
    } else {
      try {
        const p = decodeParams(msg.method, def.params, msg.params);
        // One change at a time: each sees the config the previous one left.
        const run = this.queue.then(async () => {
          const before = this.live.config;
          const result = await runMethod(msg.method as string, def, p, this.context);
          // Every change of the configuration (and every save) is logged with who asked and what.
          if (this.live.config !== before || def.audit) log.notice(`control: ${who}: ${msg.method}${auditParams(p)}`);
          return result;
        });
        this.queue = run.catch(() => {});
        reply = { jsonrpc: '2.0', id: rid, result: (await run) ?? null };
      } catch (e) {
        if (e instanceof RpcError) reply = errorReply(rid, e.code, e.message);
        else if (e instanceof ConfigError) reply = errorReply(rid, RpcCode.PARAMS, configMessage(e));
        else {
          log.warn(`control: ${msg.method} failed`, e);
          reply = errorReply(rid, RpcCode.FAILED, `${msg.method} failed: ${(e as Error).message ?? String(e)}`);
        }
      }
    }
    return notification ? undefined : reply;
  }
}

// ---------------------------------------------------------------------------

/** A request's parameters for the log, secrets left out. */
function auditParams(p: Record<string, unknown>): string {
  const text = JSON.stringify(p, (k, v) => (/password|secret/i.test(k) && typeof v === 'string' ? '***' : v));
  return text === '{}' ? '' : ` ${text}`;
}

function errorReply(id: string | number | null, code: number, message: string): object {
  return { jsonrpc: '2.0', id, error: { code, message } };
}

/** A request's own edits are named by path; a file's problems by FILE:LINE too. */
function configMessage(e: ConfigError): string {
  if (e.source !== '<control>') return e.errors.map((i) => formatIssue(e.source, i)).join('; ');
  return e.errors.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
}

// ---------------------------------------------------------------------------
// The socket

/** Listens on a unix socket (mode 0600); a stale socket file is replaced, a live one refused. */
export async function listenControl(control: Control, path: string): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (existsSync(path)) {
    const alive = await new Promise<boolean>((res) => {
      const c = connect(path);
      c.once('connect', () => (c.destroy(), res(true)));
      c.once('error', () => res(false));
    });
    if (alive) throw new Error(`${path}: another tsiod is listening there`);
    unlinkSync(path);
  }
  const server = createServer((sock) => serveConnection(control, sock, peerName(sock)));
  // The socket is created under a 0077 umask so no other user can race the chmod.
  const old = process.umask(0o077);
  try {
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(path, () => res());
    });
  } finally {
    process.umask(old);
  }
  chmodSync(path, 0o600);
  server.on('error', (e) => log.warn(`control socket: ${e.message}`));
  return server;
}

const MAX_LINE = 16 << 20;

/** "uid 0 (root), pid 123 (tcli /iscsi create ...)": the peer of a control connection, from SO_PEERCRED. */
function peerName(sock: Socket): string {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) return 'unknown peer';
  try {
    const c = peerCredentials(fd);
    let program = '';
    try {
      program = readFileSync(`/proc/${c.pid}/cmdline`, 'utf8').split('\0').filter((w) => w !== '').map((w) => w.replace(/^.*\/(tcli|tsiod)(\.js)?$/, '$1')).filter((w, i) => !(i === 0 && /(^|\/)node$/.test(w))).join(' ').replace(/(password|secret)=\S+/gi, '$1=***').slice(0, 200);
    } catch {
      program = '?';
    }
    return `uid ${c.uid}${userName(c.uid)}, pid ${c.pid} (${program})`;
  } catch {
    return 'unknown peer';
  }
}

function userName(uid: number): string {
  try {
    const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.split(':')[2] === String(uid));
    return line ? ` (${line.split(':')[0]})` : '';
  } catch {
    return '';
  }
}

function serveConnection(control: Control, sock: Socket, who: string): void {
  let buf = '';
  let chain = Promise.resolve();
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_LINE && !buf.includes('\n')) {
      sock.end(JSON.stringify(errorReply(null, RpcCode.INVALID_REQUEST, `invalid request: line longer than ${MAX_LINE} bytes`)) + '\n');
      buf = '';
      return;
    }
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === '') continue;
      // Replies leave in request order.
      chain = chain.then(async () => {
        const reply = await control.handleLine(line, who);
        if (reply !== undefined && !sock.destroyed) sock.write(reply + '\n');
      });
    }
  });
  sock.on('error', () => sock.destroy());
}
