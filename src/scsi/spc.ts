// PLACEHOLDER until the SPC module lands.
import type { CommandDef } from '../core/opcodes';
import { DataDir, F } from '../core/opcodes';

export const spcCommands: CommandDef[] = [
  { name: 'TEST UNIT READY', opcode: 0x00, usage: [0x00, 0, 0, 0, 0, 0], dir: DataDir.NONE, flags: F.MEDIUM, execute: () => {} },
];
