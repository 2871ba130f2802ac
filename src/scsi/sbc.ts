// PLACEHOLDER until the SBC module lands.
import type { CommandDef } from '../core/opcodes';
import { DataDir, F } from '../core/opcodes';

export const sbcCommands: CommandDef[] = [
  {
    name: 'READ(10)', opcode: 0x28, usage: [0x28, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00],
    dir: DataDir.IN, lbaField: [2, 4], blocksField: [7, 2], flags: F.MEDIUM | F.LBA_CHECK,
    execute: (cmd) => cmd.lu.backstore.read(cmd.byteOffset, cmd.transferLength, cmd.inBuffers()),
  },
  {
    name: 'WRITE(10)', opcode: 0x2a, usage: [0x2a, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00],
    dir: DataDir.OUT, lbaField: [2, 4], blocksField: [7, 2], flags: F.MEDIUM | F.LBA_CHECK | F.WRITE,
    execute: (cmd) => cmd.lu.backstore.write(cmd.byteOffset, cmd.transferLength, cmd.out(), !cmd.lu.mode.wce),
  },
];
