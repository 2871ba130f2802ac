// Sizes in config files and the shell: bytes, or a number with a binary unit.
//
// Units are powers of 1024 whether written k, K, KiB, M, MiB, G, GiB, T, TiB,
// P or PiB (the unit letter is case-insensitive; "iB" is not). "kB", "MB",
// "GB"... are refused: disk vendors mean powers of 1000, most tools 1024, and
// a size off by 7% is worse than an error. A fraction is fine when it lands on
// a whole byte (1.5GiB, 0.5k); 1.1k is refused.

export class SizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SizeError';
  }
}

const UNIT_POWER: Readonly<Record<string, number>> = { '': 0, b: 0, k: 1, m: 2, g: 3, t: 4, p: 5 };
const FORMAT_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** number, optional fraction, optional space, optional unit; anything else is not a size. */
export const SIZE_PATTERN = '^\\s*[0-9]+(\\.[0-9]+)?\\s*([kKmMgGtTpP](iB)?|B)?\\s*$';
const SIZE_RE = /^\s*([0-9]+)(?:\.([0-9]+))?\s*([A-Za-z]*)\s*$/;

/** Bytes from a number of bytes or a string such as "4k", "1.5GiB", "512". Throws SizeError. */
export function parseSize(input: number | string): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || !Number.isInteger(input)) throw new SizeError(`size ${input} is not a whole number of bytes`);
    if (input < 0) throw new SizeError(`size ${input} is negative`);
    if (input > Number.MAX_SAFE_INTEGER) throw new SizeError(`size ${input} is too large`);
    return input;
  }
  if (typeof input !== 'string') throw new SizeError(`size ${String(input)} is not a size`);
  const m = SIZE_RE.exec(input);
  if (!m) {
    const why = /^\s*-/.test(input) ? ': sizes cannot be negative' : ': use bytes or a number with k, M, G, T or P (binary units)';
    throw new SizeError(`size '${input}' is not a size${why}`);
  }
  const [, whole, frac = '', unitText] = m;
  const power = unitPower(unitText);
  if (power === undefined) {
    const si = /^[kmgtp]b$/i.test(unitText);
    const hint = si
      ? `: '${unitText}' is ambiguous (1000 or 1024?); write ${unitText[0].toUpperCase()}iB for 1024-based`
      : `: unknown unit '${unitText}' (use k, M, G, T, P, optionally with iB)`;
    throw new SizeError(`size '${input}' is not a size${hint}`);
  }
  // Exact arithmetic: (whole.frac) * 1024^power must be a whole number of bytes.
  const scale = 10n ** BigInt(frac.length);
  const numerator = (BigInt(whole) * scale + BigInt(frac === '' ? '0' : frac)) * 1024n ** BigInt(power);
  if (numerator % scale !== 0n) throw new SizeError(`size '${input}' is not a whole number of bytes`);
  const bytes = numerator / scale;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new SizeError(`size '${input}' is too large`);
  return Number(bytes);
}

function unitPower(unit: string): number | undefined {
  if (unit === '' || unit === 'B') return 0;
  if (unit.length === 1) return unit === 'b' ? undefined : UNIT_POWER[unit.toLowerCase()];
  if (unit.length === 3 && unit.endsWith('iB') && unit[0].toLowerCase() !== 'b') return UNIT_POWER[unit[0].toLowerCase()];
  return undefined;
}

/** Exact, round-trippable: the largest binary unit that divides bytes (1073741824 -> "1GiB", 1536 -> "1536B"). */
export function formatSize(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new SizeError(`size ${bytes} is not a whole number of bytes`);
  if (bytes === 0) return '0B';
  let power = 0;
  let n = bytes;
  while (power < FORMAT_UNITS.length - 1 && n % 1024 === 0) {
    n /= 1024;
    power++;
  }
  return `${n}${FORMAT_UNITS[power]}`;
}

/** Approximate, for people: one decimal in the largest unit below the value (1610612736 -> "1.5GiB"). */
export function formatSizeHuman(bytes: number, digits = 1): string {
  let power = 0;
  let n = bytes;
  while (power < FORMAT_UNITS.length - 1 && n >= 1024) {
    n /= 1024;
    power++;
  }
  return power === 0 ? `${bytes}B` : `${n.toFixed(digits)}${FORMAT_UNITS[power]}`;
}
