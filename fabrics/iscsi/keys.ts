// iSCSI text keys (RFC 7143 6, 13): key=value parsing and encoding, and the
// negotiation table: each key's type, range, result function and RFC default.
// The target's own values come from the TPG's parameters (LIO's names).

import type { AttributeValue } from '../../src/model/target';

export type KeyPairs = [string, string][];

const MAX_KEY = 63;
const MAX_VALUE = 8192;

/** key=value pairs of a text data segment, in order; an error string when malformed. */
export function parseText(data: Buffer): KeyPairs | string {
  const out: KeyPairs = [];
  let start = 0;
  const n = data.length;
  while (start < n) {
    let end = data.indexOf(0, start);
    if (end < 0) end = n;
    if (end > start) {
      const s = data.toString('utf8', start, end);
      const eq = s.indexOf('=');
      if (eq <= 0) return `malformed key=value text '${s.slice(0, 64)}'`;
      if (eq > MAX_KEY) return `key longer than ${MAX_KEY} bytes`;
      if (s.length - eq - 1 > MAX_VALUE) return `value of ${s.slice(0, eq)} too long`;
      out.push([s.slice(0, eq), s.slice(eq + 1)]);
    }
    start = end + 1;
  }
  return out;
}

export function encodeText(pairs: KeyPairs): Buffer {
  if (pairs.length === 0) return Buffer.alloc(0);
  return Buffer.from(pairs.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}

/** Result functions (RFC 7143 6.2). */
type Kind = 'list' | 'and' | 'or' | 'min' | 'max' | 'declare' | 'declare-num';

interface KeyDef {
  kind: Kind;
  /** RFC 7143 default, the value in force when nobody negotiates the key. */
  rfc: string;
  min?: number;
  max?: number;
  /** Only on the leading connection of a session. */
  leading?: boolean;
  /** Only in normal sessions (irrelevant in discovery). */
  normal?: boolean;
}

const U24 = 16777215;

/** Every operational key the target negotiates, with its semantics. */
export const KEYS: Record<string, KeyDef> = {
  HeaderDigest: { kind: 'list', rfc: 'None' },
  DataDigest: { kind: 'list', rfc: 'None' },
  MaxConnections: { kind: 'min', rfc: '1', min: 1, max: 65535, leading: true, normal: true },
  InitialR2T: { kind: 'or', rfc: 'Yes', leading: true, normal: true },
  ImmediateData: { kind: 'and', rfc: 'Yes', leading: true, normal: true },
  MaxRecvDataSegmentLength: { kind: 'declare-num', rfc: '8192', min: 512, max: U24 },
  MaxBurstLength: { kind: 'min', rfc: '262144', min: 512, max: U24, leading: true, normal: true },
  FirstBurstLength: { kind: 'min', rfc: '65536', min: 512, max: U24, leading: true, normal: true },
  DefaultTime2Wait: { kind: 'max', rfc: '2', min: 0, max: 3600, leading: true },
  DefaultTime2Retain: { kind: 'min', rfc: '20', min: 0, max: 3600, leading: true },
  MaxOutstandingR2T: { kind: 'min', rfc: '1', min: 1, max: 65535, leading: true, normal: true },
  DataPDUInOrder: { kind: 'or', rfc: 'Yes', leading: true, normal: true },
  DataSequenceInOrder: { kind: 'or', rfc: 'Yes', leading: true, normal: true },
  ErrorRecoveryLevel: { kind: 'min', rfc: '0', min: 0, max: 2, leading: true },
  // Markers are gone from RFC 7143; older initiators still offer them.
  OFMarker: { kind: 'and', rfc: 'No' },
  IFMarker: { kind: 'and', rfc: 'No' },
  iSCSIProtocolLevel: { kind: 'min', rfc: '1', min: 0, max: 31, leading: true },
};

/** What a session runs with once negotiation is over. */
export interface OperationalParams {
  headerDigest: boolean;
  dataDigest: boolean;
  maxConnections: number;
  initialR2T: boolean;
  immediateData: boolean;
  /** Largest data segment we accept (our declaration). */
  maxRecvDataSegmentLength: number;
  /** Largest data segment we send: the initiator's declaration, capped by our MaxXmitDataSegmentLength. */
  maxXmitDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxOutstandingR2T: number;
  dataPduInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
}

/** The highest ErrorRecoveryLevel tsio implements. */
export const MAX_ERL = 1;

/** What the TPG offers for a key (its parameter), or the RFC default. */
function ours(params: Record<string, AttributeValue>, key: string): string {
  const v = params[key];
  if (key === 'DataPDUInOrder' || key === 'DataSequenceInOrder') return 'Yes'; // we never reorder
  // Within-command and within-connection recovery (ERL 1) at most: no connection recovery (ERL 2).
  if (key === 'ErrorRecoveryLevel') return String(Math.min(MAX_ERL, Number(v ?? 0) || 0));
  if (key === 'OFMarker' || key === 'IFMarker') return 'No';
  if (key === 'iSCSIProtocolLevel') return '1';
  return v === undefined || v === '' ? KEYS[key].rfc : String(v);
}

const isNum = (v: string): boolean => /^(0|[1-9][0-9]{0,9}|0x[0-9a-fA-F]{1,8})$/.test(v);
const num = (v: string): number => Number(v);

export type NegotiationError = { status: 'initiator-error'; reason: string };

/**
 * One connection's operational negotiation. answer() takes the initiator's
 * keys from one login (or text) request and returns the target's replies;
 * results accumulate in `values`.
 */
export class Negotiation {
  /** Negotiated values by key (RFC default until negotiated). */
  readonly values = new Map<string, string>();
  private readonly seen = new Set<string>();
  /** Our offers not answered yet. */
  private readonly offered = new Set<string>();
  private declaredMrdsl = false;

  constructor(
    private readonly params: Record<string, AttributeValue>,
    private readonly leading: boolean,
    private discovery = false,
  ) {
    for (const [k, d] of Object.entries(KEYS)) this.values.set(k, d.rfc);
  }

  setDiscovery(d: boolean): void {
    this.discovery = d;
  }

  /** Answers operational keys; the login layer has already taken the login keys out. */
  answer(pairs: KeyPairs): { reply: KeyPairs } | NegotiationError {
    const reply: KeyPairs = [];
    // Offers of ours this request leaves unanswered keep the RFC default (no endless rounds).
    const unanswered = new Set(this.offered);
    for (const [k] of pairs) unanswered.delete(k);
    for (const k of unanswered) this.offered.delete(k);
    for (const [key, value] of pairs) {
      const def = KEYS[key];
      if (!def) {
        reply.push([key, 'NotUnderstood']);
        continue;
      }
      if (this.offered.has(key)) {
        // The initiator's answer to our offer.
        this.offered.delete(key);
        const r = this.check(def, value);
        if (r === undefined || value === 'Reject') continue;
        this.values.set(key, value);
        continue;
      }
      if (this.seen.has(key)) return { status: 'initiator-error', reason: `key ${key} offered twice` };
      this.seen.add(key);
      if ((def.normal && this.discovery) || (def.leading && !this.leading)) {
        reply.push([key, 'Irrelevant']);
        continue;
      }
      if (value === 'NotUnderstood' || value === 'Irrelevant' || value === 'Reject') continue;
      const mine = ours(this.params, key);
      let result: string | undefined;
      switch (def.kind) {
        case 'list': {
          const theirs = value.split(',');
          const acceptable = mine.split(',');
          result = theirs.find((t) => acceptable.includes(t));
          if (theirs.some((t) => !/^[A-Za-z0-9]+$/.test(t))) result = undefined;
          break;
        }
        case 'and':
        case 'or':
          if (value !== 'Yes' && value !== 'No') break;
          result = def.kind === 'and' ? (value === 'Yes' && mine === 'Yes' ? 'Yes' : 'No')
            : value === 'Yes' || mine === 'Yes' ? 'Yes' : 'No';
          break;
        case 'min':
        case 'max': {
          const v = this.check(def, value);
          if (v === undefined) break;
          const m = num(mine);
          result = String(def.kind === 'min' ? Math.min(v, m) : Math.max(v, m));
          break;
        }
        case 'declare-num': {
          // MaxRecvDataSegmentLength: the initiator's receive limit; we answer with ours.
          const v = this.check(def, value);
          if (v === undefined) break;
          this.values.set(key, String(v));
          result = ours(this.params, key);
          this.declaredMrdsl = true;
          reply.push([key, result]);
          continue;
        }
        default:
          break;
      }
      if (result === undefined) {
        reply.push([key, 'Reject']);
        continue;
      }
      this.values.set(key, result);
      reply.push([key, result]);
    }
    // With ERL > 0 and DataSequenceInOrder=Yes a target may retry only the last R2T: one outstanding (RFC 7143 13.19).
    if (this.erlAbove0()) {
      for (const r of reply) if (r[0] === 'MaxOutstandingR2T' && r[1] !== '1' && isNum(r[1])) this.values.set(r[0], (r[1] = '1'));
    }
    return { reply };
  }

  private erlAbove0(): boolean {
    return num(this.values.get('ErrorRecoveryLevel')!) > 0;
  }

  /**
   * Keys the target must still say before leaving the operational stage:
   * our MaxRecvDataSegmentLength (declarative), and offers where the TPG
   * wants other than the RFC default the initiator did not negotiate.
   */
  finalOffers(): KeyPairs {
    const out: KeyPairs = [];
    if (!this.declaredMrdsl) {
      this.declaredMrdsl = true;
      const m = ours(this.params, 'MaxRecvDataSegmentLength');
      if (m !== KEYS.MaxRecvDataSegmentLength.rfc) out.push(['MaxRecvDataSegmentLength', m]);
    }
    if (this.discovery || !this.leading) return out;
    for (const key of ['InitialR2T', 'ImmediateData', 'MaxBurstLength', 'FirstBurstLength', 'MaxOutstandingR2T']) {
      if (this.seen.has(key) || this.offered.has(key)) continue;
      const mine = key === 'MaxOutstandingR2T' && this.erlAbove0() ? '1' : ours(this.params, key);
      if (mine !== KEYS[key].rfc) {
        this.seen.add(key);
        this.offered.add(key);
        out.push([key, mine]);
      }
    }
    return out;
  }

  /** True while an offer of ours awaits the initiator's answer. */
  get awaitingAnswers(): boolean {
    return this.offered.size > 0;
  }

  private check(def: KeyDef, value: string): number | undefined {
    if (!isNum(value)) return undefined;
    const v = num(value);
    if (def.min !== undefined && v < def.min) return undefined;
    if (def.max !== undefined && v > def.max) return undefined;
    return v;
  }

  /** The negotiated result as the session uses it. */
  result(): OperationalParams {
    const g = (k: string) => this.values.get(k)!;
    const n = (k: string) => num(g(k));
    const xmitCap = Number(this.params.MaxXmitDataSegmentLength ?? 262144);
    const mrdsl = Number(ours(this.params, 'MaxRecvDataSegmentLength'));
    const maxBurst = n('MaxBurstLength');
    return {
      headerDigest: g('HeaderDigest') === 'CRC32C',
      dataDigest: g('DataDigest') === 'CRC32C',
      maxConnections: n('MaxConnections'),
      initialR2T: g('InitialR2T') === 'Yes',
      immediateData: g('ImmediateData') === 'Yes',
      maxRecvDataSegmentLength: mrdsl,
      maxXmitDataSegmentLength: Math.min(n('MaxRecvDataSegmentLength'), xmitCap),
      maxBurstLength: maxBurst,
      // FirstBurstLength never exceeds MaxBurstLength (RFC 7143 13.14).
      firstBurstLength: Math.min(n('FirstBurstLength'), maxBurst),
      defaultTime2Wait: n('DefaultTime2Wait'),
      defaultTime2Retain: n('DefaultTime2Retain'),
      maxOutstandingR2T: this.erlAbove0() ? 1 : n('MaxOutstandingR2T'),
      dataPduInOrder: g('DataPDUInOrder') === 'Yes',
      dataSequenceInOrder: g('DataSequenceInOrder') === 'Yes',
      errorRecoveryLevel: n('ErrorRecoveryLevel'),
    };
  }
}
