// I/O statistics per logical unit and per session: command counts, bytes,
// errors and a latency histogram. Recorded once per command from the
// engine's finalize(), so the cost is a handful of additions and one
// Math.clz32 — no allocation, no map lookup. Counts and bytes are exact;
// latency is sampled (one command in LATENCY_SAMPLE_EVERY), because reading
// the clock twice cost more than the rest of a RAM command's path.

import type { ScsiCmd } from './command';
import { Status } from './sense';
import { DataDir } from './opcodes';

/** Bucket i counts latencies in [2^(i-1), 2^i) microseconds; bucket 0 is < 1 µs. */
export const LATENCY_BUCKETS = 32;

/** One command in this many has its latency measured (a power of two). */
export const LATENCY_SAMPLE_EVERY = 16;
let sampleTick = 0;

/** A command's start time for the latency statistics, or -1 when it is not sampled. */
export function latencyStart(): number {
  return (sampleTick++ & (LATENCY_SAMPLE_EVERY - 1)) === 0 ? performance.now() : -1;
}

export class IoStats {
  commands = 0;
  reads = 0;
  writes = 0;
  bytesRead = 0;
  bytesWritten = 0;
  errors = 0;
  readonly latency = new Float64Array(LATENCY_BUCKETS);
  latencySumUs = 0;
  /** Commands whose latency was measured (the histogram's total). */
  timed = 0;

  /** us < 0: the command's latency was not sampled. */
  add(dir: number, bytes: number, failed: boolean, us: number): void {
    this.commands++;
    if (failed) this.errors++;
    else if (dir === DataDir.IN) {
      this.reads++;
      this.bytesRead += bytes;
    } else if (dir === DataDir.OUT) {
      this.writes++;
      this.bytesWritten += bytes;
    }
    if (us < 0) return;
    this.timed++;
    this.latencySumUs += us;
    this.latency[us < 1 ? 0 : Math.min(LATENCY_BUCKETS - 1, 32 - Math.clz32(us))]++;
  }

  /** Latency (µs) below which a fraction q of commands finished; the bucket's upper bound, interpolated. */
  percentile(q: number): number {
    const total = this.timed;
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
        avg: this.timed === 0 ? 0 : Math.round(this.latencySumUs / this.timed),
        p50: this.percentile(0.5),
        p90: this.percentile(0.9),
        p99: this.percentile(0.99),
        p999: this.percentile(0.999),
      },
      latency_buckets_us: [...this.latency],
      latency_samples: this.timed,
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
  latency_us: { avg: number; p50: number; p90: number; p99: number; p999: number };
  /** Counts per histogram bucket (see LATENCY_BUCKETS). */
  latency_buckets_us: number[];
  /** Commands the latency figures are drawn from (one in LATENCY_SAMPLE_EVERY). */
  latency_samples: number;
}

/** The engine's one call per finished command. */
export function recordCompletion(cmd: ScsiCmd): void {
  const us = cmd.startedAt < 0 ? -1 : (performance.now() - cmd.startedAt) * 1000;
  const failed = cmd.status !== Status.GOOD && cmd.status !== Status.CONDITION_MET;
  const bytes = cmd.dir === DataDir.OUT ? cmd.dataLength : cmd.dataInLength;
  cmd.session.stats.add(cmd.dir, bytes, failed, us);
  if (cmd.lu !== undefined) cmd.lu.stats.add(cmd.dir, bytes, failed, us);
}
