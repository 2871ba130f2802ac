// tsiod's command line, as --help prints it and its manual page (tsiod(8),
// made at build time by cli/gen-docs.ts) says it: one text for both.

export const TSIOD_USAGE = `usage: tsiod [--config FILE.yaml] [--check] [--state-dir DIR] [--control PATH|none] [--saveconfig FILE]
             [--metrics HOST:PORT] [--poll-max-ns NS] [--log-level error|warn|notice|info|debug] [--version]
  --config FILE      start from this configuration (default: the embedded one: RAM LUNs over iSCSI and vhost);
                     a targetcli saveconfig.json is converted
  --check            check the configuration and everything starting it needs of this host (files, devices,
                     socket directories, free ports), print what it describes, and exit (1 on a problem)
  --control PATH     the control socket tcli talks to (JSON-RPC 2.0, mode 0600; default /run/tsio/control.sock)
  --saveconfig FILE  where saveconfig writes, and SIGHUP reads, by default (default /etc/tsio/saveconfig.yaml)
  --metrics H:P      serve Prometheus metrics at http://H:P/metrics (loopback addresses only; off by default)
  --poll-max-ns NS   busy-poll before sleeping, on every event loop (QEMU's iothread poll-max-ns): a vhost connection
                     polls its rings up to NS nanoseconds, the guest's kicks off meanwhile, and io_uring completions
                     are polled likewise; adaptive: from 4000, doubling while work comes within NS, halving while
                     it does not. Trades CPU for fewer wake-ups; overrides the config's daemon.poll_max_ns;
                     0 (default) never polls; at most 10000000
  --state-dir DIR    where state that outlives a restart is kept (APTPL reservations; default /var/lib/tsio)
  --log-level LEVEL  the least severe messages logged (default info; TSIO_LOG sets it too)
  --version          print the version and exit
Signals: SIGTERM, SIGINT: no new login or command; commands in flight end (3 s at most), initiators are asked to
  log out (2 s), sessions close, every store is flushed, exit (20 s at most, else status 1); initiators reconnect
  and reissue to the restarted daemon. SIGHUP: apply the saved configuration live.
Environment: TSIO_IO_URING=off sends fileio and block I/O through the thread pool instead of io_uring (as where the
  kernel has no io_uring or forbids it: kernel.io_uring_disabled, seccomp; the log says which, once).`;
