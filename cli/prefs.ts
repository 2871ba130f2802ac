// targetcli's global preferences (get global / set global), kept in
// HOME/prefs.json across runs: what create does by default, whether exit
// saves, how many backups a save keeps, and tcli's own log.

import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { FieldSpec } from '../app/config/specs';

const field = (name: string, type: FieldSpec['type'], def: FieldSpec['default'], doc: string, more: Partial<FieldSpec> = {}): FieldSpec => ({ name, type, default: def, required: false, doc, ...more });

export const LOG_LEVELS = ['error', 'warning', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The preferences, with targetcli's names and meanings; tsio's defaults where they differ are said in the text. */
export function prefFields(home: string): readonly FieldSpec[] {
  return [
    field('auto_add_default_portal', 'bool', false, 'A new iSCSI target gets a portal on 0.0.0.0:3260 (every address). Off by default in tcli: it never opens every address unasked.'),
    field('auto_add_mapped_luns', 'bool', true, 'A new LUN is mapped into every ACL of its TPG, and a new ACL gets every TPG LUN.'),
    field('auto_cd_after_create', 'bool', false, 'After create, move to the object created.'),
    field('auto_enable_tpgt', 'bool', true, 'New TPGs are enabled.'),
    field('auto_save_on_exit', 'bool', true, 'exit saves the configuration when it differs from the saved file (false: exit only warns).'),
    field('max_backup_files', 'int', 10, 'Previous versions saveconfig keeps beside the saved file.', { min: 0, max: 1000 }),
    field('logfile', 'path', join(home, 'log.txt'), "tcli's log: each command, what it did or why it failed."),
    field('loglevel', 'enum', 'info', 'What the log keeps: error (failures), warning, info (every command), debug (every request to tsiod too).', { values: LOG_LEVELS }),
  ];
}

export interface PrefValues {
  auto_add_default_portal: boolean;
  auto_add_mapped_luns: boolean;
  auto_cd_after_create: boolean;
  auto_enable_tpgt: boolean;
  auto_save_on_exit: boolean;
  max_backup_files: number;
  logfile: string;
  loglevel: LogLevel;
}

export class Prefs {
  readonly fields: readonly FieldSpec[];
  private readonly file: string;
  private readonly own: Record<string, unknown>;

  constructor(private readonly home: string) {
    this.fields = prefFields(home);
    this.file = join(home, 'prefs.json');
    let own: Record<string, unknown> = {};
    try {
      own = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch {
      own = {};
    }
    // A file written by another version may name preferences this one has not: they are ignored.
    this.own = Object.fromEntries(Object.entries(own).filter(([k]) => this.fields.some((f) => f.name === k)));
  }

  /** Every preference: what was set, else its default. */
  get values(): PrefValues {
    return Object.fromEntries(this.fields.map((f) => [f.name, this.own[f.name] ?? f.default])) as unknown as PrefValues;
  }

  /** Sets typed values (checked by the caller against fields) and keeps them. */
  set(values: Record<string, unknown>): void {
    for (const [k, v] of Object.entries(values)) {
      const f = this.fields.find((x) => x.name === k)!;
      this.own[k] = f.type === 'path' ? resolve(String(v)) : v;
    }
    mkdirSync(this.home, { recursive: true, mode: 0o700 });
    writeFileSync(this.file, JSON.stringify(this.own, null, 2) + '\n', { mode: 0o600 });
  }

  /** Appends a line to the log file when level is within loglevel; a log that cannot be written is not an error. */
  log(level: LogLevel, text: string): void {
    const v = this.values;
    if (LOG_LEVELS.indexOf(level) > LOG_LEVELS.indexOf(v.loglevel)) return;
    try {
      mkdirSync(dirname(v.logfile), { recursive: true, mode: 0o700 });
      appendFileSync(v.logfile, `${new Date().toISOString()} ${level} ${text}\n`, { mode: 0o600 });
    } catch {
      /* the log is a convenience */
    }
  }
}
