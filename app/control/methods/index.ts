// Every method the control socket serves, one table per subsystem, in the
// order the `methods` method lists them.

import type { MethodTable } from '../context';
import { aclMethods } from './acls';
import { configurationMethods } from './configuration';
import { daemonMethods } from './daemon';
import { fabricModuleMethods } from './fabric-modules';
import { lunMethods } from './luns';
import { mediaMethods } from './media';
import { portalMethods } from './portals';
import { reservationMethods } from './reservations';
import { sessionMethods } from './sessions';
import { storageObjectMethods } from './storage-objects';
import { targetMethods } from './targets';
import { tpgMethods } from './tpgs';

export const CONTROL_METHODS: MethodTable = {
  ...daemonMethods,
  ...storageObjectMethods,
  ...reservationMethods,
  // Removable media: cartridges, libraries, discs.
  ...mediaMethods,
  ...targetMethods,
  ...tpgMethods,
  ...lunMethods,
  ...aclMethods,
  ...portalMethods,
  ...fabricModuleMethods,
  ...sessionMethods,
  ...configurationMethods,
};
