// The direct-access block device type (peripheral device type 00h): SPC
// primary commands plus SBC block commands, in one dispatch table.

import { CommandTable } from '../core/opcodes';
import { unmappedLun } from '../core/engine';
import { spcCommands } from './spc';
import { sbcCommands } from './sbc';
import { prCommands } from './pr';
import { mediumCommands } from './medium';
import { xcopyCommands } from './xcopy';
import { logCommands } from './log-pages';

export const DEVICE_TYPE_DISK = 0x00;

export const diskTable = new CommandTable(DEVICE_TYPE_DISK, [...spcCommands, ...sbcCommands, ...prCommands, ...mediumCommands,
  ...xcopyCommands, ...logCommands]);

unmappedLun.table = diskTable;
