// How logins end, for the daemon's metrics: accepted, refused (by reason,
// a fixed set so the series stay the same), and logouts.

import { LoginStatus } from './pdu';

/** Refusal reasons as metric labels; every other status counts as the class it falls in. */
export const REFUSAL_REASONS = ['authentication', 'authorization', 'not_found', 'initiator_error', 'target_error'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export const loginCounts = {
  accepted: 0,
  logouts: 0,
  refused: Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>,
};

export function countRefusal(status: number): void {
  const reason: RefusalReason =
    status === LoginStatus.AUTH_FAILED ? 'authentication'
    : status === LoginStatus.FORBIDDEN ? 'authorization'
    : status === LoginStatus.NOT_FOUND ? 'not_found'
    : status >> 8 === 3 ? 'target_error'
    : 'initiator_error';
  loginCounts.refused[reason]++;
}
