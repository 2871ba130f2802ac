// The CD/DVD device type (peripheral device type 05h, MMC-6) for read-only
// discs from images: GET CONFIGURATION with the profiles and features hosts
// probe, READ TOC/PMA/ATIP, READ DISC and TRACK INFORMATION, GET EVENT STATUS
// NOTIFICATION (media class), MECHANISM STATUS, SET CD SPEED, and the block
// reads and READ CAPACITY of SBC on 2048-byte blocks; START STOP UNIT and
// PREVENT ALLOW MEDIUM REMOVAL from medium.ts, with media events.

import type { ScsiCmd } from '../core/command';
import { CommandDef, CommandTable, DataDir, F } from '../core/opcodes';
import { invalidCdbField, mediumNotPresent } from '../core/sense';
import { spcCommands } from './spc';
import { sbcCommands } from './sbc';
import { mediumCommands, mediumOf } from './medium';
import { MediaEvent, opticalDriveOf, type OpticalDrive } from './mmc-drive';
import { applyControl, blankPage, controlPage, controlState, withModeProfile, type ControlState, type ModeProfile } from './mode-frame';

export const DEVICE_TYPE_CDROM = 0x05;

const Profile = { NONE: 0x0000, CD_ROM: 0x0008, DVD_ROM: 0x0010 } as const;
/** Largest disc we call a CD (80 minutes of 2048-byte sectors); larger images are DVDs. */
const CD_MAX_BLOCKS = 360_000;
const LEAD_OUT = 0xaa;
const T_IO = 60;

function drive(cmd: ScsiCmd): OpticalDrive {
  const d = opticalDriveOf(cmd.lu);
  if (d === undefined) throw new Error('MMC command on a unit that is no CD/DVD drive');
  return d;
}

function profileOf(cmd: ScsiCmd): number {
  if (!drive(cmd).present) return Profile.NONE;
  return cmd.lu.blocks > CD_MAX_BLOCKS ? Profile.DVD_ROM : Profile.CD_ROM;
}

/** A logical block address as MSF (minutes, seconds, frames; 150 frames of lead-in). */
function msf(lba: number): number[] {
  const f = lba + 150;
  return [0, Math.floor(f / 4500), Math.floor(f / 75) % 60, f % 75];
}

function address(lba: number, asMsf: boolean): number[] {
  if (asMsf) return msf(lba);
  return [(lba >>> 24) & 0xff, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff];
}

/** READ TOC/PMA/ATIP (MMC-6 6.38): one data track and the lead-out, in formats 0 (TOC), 1 (sessions) and 2 (raw TOC). */
function readToc(cmd: ScsiCmd): void {
  const d = drive(cmd);
  if (!d.present) throw mediumNotPresent();
  const asMsf = (cmd.cdb[1] & 0x02) !== 0;
  const format = cmd.cdb[2] & 0x0f;
  const track = cmd.cdb[6];
  const end = cmd.lu.blocks;
  const out: number[] = [];
  if (format === 0) {
    if (track > 1 && track !== LEAD_OUT) throw invalidCdbField(6);
    if (track <= 1) out.push(0, 0x14, 1, 0, ...address(0, asMsf)); // ADR 1, CONTROL 4: a data track
    out.push(0, 0x14, LEAD_OUT, 0, ...address(end, asMsf));
    return respondToc(cmd, 1, 1, out);
  }
  if (format === 1) {
    out.push(0, 0x14, 1, 0, ...address(0, asMsf)); // first track of the last session
    return respondToc(cmd, 1, 1, out);
  }
  if (format === 2) {
    // Raw TOC: points A0 (first track), A1 (last track), A2 (lead-out), then track 1, all in MSF.
    const point = (p: number, pmsf: number[]) => out.push(1, 0x14, 0, p, 0, 0, 0, 0, ...pmsf.slice(1));
    point(0xa0, [0, 1, 0, 0]); // PMIN: first track 1; PSEC: disc type 00h
    point(0xa1, [0, 1, 0, 0]);
    point(0xa2, msf(end));
    point(1, msf(0));
    return respondToc(cmd, 1, 1, out);
  }
  throw invalidCdbField(2, 3);
}

function respondToc(cmd: ScsiCmd, first: number, last: number, descriptors: number[]): void {
  const b = Buffer.alloc(4 + descriptors.length);
  b.writeUInt16BE(b.length - 2, 0);
  b[2] = first;
  b[3] = last;
  b.set(descriptors, 4);
  cmd.respond(b);
}

function feature(code: number, version: number, current: boolean, body: number[]): number[] {
  // VERSION (bits 5..2), PERSISTENT (bit 1), CURRENT (bit 0).
  return [code >> 8, code & 0xff, (version << 2) | (current ? 1 : 0) | (code <= 0x0003 ? 0x02 : 0), body.length, ...body];
}

