// One logger for the daemon: level from TSIO_LOG (error, warn, info, debug).

const LEVELS = { error: 0, warn: 1, info: 2, debug: 3 } as const;
type Level = keyof typeof LEVELS;

let threshold: number = LEVELS[(process.env.TSIO_LOG as Level) ?? 'info'] ?? LEVELS.info;

function emit(level: Level, msg: string, extra: unknown[]): void {
  if (LEVELS[level] > threshold) return;
  const tail = extra.map((e) => (e instanceof Error ? (e.stack ?? e.message) : typeof e === 'string' ? e : JSON.stringify(e)));
  process.stderr.write(`tsio ${level}: ${[msg, ...tail].join(' ')}\n`);
}

export const log = {
  setLevel(level: Level): void {
    threshold = LEVELS[level];
  },
  error: (msg: string, ...extra: unknown[]) => emit('error', msg, extra),
  warn: (msg: string, ...extra: unknown[]) => emit('warn', msg, extra),
  info: (msg: string, ...extra: unknown[]) => emit('info', msg, extra),
  debug: (msg: string, ...extra: unknown[]) => emit('debug', msg, extra),
};
