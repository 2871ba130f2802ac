// PERSISTENT RESERVE IN/OUT as an initiator sends them, for the PR tests.
import type { LoopbackNexus, LoopbackResult } from '../../fabrics/loopback/loopback';

export const SA = { REGISTER: 0, RESERVE: 1, RELEASE: 2, CLEAR: 3, PREEMPT: 4, PREEMPT_AND_ABORT: 5, REGISTER_AND_IGNORE: 6, REGISTER_AND_MOVE: 7 };
export const TYPES = { WE: 1, EA: 3, WE_RO: 5, EA_RO: 6, WE_AR: 7, EA_AR: 8 } as const;

export interface OutFlags {
  specIpt?: boolean;
  allTgPt?: boolean;
  aptpl?: boolean;
  /** Appended after the 24 bytes (SPEC_I_PT TransportIDs with their length). */
  extra?: Buffer;
  /** Overrides the parameter list length in the CDB. */
  length?: number;
}

export function prOutCdb(sa: number, type: number, length: number): Buffer {
  const cdb = Buffer.alloc(10);
  cdb[0] = 0x5f;
  cdb[1] = sa;
  cdb[2] = type;
  cdb.writeUInt32BE(length, 5);
  return cdb;
}

export function prOut(n: LoopbackNexus, lun: number, sa: number, type: number, key: bigint, saKey: bigint,
  f: OutFlags = {}): Promise<LoopbackResult> {
  const p = Buffer.alloc(24);
  p.writeBigUInt64BE(key, 0);
  p.writeBigUInt64BE(saKey, 8);
  p[20] = (f.specIpt ? 8 : 0) | (f.allTgPt ? 4 : 0) | (f.aptpl ? 1 : 0);
  const data = f.extra ? Buffer.concat([p, f.extra]) : p;
  return n.command(lun, prOutCdb(sa, type, f.length ?? data.length), { dataOut: data });
}

export function prIn(n: LoopbackNexus, lun: number, sa: number, alloc = 1024): Promise<LoopbackResult> {
  return n.command(lun, [0x5e, sa, 0, 0, 0, 0, 0, alloc >> 8, alloc & 0xff, 0]);
}

export async function readKeys(n: LoopbackNexus, lun = 0): Promise<{ generation: number; keys: bigint[] }> {
  const r = await prIn(n, lun, 0);
  if (r.status !== 0) throw new Error(`READ KEYS failed: status ${r.status}`);
  const keys: bigint[] = [];
  for (let i = 0; i < r.data.readUInt32BE(4); i += 8) keys.push(r.data.readBigUInt64BE(8 + i));
  return { generation: r.data.readUInt32BE(0), keys };
}

export async function readReservation(n: LoopbackNexus, lun = 0): Promise<{ key: bigint; type: number } | undefined> {
  const r = await prIn(n, lun, 1);
  if (r.status !== 0) throw new Error(`READ RESERVATION failed: status ${r.status}`);
  if (r.data.readUInt32BE(4) === 0) return undefined;
  return { key: r.data.readBigUInt64BE(8), type: r.data[21] & 0x0f };
}

export const READ10 = (lba = 0, n = 1): number[] => [0x28, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, n, 0];
export const WRITE10 = (lba = 0, n = 1): number[] => [0x2a, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, n, 0];

/** SAS TransportID of a loopback initiator named naa.<16 hex>. */
export function sas(name: string): Buffer {
  const t = Buffer.alloc(24);
  t[0] = 6;
  Buffer.from(name.slice(4), 'hex').copy(t, 4);
  return t;
}
