// A TCP tunnel over one virtio-serial port, for guests that have no network (-nic none) but must reach
// servers on the host (gateways that need the host's Ceph). In the guest, `node serial-tunnel.js --guest
// DEVICE PORT...` listens on 127.0.0.1:PORT for each PORT; every accepted connection becomes a stream over
// the port, and the host side (startTunnelHost, on QEMU's chardev socket) opens a TCP connection to the
// matching target for each stream. Ends and resets go both ways: a connection the host cannot make, or one
// its server resets or drops, is reset in the guest, so a dead server looks dead to the guest.
//
// Frames: stream id (u32), type (u8), payload length (u32), payload. OPEN carries the index of the
// listening port (u8); DATA bytes; END a half close; RESET an abort.

import { existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { createReadStream, createWriteStream } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';

const T = { OPEN: 1, DATA: 2, END: 3, RESET: 4 } as const;
const HDR = 9;

/** One side of the tunnel: frames in from `rx`, out to `tx`, a socket per stream id. */
class Mux {
  private readonly streams = new Map<number, Socket>();
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly tx: Writable, rx: Readable, private readonly onOpen: (id: number, index: number) => Socket | undefined) {
    rx.on('data', (d: Buffer) => this.receive(d));
  }

  private send(id: number, type: number, payload: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(HDR);
    h.writeUInt32BE(id, 0);
    h[4] = type;
    h.writeUInt32BE(payload.length, 5);
    this.tx.write(payload.length ? Buffer.concat([h, payload]) : h);
  }

  /** Ties a socket to stream `id`: its bytes, end and reset go out as frames. */
  attach(id: number, s: Socket, index?: number): void {
    this.streams.set(id, s);
    if (index !== undefined) this.send(id, T.OPEN, Buffer.from([index]));
    let ended = false;
    s.on('data', (d: Buffer) => this.send(id, T.DATA, d));
    s.on('end', () => {
      ended = true;
      this.send(id, T.END);
    });
    s.on('error', () => {});
    s.on('close', (hadError) => {
      if (this.streams.get(id) !== s) return;
      this.streams.delete(id);
      if (hadError || !ended) this.send(id, T.RESET);
    });
  }

  private receive(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    while (this.buf.length >= HDR) {
      const len = this.buf.readUInt32BE(5);
      if (this.buf.length < HDR + len) break;
      const id = this.buf.readUInt32BE(0);
      const type = this.buf[4];
      const payload = this.buf.subarray(HDR, HDR + len);
      this.buf = this.buf.subarray(HDR + len);
      const s = this.streams.get(id);
      if (type === T.OPEN) {
        const n = this.onOpen(id, payload[0]);
        if (n) this.attach(id, n);
        else this.send(id, T.RESET);
      } else if (type === T.DATA) s?.write(payload);
      else if (type === T.END) s?.end();
      else if (type === T.RESET && s) {
        this.streams.delete(id);
        s.resetAndDestroy();
      }
    }
  }
}

export interface TunnelHost {
  /** Stops accepting streams and drops the connection to QEMU. */
  close(): void;
  /** Streams opened so far, per target index. */
  opened: number[];
}

/**
 * The host end: connects to QEMU's chardev socket `path` (retrying while QEMU starts) and forwards each
 * stream the guest opens on its port index i to targets[i] (a TCP port on 127.0.0.1).
 */
export async function startTunnelHost(path: string, targets: number[]): Promise<TunnelHost> {
  const until = Date.now() + 30_000;
  let q: Socket | undefined;
  while (!q) {
    q = await new Promise<Socket | undefined>((resolve) => {
      const s = connect(path);
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (!q) {
      if (Date.now() > until) throw new Error(`QEMU's tunnel socket ${path} never accepted a connection`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const qs = q;
  const opened = targets.map(() => 0);
  const live = new Set<Socket>();
  new Mux(qs, qs, (_id, index) => {
    if (index >= targets.length) return undefined;
    opened[index]++;
    const s = connect({ host: '127.0.0.1', port: targets[index] });
    live.add(s);
    s.on('close', () => live.delete(s));
    return s;
  });
  qs.on('error', () => {});
  return {
    opened,
    close() {
      for (const s of live) s.destroy();
      qs.destroy();
    },
  };
}

/** QEMU arguments for the virtio-serial port the tunnel runs over, its chardev a socket at `path`. */
export function tunnelQemuArgs(path: string): string[] {
  return [
    '-device', 'virtio-serial-pci,id=vser0',
    '-chardev', `socket,path=${path},server=on,wait=off,id=tunnel0`,
    '-device', 'virtserialport,bus=vser0.0,chardev=tunnel0,name=tsio.tunnel',
  ];
}

/** The guest's character device of the port named `name` (virtio_console must be loaded). */
function portDevice(name: string): string | undefined {
  const base = '/sys/class/virtio-ports';
  if (!existsSync(base)) return undefined;
  for (const p of readdirSync(base)) {
    if (readFileSync(`${base}/${p}/name`, 'utf8').trim() === name) return `/dev/${p}`;
  }
  return undefined;
}

/**
 * The guest end: listens on 127.0.0.1:ports[i] and opens a stream with index i per connection; `name` is
 * the port's name, or a character device's path.
 */
async function guestMain(name: string, ports: number[]): Promise<void> {
  let dev: string | undefined = name.startsWith('/') ? name : undefined;
  for (let i = 0; i < 100 && !dev && !(dev = portDevice(name)); i++) await new Promise((r) => setTimeout(r, 100));
  if (!dev || !existsSync(dev)) throw new Error(`no virtio-serial port named ${name}`);
  const fd = openSync(dev, 'r+');
  const rx = createReadStream('', { fd, autoClose: false, highWaterMark: 256 * 1024 });
  const tx = createWriteStream('', { fd, autoClose: false });
  for (const st of [rx, tx] as NodeJS.EventEmitter[]) {
    st.on('error', (e: Error) => {
      console.error(`tunnel: ${dev}: ${e.message}`);
      process.exit(1);
    });
  }
  const mux = new Mux(tx, rx, () => undefined);
  let next = 1;
  await Promise.all(ports.map((port, index) => new Promise<void>((resolve) => {
    const srv = createServer((s) => mux.attach(next++, s, index));
    srv.listen(port, '127.0.0.1', () => resolve());
  })));
  console.log(`tunnel: listening on ${ports.join(', ')} over ${dev}`);
}

if (require.main === module && process.argv[2] === '--guest') {
  guestMain(process.argv[3], process.argv.slice(4).map(Number)).catch((e) => {
    console.error(`tunnel: ${(e as Error).message}`);
    process.exit(1);
  });
}
