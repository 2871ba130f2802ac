// LOG SENSE (SPC-5 6.9) and the log pages a disk reports: the supported pages lists (00h, and 00h/FFh
// with subpages) and, on thin units that know their space, SBC-4's LOGICAL BLOCK PROVISIONING page (0Ch).
// Nothing is saved (SP is refused by the usage mask) and nothing is reset, so every page control reads
// the same current values.

import type { ScsiCmd } from '../core/command';
import { CommandDef, DataDir, F } from '../core/opcodes';
import type { LogicalUnit } from '../core/logical-unit';
import { invalidCdbField } from '../core/sense';
import { lbpResources, thresholdsServed } from './lbp-thresholds';

/** A log page's parameters, each with its code, control byte and value, in ascending code order. */
interface LogParam {
  code: number;
  control: number;
  value: Buffer;
}

interface LogPage {
  code: number;
  subpage: number;
  served(lu: LogicalUnit): boolean;
  params(lu: LogicalUnit): Promise<LogParam[]> | LogParam[];
}

/** Parameter control byte for binary list values (FORMAT AND LINKING 11b), not saved or reset (TSD). */
const BINARY = 0x23;
/** SCOPE of a resource count (SBC-4): dedicated to this unit, or shared with others. */
const SCOPE_DEDICATED = 0x1;
const SCOPE_SHARED = 0x2;

function resourceCount(code: number, count: number, scope: number): LogParam {
  const v = Buffer.alloc(8);
  v.writeUInt32BE(count, 0);
  v[4] = scope;
  return { code, control: BINARY, value: v };
}

/** The supported pages list (00h), with subpages when asked for 00h/FFh. */
function supported(withSubpages: boolean): LogPage['params'] {
  return (lu) => {
    const list = PAGES.filter((p) => p.served(lu) && (withSubpages || p.subpage === 0));
    // Its parameters are the page codes themselves: one byte each (two with subpages), no headers.
    return [{ code: -1, control: 0, value: Buffer.from(list.flatMap((p) => (withSubpages ? [p.code, p.subpage] : [p.code]))) }];
  };
}

const PAGES: LogPage[] = [
  { code: 0x00, subpage: 0x00, served: () => true, params: supported(false) },
  { code: 0x00, subpage: 0xff, served: () => true, params: supported(true) },
  {
    code: 0x0c, subpage: 0x00, served: thresholdsServed,
    async params(lu) {
      const r = await lbpResources(lu);
      return [
        resourceCount(0x0001, r.available, r.shared ? SCOPE_SHARED : SCOPE_DEDICATED),
        resourceCount(0x0002, r.used, SCOPE_DEDICATED),
      ];
    },
  },
];

async function logSense(cmd: ScsiCmd): Promise<void> {
  const code = cmd.cdb[2] & 0x3f;
  const subpage = cmd.cdb[3];
  const pointer = cmd.cdb.readUInt16BE(5);
  const page = PAGES.find((p) => p.code === code && p.subpage === subpage && p.served(cmd.lu));
  if (page === undefined) throw invalidCdbField(subpage !== 0 && PAGES.some((p) => p.code === code) ? 3 : 2);
  let params = await page.params(cmd.lu);
  const lists = params.length === 1 && params[0].code === -1;
  if (!lists) {
    // PARAMETER POINTER: parameters from that code on; one past the last is an error (SPC-5 6.9).
    if (params.length !== 0 && pointer > params[params.length - 1].code) throw invalidCdbField(5);
    params = params.filter((p) => p.code >= pointer);
  } else if (pointer !== 0) {
    throw invalidCdbField(5);
  }
  const body = Buffer.concat(params.map((p) => {
    if (p.code === -1) return p.value;
    const h = Buffer.alloc(4);
    h.writeUInt16BE(p.code, 0);
    h[2] = p.control;
    h[3] = p.value.length;
    return Buffer.concat([h, p.value]);
  }));
  const head = Buffer.alloc(4);
  head[0] = page.code | (page.subpage !== 0 ? 0x40 : 0); // SPF
  head[1] = page.subpage;
  head.writeUInt16BE(body.length, 2);
  cmd.respond(Buffer.concat([head, body]));
}

export const logCommands: CommandDef[] = [
  {
    // SP (byte 1 bit 0) is refused: nothing is saved. PC and PAGE CODE, SUBPAGE, PARAMETER POINTER, length.
    name: 'LOG SENSE', opcode: 0x4d, usage: [0x4d, 0x00, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00],
    // Served during a sanitize, as SBC-4 4.11.2 lists it.
    dir: DataDir.IN, lengthField: [7, 2], flags: F.SANITIZE_OK | F.STANDBY_OK, pr: 'allowed', timeout: 30, execute: logSense,
  },
];
