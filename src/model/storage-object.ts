// A storage object (LIO's backstore object): a named store with its
// identity and attributes. Its SCSI runtime is the LogicalUnit it owns.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Backstore } from '../core/backstore';
import type { StorageAttributes } from '../core/attributes';
import { LogicalUnit, PRODUCT_REVISION, VENDOR_ID, type UnitIdentity } from '../core/logical-unit';
import type { CommandTable } from '../core/opcodes';

/** Whose identity a unit presents: tsio's own, or LIO's (a disk moved from LIO keeps what initiators knew). */
export type IdentityCompat = 'tsio' | 'lio';

/**
 * LIO's identity (drivers/target: target_core_device.c sets vendor "LIO-ORG" and the backend's
 * inquiry_rev "4.0"; target_core_spc.c builds the NAA from OpenFabrics' IEEE company id 00-14-05).
 */
export const LIO_VENDOR = 'LIO-ORG';
export const LIO_REVISION = '4.0';
export const LIO_COMPANY_ID = 0x001405;

export class StorageObject implements UnitIdentity {
  readonly lu: LogicalUnit;
  /** VPD 80h unit serial number (LIO's vpd_unit_serial; saveconfig's `wwn`). */
  readonly serial: string;
  /** 16-byte NAA IEEE Registered Extended designator derived from the serial (VPD 83h). */
  readonly naa: Buffer;
  /** INQUIRY vendor identification and product revision level: the compat mode's. */
  readonly vendor: string;
  readonly revision: string;

  constructor(
    readonly name: string,
    readonly plugin: string,
    readonly attributes: StorageAttributes,
    backstore: Backstore,
    table: CommandTable,
    serial?: string,
    /** The one place a unit's identity is chosen: INQUIRY and VPD read vendor, revision, naa and compat. */
    readonly compat: IdentityCompat = 'tsio',
  ) {
    this.serial = serial ?? defaultSerial(plugin, name);
    const lio = compat === 'lio';
    this.naa = lio ? lioNaa(this.serial) : naaFromSerial(this.serial);
    this.vendor = lio ? LIO_VENDOR : VENDOR_ID;
    this.revision = lio ? LIO_REVISION : PRODUCT_REVISION;
    this.lu = new LogicalUnit(this, backstore, table);
  }

  get backstore(): Backstore {
    return this.lu.backstore;
  }

  /** The path LUNs name it by, as targetcli does. */
  get path(): string {
    return `/backstores/${this.plugin}/${this.name}`;
  }
}

// Stable across restarts on one host and distinct across hosts, so that an
// initiator's multipath and udev links do not change when tsiod restarts
// from a config that names no serial.
function defaultSerial(plugin: string, name: string): string {
  let machine = hostname();
  try {
    machine = readFileSync('/etc/machine-id', 'utf8').trim() || machine;
  } catch {
    /* no machine-id: the host name will do */
  }
  const h = createHash('sha256').update(`${machine}/${plugin}/${name}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/**
 * NAA 6 designator: NAA nibble 6, then a 24-bit company id, then 100 bits of
 * vendor-specific identifier taken from the serial's hex digits (as LIO does).
 * The company id is the locally administered OUI range's 0x5C_9D_A1 here —
 * tsio owns no IEEE OUI.
 */
export const NAA_COMPANY_ID = 0x5c9da1;

export function naaFromSerial(serial: string): Buffer {
  let hex = serial.toLowerCase().replace(/[^0-9a-f]/g, '');
  if (hex.length < 25) hex = createHash('sha256').update(serial).digest('hex');
  const b = Buffer.alloc(16);
  b[0] = 0x60 | ((NAA_COMPANY_ID >> 20) & 0x0f);
  b[1] = (NAA_COMPANY_ID >> 12) & 0xff;
  b[2] = (NAA_COMPANY_ID >> 4) & 0xff;
  // Low nibble of the company id, then the vendor specific identifier nibbles.
  const nibbles = [NAA_COMPANY_ID & 0x0f, ...[...hex.slice(0, 25)].map((c) => parseInt(c, 16))];
  for (let i = 0; i < nibbles.length; i += 2) b[3 + i / 2] = (nibbles[i] << 4) | (nibbles[i + 1] ?? 0);
  return b;
}

/**
 * LIO's NAA 6 designator (target_core_spc.c, spc_gen_naa_6h_vendor_specific): company id 00-14-05, then the
 * serial's hex digits in order, non-hex characters skipped, 25 nibbles at most, zeros where the serial has fewer.
 */
export function lioNaa(serial: string): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x60 | ((LIO_COMPANY_ID >> 20) & 0x0f);
  b[1] = (LIO_COMPANY_ID >> 12) & 0xff;
  b[2] = (LIO_COMPANY_ID >> 4) & 0xff;
  const nibbles = [LIO_COMPANY_ID & 0x0f, ...[...serial.toLowerCase().replace(/[^0-9a-f]/g, '').slice(0, 25)].map((c) => parseInt(c, 16))];
  for (let i = 0; i < nibbles.length; i += 2) b[3 + i / 2] = (nibbles[i] << 4) | (nibbles[i + 1] ?? 0);
  return b;
}
