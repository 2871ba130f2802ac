// One logger for the daemon: level from TSIO_LOG (error, warn, notice, info, debug).
// Under systemd, lines carry their syslog priority as a "<N>" prefix so the
// journal files them by severity (journalctl -p).

const LEVELS = { error: 0, warn: 1, notice: 2, info: 3, debug: 4 } as const;
export type LogLevel = keyof typeof LEVELS;
/** RFC 5424 severities: err, warning, notice, info, debug. */
const PRIORITY: Record<LogLevel, number> = { error: 3, warn: 4, notice: 5, info: 6, debug: 7 };

let threshold: number = LEVELS[(process.env.TSIO_LOG as LogLevel) ?? 'info'] ?? LEVELS.info;
let priorityPrefix = false;

function emit(level: LogLevel, msg: string, extra: unknown[]): void {
  if (LEVELS[level] > threshold) return;
  const tail = extra.map((e) => (e instanceof Error ? (e.stack ?? e.message) : typeof e === 'string' ? e : JSON.stringify(e)));
  const text = `tsio ${level}: ${[msg, ...tail].join(' ')}`;
  // The journal reads each line on its own: a stack trace keeps its priority on every line.
  process.stderr.write(priorityPrefix ? text.split('\n').map((l) => `<${PRIORITY[level]}>${l}`).join('\n') + '\n' : `${text}\n`);
}

export const log = {
  setLevel(level: LogLevel): void {
    if (!(level in LEVELS)) throw new Error(`unknown log level '${level}' (${Object.keys(LEVELS).join(', ')})`);
    threshold = LEVELS[level];
  },
  /** The level set (an I/O thread starts with its daemon's). */
  level(): LogLevel {
    return (Object.keys(LEVELS) as LogLevel[]).find((k) => LEVELS[k] === threshold)!;
  },
  priorityPrefix(): boolean {
    return priorityPrefix;
  },
  /** Prefix each line with its syslog priority (stderr is the journal). */
  setPriorityPrefix(on: boolean): void {
    priorityPrefix = on;
  },
  error: (msg: string, ...extra: unknown[]) => emit('error', msg, extra),
  warn: (msg: string, ...extra: unknown[]) => emit('warn', msg, extra),
  /** Normal but significant: refused logins, configuration changes (who and what). */
  notice: (msg: string, ...extra: unknown[]) => emit('notice', msg, extra),
  info: (msg: string, ...extra: unknown[]) => emit('info', msg, extra),
  debug: (msg: string, ...extra: unknown[]) => emit('debug', msg, extra),
};
