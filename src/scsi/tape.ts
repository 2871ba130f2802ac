// The sequential-access device type (peripheral device type 01h): SPC primary
// commands plus SSC stream commands, in one dispatch table, and the tape's
// mode parameters (SSC-4 8.3): the block descriptor's density and block
// length, the data compression, device configuration and medium partition pages.

import type { ScsiCmd } from '../core/command';
import type { LogicalUnit } from '../core/logical-unit';
import { CommandTable } from '../core/opcodes';
import { spcCommands } from './spc';
import { prCommands } from './pr';
import { mediumCommands } from './medium';
import { sscCommands } from './ssc';
import { MAX_TAPE_BLOCK, TAPE_DENSITY, tapeDriveOf, type TapeDrive } from './ssc-drive';
import {
  applyControl, blankPage, controlPage, controlState, withModeProfile, type ControlState, type ModePageDef, type ModeProfile,
} from './mode-frame';

export const DEVICE_TYPE_TAPE = 0x01;

interface TapeMode extends ControlState {
  blockLength: number;
  compression: boolean;
}

const drive = (lu: LogicalUnit): TapeDrive => tapeDriveOf(lu)!;

const PAGES: readonly ModePageDef<TapeMode>[] = [
  {
    // Read-write error recovery: nothing to recover, nothing to change.
    code: 0x01, length: 12, changeable: [],
    build: () => blankPage(0x01, 12),
  },
  controlPage<TapeMode>(),
  {
    // Data compression (SSC-4 8.3.2): DCC, DCE changeable, DDE.
    code: 0x0f, length: 16, changeable: [0, 0, 0x80],
    build(_lu, m) {
      const p = blankPage(0x0f, 16);
      p[2] = 0x40 | (m.compression ? 0x80 : 0); // DCC: the drive can compress
      p[3] = 0x80; // DDE: decompression is on
      p.writeUInt32BE(m.compression ? 1 : 0, 4); // COMPRESSION ALGORITHM: 01h, the default
      p.writeUInt32BE(1, 8); // DECOMPRESSION ALGORITHM
      return p;
    },
    parse(p, m) {
      m.compression = (p[2] & 0x80) !== 0;
      return undefined;
    },
  },
  {
    // Device configuration (SSC-4 8.3.3).
    code: 0x10, length: 16, changeable: [],
    build(_lu, m) {
      const p = blankPage(0x10, 16);
      p[10] = 0x18; // EEG: end-of-data is generated; SEW: synchronize at early warning
      p[14] = m.compression ? 1 : 0; // SELECT DATA COMPRESSION ALGORITHM
      return p;
    },
  },
  {
    // Medium partition (SSC-4 8.3.4): one partition, none to add.
    code: 0x11, length: 10, changeable: [],
    build: () => {
      const p = blankPage(0x11, 10);
      p[5] = 0x03; // MEDIUM FORMAT RECOGNITION: format and partitions recognized
      return p;
    },
  },
];

const tapeMode: ModeProfile<TapeMode> = {
  pages: PAGES,
  current: (lu) => ({ ...controlState(lu), blockLength: drive(lu).blockLength, compression: drive(lu).compression }),
  defaults: (lu) => ({ ...controlState(lu, true), blockLength: 0, compression: false }),
  apply(lu, m) {
    const d = drive(lu);
    const changed = m.blockLength !== d.blockLength || m.compression !== d.compression;
    d.blockLength = m.blockLength;
    d.compression = m.compression;
    return applyControl(lu, m) || changed;
  },
  deviceSpecific(cmd: ScsiCmd) {
    const d = drive(cmd.lu);
    const wp = d.cartridge?.writeProtected || cmd.lu.writeProtected || (cmd.itl?.writeProtect ?? false);
    return (wp ? 0x80 : 0) | 0x10; // WP; BUFFERED MODE 1
  },
  selectDeviceSpecific(v) {
    // BUFFERED MODE 0 or 1 (we never hold data back either way); SPEED 0.
    if ((v & 0x70) > 0x10) return 6;
    if ((v & 0x0f) !== 0) return 3;
    return undefined;
  },
  blockDescriptor(lu, m, changeable) {
    const b = Buffer.alloc(8);
    if (changeable) {
      b.writeUIntBE(0xffffff, 5, 3);
      return b;
    }
    if (drive(lu).loaded) b[0] = TAPE_DENSITY;
    b.writeUIntBE(m.blockLength, 5, 3);
    return b;
  },
  selectBlockDescriptor(_lu, bd, m) {
    // DENSITY CODE: 00h (the default), ours, or 7Fh (no change).
    if (bd[0] !== 0 && bd[0] !== TAPE_DENSITY && bd[0] !== 0x7f) return 0;
    if (bd[4] !== 0) return 4;
    const len = bd.readUIntBE(5, 3);
    if (len > MAX_TAPE_BLOCK) return 5;
    m.blockLength = len;
    return undefined;
  },
};

const spc = withModeProfile(spcCommands, tapeMode);
// SSC's LOAD UNLOAD takes START STOP UNIT's opcode: only PREVENT ALLOW MEDIUM REMOVAL comes from medium.ts.
const preventAllow = mediumCommands.filter((d) => d.opcode === 0x1e);

export const tapeTable = new CommandTable(DEVICE_TYPE_TAPE, [...spc, ...prCommands, ...preventAllow, ...sscCommands]);
