// CHAP for iSCSI login (RFC 7143 12.1.3, RFC 1994): the target's side of a
// one-way or mutual exchange, with the digests of the IANA PPP registry
// (5 MD5, 6 SHA-1, 7 SHA-256, 8 SHA3-256) that initiators may offer.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { KeyPairs } from './keys';

export const CHAP_ALGORITHMS: Record<string, { hash: string; len: number }> = {
  '5': { hash: 'md5', len: 16 },
  '6': { hash: 'sha1', len: 20 },
  '7': { hash: 'sha256', len: 32 },
  '8': { hash: 'sha3-256', len: 32 },
};
/** Our order of preference when the initiator offers several. */
const PREFERENCE = ['8', '7', '6', '5'];

export interface ChapCredentials {
  userid?: string;
  password?: string;
  mutual_userid?: string;
  mutual_password?: string;
}

/** CHAP_R / CHAP_C values: 0x hex or 0b base64 (RFC 7143 6.1). */
export function decodeBinary(v: string): Buffer | undefined {
  if (/^0[xX][0-9a-fA-F]+$/.test(v)) {
    const hex = v.slice(2);
    return Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex');
  }
  if (/^0[bB][A-Za-z0-9+/=]+$/.test(v)) return Buffer.from(v.slice(2), 'base64');
  return undefined;
}

export function chapResponse(alg: string, id: number, secret: string, challenge: Buffer): Buffer {
  return createHash(CHAP_ALGORITHMS[alg].hash).update(Buffer.from([id])).update(secret, 'utf8').update(challenge).digest();
}

export type ChapStep = { reply: KeyPairs; done: boolean } | { error: 'auth' | 'initiator' ; reason: string };

/**
 * One CHAP exchange. step() takes the initiator's keys of one login request:
 * first CHAP_A, then CHAP_N/CHAP_R (and CHAP_I/CHAP_C for mutual).
 */
export class ChapServer {
  private alg: string | undefined;
  private id = 0;
  private challenge: Buffer | undefined;
  /** The user name the initiator proved, once done. */
  user: string | undefined;

  constructor(private readonly creds: ChapCredentials) {}

  step(keys: Map<string, string>): ChapStep {
    if (this.alg === undefined) {
      const offered = keys.get('CHAP_A');
      if (offered === undefined) return { error: 'initiator', reason: 'CHAP_A missing' };
      const list = offered.split(',');
      const alg = PREFERENCE.find((a) => list.includes(a));
      if (!alg) return { reply: [['CHAP_A', 'Reject']], done: false };
      this.alg = alg;
      this.id = randomBytes(1)[0];
      this.challenge = randomBytes(CHAP_ALGORITHMS[alg].len);
      return {
        reply: [['CHAP_A', alg], ['CHAP_I', String(this.id)], ['CHAP_C', '0x' + this.challenge.toString('hex')]],
        done: false,
      };
    }
    const name = keys.get('CHAP_N');
    const resp = keys.get('CHAP_R');
    if (name === undefined || resp === undefined) return { error: 'initiator', reason: 'CHAP_N or CHAP_R missing' };
    const got = decodeBinary(resp);
    if (!this.creds.userid || !this.creds.password) return { error: 'auth', reason: 'no CHAP credentials configured' };
    if (name !== this.creds.userid) return { error: 'auth', reason: `unknown CHAP user ${name}` };
    const want = chapResponse(this.alg, this.id, this.creds.password, this.challenge!);
    if (!got || got.length !== want.length || !timingSafeEqual(got, want)) {
      return { error: 'auth', reason: `CHAP response of ${name} does not match` };
    }
    this.user = name;
    const ci = keys.get('CHAP_I');
    const cc = keys.get('CHAP_C');
    if (ci === undefined && cc === undefined) return { reply: [], done: true };
    // Mutual: the initiator challenges us in turn.
    if (ci === undefined || cc === undefined) return { error: 'initiator', reason: 'CHAP_I without CHAP_C' };
    const theirId = Number(ci);
    const theirChallenge = decodeBinary(cc);
    if (!Number.isInteger(theirId) || theirId < 0 || theirId > 255 || !theirChallenge || theirChallenge.length === 0) {
      return { error: 'initiator', reason: 'malformed CHAP_I or CHAP_C' };
    }
    // A reflected challenge would let an attacker use us as an oracle (RFC 7143 12.1.3).
    if (theirChallenge.equals(this.challenge!)) return { error: 'auth', reason: 'initiator reflected our challenge' };
    if (!this.creds.mutual_userid || !this.creds.mutual_password) {
      return { error: 'auth', reason: 'mutual CHAP asked but no mutual credentials configured' };
    }
    const r = chapResponse(this.alg, theirId, this.creds.mutual_password, theirChallenge);
    return { reply: [['CHAP_N', this.creds.mutual_userid], ['CHAP_R', '0x' + r.toString('hex')]], done: true };
  }
}
