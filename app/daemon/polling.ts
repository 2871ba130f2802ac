// The daemon's busy-poll setting (daemon.poll_max_ns, or tsiod --poll-max-ns), applied on the thread that
// calls it: vhost rings before a connection sleeps on its kicks, and io_uring completions before the loop
// sleeps on the ring. Every event loop (main and each I/O thread) applies it for itself, and sleeps with
// one epoll_pwait, not two (native singlePollWaits: the loop's idle-time metrics, which tsio never reads).

import { MAX_POLL_NS, setVhostPollMaxNs } from '../../fabrics/vhost/vhost';
import { setRingPollNs } from '../../backstores/ring-io';
import { singlePollWaits } from '../../native';

export { MAX_POLL_NS };

export function applyPolling(ns: number): void {
  setVhostPollMaxNs(ns);
  setRingPollNs(ns);
  singlePollWaits();
}
