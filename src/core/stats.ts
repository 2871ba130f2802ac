// I/O statistics per logical unit and per session: command counts, bytes,
// errors and a latency histogram. Recorded once per command from the
// engine's finalize(), so the cost is a handful of additions — no
// allocation, no map lookup. Reading the clock costs more than all the
// counting, so latency is sampled: one command in LATENCY_SAMPLE_EVERY is
// timed (startedAt 0 means not sampled).

import { Status } from './sense';
import { DataDir } from './types';

/** Bucket i counts latencies in [2^(i-1), 2^i) microseconds; bucket 0 is < 1 µs. */
export const LATENCY_BUCKETS = 32;
export const LATENCY_SAMPLE_EVERY = 16;

let sampleCounter = 0;
/** ScsiCmd.startedAt's initial value: the clock for one command in LATENCY_SAMPLE_EVERY, else 0. */
export function sampleClock(): number {
  return (++sampleCounter & (LATENCY_SAMPLE_EVERY - 1)) === 0 ? performance.now() : 0;
}

export class IoStats {
  commands = 0;
  reads = 0;
  writes = 0;
  bytesRead = 0;
  bytesWritten = 0;
  errors = 0;
  /** Histogram of the sampled commands' latencies. */
  readonly latency = new Float64Array(LATENCY_BUCKETS);
  latencySamples = 0;
  latencySumUs = 0;

  add(dir: number, bytes: number, failed: boolean): void {
    this.commands++;
    if (failed) this.errors++;
    else if (dir === DataDir.IN) {
      this.reads++;
      this.bytesRead += bytes;
    } else if (dir === DataDir.OUT) {
      this.writes++;
      this.bytesWritten += bytes;
    }
  }

  /** Adds another's counts to these (a closed session's into its initiator's totals). */
  addAll(o: IoStats): void {
    this.commands += o.commands;
    this.reads += o.reads;
    this.writes += o.writes;
    this.bytesRead += o.bytesRead;
    this.bytesWritten += o.bytesWritten;
    this.errors += o.errors;
    this.latencySamples += o.latencySamples;
    this.latencySumUs += o.latencySumUs;
    for (let i = 0; i < LATENCY_BUCKETS; i++) this.latency[i] += o.latency[i];
  }

  addLatency(us: number): void {
    this.latencySamples++;
    this.latencySumUs += us;
    this.latency[us < 1 ? 0 : Math.min(LATENCY_BUCKETS - 1, 32 - Math.clz32(us))]++;
  }

  /** Latency (µs) below which a fraction q of sampled commands finished; within its bucket, interpolated. */
  percentile(q: number): number {
    const total = this.latencySamples;
    if (total === 0) return 0;
    const want = q * total;
    let seen = 0;
    for (let i = 0; i < LATENCY_BUCKETS; i++) {
      const n = this.latency[i];
      if (n === 0) continue;
      if (seen + n >= want) {
        const lo = i === 0 ? 0 : 2 ** (i - 1);
        const hi = 2 ** i;
        return Math.round(lo + ((want - seen) / n) * (hi - lo));
      }
      seen += n;
    }
    return 2 ** (LATENCY_BUCKETS - 1);
  }

  snapshot(): IoStatsSnapshot {
    return {
      commands: this.commands,
      reads: this.reads,
      writes: this.writes,
      bytes_read: this.bytesRead,
      bytes_written: this.bytesWritten,
      errors: this.errors,
      latency_us: {
        avg: this.latencySamples === 0 ? 0 : Math.round(this.latencySumUs / this.latencySamples),
        p50: this.percentile(0.5),
        p90: this.percentile(0.9),
        p99: this.percentile(0.99),
        p999: this.percentile(0.999),
      },
      latency_samples: this.latencySamples,
      latency_buckets_us: [...this.latency],
    };
  }
}

export interface IoStatsSnapshot {
  commands: number;
  reads: number;
  writes: number;
  bytes_read: number;
  bytes_written: number;
  errors: number;
  /** From the sampled commands (one in LATENCY_SAMPLE_EVERY). */
  latency_us: { avg: number; p50: number; p90: number; p99: number; p999: number };
  latency_samples: number;
  /** Counts per histogram bucket (see LATENCY_BUCKETS). */
  latency_buckets_us: number[];
}

/** What statistics read of a finished command (the engine's ScsiCmd; lu undefined on a LUN with no unit). */
export interface CountedCommand {
  readonly status: number;
  readonly dir: number;
  readonly dataLength: number;
  readonly dataInLength: number;
  readonly startedAt: number;
  readonly session: { readonly stats: IoStats };
  readonly lu: { readonly stats: IoStats } | undefined;
}

/** The engine's one call per finished command. */
export function recordCompletion(cmd: CountedCommand): void {
  const failed = cmd.status !== Status.GOOD && cmd.status !== Status.CONDITION_MET;
  const bytes = cmd.dir === DataDir.OUT ? cmd.dataLength : cmd.dataInLength;
  const lu = cmd.lu;
  cmd.session.stats.add(cmd.dir, bytes, failed);
  if (lu !== undefined) lu.stats.add(cmd.dir, bytes, failed);
  if (cmd.startedAt !== 0) {
    const us = (performance.now() - cmd.startedAt) * 1000;
    cmd.session.stats.addLatency(us);
    if (lu !== undefined) lu.stats.addLatency(us);
  }
}