/** GET CONFIGURATION (MMC-6 6.6): the features a read-only CD/DVD drive has. */
function getConfiguration(cmd: ScsiCmd): void {
  const rt = cmd.cdb[1] & 0x03;
  const start = cmd.cdb.readUInt16BE(2);
  if (rt === 3) throw invalidCdbField(1, 1);
  const current = profileOf(cmd);
  const disc = current !== Profile.NONE;
  const dvd = current === Profile.DVD_ROM;
  const be32 = (n: number) => [(n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  const features: [number, boolean, number[]][] = [
    [0x0000, true, feature(0x0000, 0, true, [
      Profile.DVD_ROM >> 8, Profile.DVD_ROM & 0xff, dvd ? 1 : 0, 0,
      Profile.CD_ROM >> 8, Profile.CD_ROM & 0xff, disc && !dvd ? 1 : 0, 0,
    ])],
    // Core: physical interface 00000001h (SCSI family), DBE (bit 0).
    [0x0001, true, feature(0x0001, 2, true, [...be32(1), 0x01, 0, 0, 0])],
    // Morphing: OCEvent (bit 1): media events through GET EVENT STATUS NOTIFICATION, polled.
    [0x0002, true, feature(0x0002, 1, true, [0x02, 0, 0, 0])],
    // Removable medium: tray (001b), Eject, Lock.
    [0x0003, true, feature(0x0003, 0, true, [0x20 | 0x08 | 0x01, 0, 0, 0])],
    // Random readable: 2048-byte blocks, BLOCKING 1 (CD) or 16 (DVD).
    [0x0010, disc, feature(0x0010, 0, disc, [...be32(2048), 0, dvd ? 16 : 1, 0, 0])],
    [0x001d, disc && !dvd, feature(0x001d, 0, disc && !dvd, [])],
    [0x001e, disc && !dvd, feature(0x001e, 2, disc && !dvd, [0, 0, 0, 0])],
    [0x001f, dvd, feature(0x001f, 0, dvd, [])],
    [0x0100, true, feature(0x0100, 0, true, [])],
    // Timeout.
    [0x0105, true, feature(0x0105, 0, true, [0, 0, 0, 0])],
  ];
  const chosen = features.filter(([code, cur]) => (rt === 2 ? code === start : code >= start && (rt === 0 || cur)));
  const body = chosen.flatMap(([, , f]) => f);
  const b = Buffer.alloc(8 + body.length);
  b.writeUInt32BE(b.length - 4, 0);
  b.writeUInt16BE(current, 6);
  b.set(body, 8);
  cmd.respond(b);
}

/** GET EVENT STATUS NOTIFICATION (MMC-6 6.8): the media class only, polled. */
function getEventStatus(cmd: ScsiCmd): void {
  if ((cmd.cdb[1] & 0x01) === 0) throw invalidCdbField(1, 0); // asynchronous notification is not served
  const d = drive(cmd);
  const MEDIA_CLASS = 0x10;
  const b = Buffer.alloc(8);
  b[3] = MEDIA_CLASS; // supported event classes
  if ((cmd.cdb[4] & MEDIA_CLASS) === 0) {
    b.writeUInt16BE(2, 0);
    b[2] = 0x80; // NEA: no class asked for is available
    return cmd.respond(b.subarray(0, 4));
  }
  b.writeUInt16BE(6, 0);
  b[2] = 0x04; // notification class: media
  b[4] = d.event;
  b[5] = (d.present ? 0x02 : 0) | (d.trayOpen ? 0x01 : 0);
  d.event = MediaEvent.NONE; // reported once
  cmd.respond(b);
}

function mechanismStatus(cmd: ScsiCmd): void {
  const b = Buffer.alloc(8);
  if (drive(cmd).trayOpen) b[1] = 0x10; // DOOR OPEN
  cmd.respond(b);
}

/** READ DISC INFORMATION (MMC-6 6.22): a complete, finalized disc with one session of one track. */
function readDiscInformation(cmd: ScsiCmd): void {
  if ((cmd.cdb[1] & 0x07) !== 0) throw invalidCdbField(1, 2); // only standard disc information
  if (!drive(cmd).present) throw mediumNotPresent();
  const b = Buffer.alloc(34);
  b.writeUInt16BE(32, 0);
  b[2] = 0x0e; // last session complete, disc complete
  b[3] = 1; // first track
  b[4] = 1; // sessions
  b[5] = 1; // first track in last session
  b[6] = 1; // last track in last session
  b[7] = 0x20; // URU
  b.writeUInt32BE(0xffffffff, 16); // no next session
  b.writeUInt32BE(0xffffffff, 20);
  cmd.respond(b);
}

/** READ TRACK INFORMATION (MMC-6 6.27) of track 1, or of the track holding an LBA. */
function readTrackInformation(cmd: ScsiCmd): void {
  if (!drive(cmd).present) throw mediumNotPresent();
  const type = cmd.cdb[1] & 0x03;
  const value = cmd.cdb.readUInt32BE(2);
  const blocks = cmd.lu.blocks;
  const ok = (type === 0 && value < blocks) || (type === 1 && value === 1) || (type === 2 && value === 1);
  if (!ok) throw invalidCdbField(2);
  const b = Buffer.alloc(48);
  b.writeUInt16BE(46, 0);
  b[2] = 1; // track number
  b[3] = 1; // session
  b[5] = 0x04; // TRACK MODE: data, recorded uninterrupted
  b[6] = 0x01; // DATA MODE 1
  b.writeUInt32BE(blocks, 24); // TRACK SIZE
  b.writeUInt32BE(Math.max(0, blocks - 1), 28); // LAST RECORDED ADDRESS
  cmd.respond(b);
}

type OpticalMode = ControlState;

const opticalMode: ModeProfile<OpticalMode> = {
  pages: [
    controlPage<OpticalMode>(),
    {
      // CD/DVD capabilities and mechanical status (MMC-3 6.3.11, kept by MMC-6 for legacy hosts: Linux sr reads it).
      code: 0x2a, length: 28, changeable: [],
      build(lu) {
        const p = blankPage(0x2a, 28);
        p[2] = 0x08 | 0x01; // DVD-ROM read, CD-R read (as ROM media)
        p[4] = 0x00;
        p[5] = 0x00;
        p[6] = 0x20 | 0x08 | 0x01 | (mediumOf(lu)!.preventers.size ? 0x02 : 0); // tray; Eject; Lock; Lock state
        return p;
      },
    },
  ],
  current: (lu) => controlState(lu),
  defaults: (lu) => controlState(lu, true),
  apply: applyControl,
  deviceSpecific: () => 0,
};

/** START STOP UNIT as medium.ts serves it, with the media events it makes. */
const startStop = (() => {
  const base = mediumCommands.find((d) => d.opcode === 0x1b)!;
  return {
    ...base,
    execute(cmd: ScsiCmd): void {
      const d = drive(cmd);
      const was = d.present;
      void base.execute(cmd);
      const loej = (cmd.cdb[4] & 0x02) !== 0 && cmd.cdb[4] >> 4 === 0;
      if (!loej) return;
      if ((cmd.cdb[4] & 0x01) === 0) {
        if (was || !d.trayOpen) d.opened();
      } else {
        d.closed();
      }
    },
  } satisfies CommandDef;
})();

export const mmcCommands: CommandDef[] = [
  {
    // MSF (bit 1); FORMAT; TRACK/SESSION NUMBER; ALLOCATION LENGTH.
    name: 'READ TOC/PMA/ATIP', opcode: 0x43, usage: [0x43, 0x02, 0x0f, 0, 0, 0, 0xff, 0xff, 0xff, 0], dir: DataDir.IN,
    lengthField: [7, 2], flags: 0, pr: 'read', timeout: T_IO, execute: readToc,
  },
  {
    name: 'GET CONFIGURATION', opcode: 0x46, usage: [0x46, 0x03, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0], dir: DataDir.IN,
    lengthField: [7, 2], flags: F.NO_UA, pr: 'allowed', timeout: T_IO, execute: getConfiguration,
  },
  {
    // POLLED (bit 0); NOTIFICATION CLASS REQUEST; ALLOCATION LENGTH. Served during a unit attention (MMC-6 6.8).
    name: 'GET EVENT STATUS NOTIFICATION', opcode: 0x4a, usage: [0x4a, 0x01, 0, 0, 0xff, 0, 0, 0xff, 0xff, 0], dir: DataDir.IN,
    lengthField: [7, 2], flags: F.NO_UA, pr: 'allowed', timeout: T_IO, execute: getEventStatus,
  },
  {
    name: 'READ DISC INFORMATION', opcode: 0x51, usage: [0x51, 0x07, 0, 0, 0, 0, 0, 0xff, 0xff, 0], dir: DataDir.IN,
    lengthField: [7, 2], flags: 0, pr: 'read', timeout: T_IO, execute: readDiscInformation,
  },
  {
    name: 'READ TRACK INFORMATION', opcode: 0x52, usage: [0x52, 0x03, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0], dir: DataDir.IN,
    lengthField: [7, 2], flags: 0, pr: 'read', timeout: T_IO, execute: readTrackInformation,
  },
  {
    // Speeds are whatever the host likes: nothing spins.
    name: 'SET CD SPEED', opcode: 0xbb, usage: [0xbb, 0x03, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0], dir: DataDir.NONE,
    flags: 0, pr: 'allowed', timeout: T_IO, execute: () => {},
  },
  {
    name: 'MECHANISM STATUS', opcode: 0xbd, usage: [0xbd, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0], dir: DataDir.IN,
    lengthField: [8, 2], flags: 0, pr: 'allowed', timeout: T_IO, execute: mechanismStatus,
  },
];

const BLOCK_READS = new Set(['READ(10)', 'READ(12)', 'READ CAPACITY(10)']);
const blockReads = sbcCommands.filter((d) => BLOCK_READS.has(d.name));
const preventAllow = mediumCommands.filter((d) => d.opcode === 0x1e);

export const opticalTable = new CommandTable(DEVICE_TYPE_CDROM, [
  ...withModeProfile(spcCommands, opticalMode), ...blockReads, startStop, ...preventAllow, ...mmcCommands,
]);
