// A storage object's persistent reservations: the state an initiator set up
// with PERSISTENT RESERVE OUT, and the administrator's way to drop it.

import { prAdminClear, prView } from '../../../src/scsi/pr';
import type { MethodTable } from '../context';
import { liveStorageObject } from '../lookup';
import { str } from '../params';

export const reservationMethods: MethodTable = {
  'storage_objects.reservations': {
    doc: 'Persistent reservation state of a storage object: generation, APTPL, registrations (initiator port, target port, key, holder) and the reservation.',
    params: { path: str },
    run: (p, c) => prView(liveStorageObject(c.live, p.path).lu),
  },
  'storage_objects.clear_reservations': {
    doc: 'Admin escape hatch: drops every registration and the reservation (as PR OUT CLEAR: RESERVATIONS PREEMPTED to the registrants) and the saved APTPL state.',
    params: { path: str },
    run: async (p, c) => ({ cleared: await prAdminClear(liveStorageObject(c.live, p.path).lu) }),
  },
};
