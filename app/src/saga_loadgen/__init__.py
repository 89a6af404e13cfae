"""`saga-service loadgen`: an open-loop load generator for the order API.

Meant to run as a Kubernetes Job next to the app (it needs only HTTP access to the app's
Service; no database, Redis or Kafka settings):

1. waits until ``GET {target}/healthz/ready`` answers 200 (exit 3 when it never does);
2. sets the stock of its own SKUs (``PUT /stock/{run_id}-sku-N``), so runs never collide;
3. sends ``POST /orders`` on a fixed schedule, ``rate`` per second for ``duration`` seconds
   (after an optional warm-up at the same rate), whatever the responses: an open loop. At
   most ``concurrency`` requests are in flight; a send that cannot start within
   ``LATE_AFTER_SECONDS`` of its scheduled time counts as *late*;
4. polls ``GET /sagas/{saga_id}`` for (a sample of) the accepted orders until their saga
   is final (COMPLETED or COMPENSATED) or ``wait-seconds`` have passed, and reports the
   end-to-end saga latency (from the saga's own created_at/finished_at when the service
   returns them, else as observed by the load generator);
5. prints one JSON line per second while it runs, then the summary as the last line (and
   into ``--output``); the exit code says whether the run met its thresholds.

Modules: options (flags, LOADGEN_* variables, checks), schedule (when each order is sent,
and its body), stats (percentiles), recorder (what each second and each phase saw, and the
polled sagas), report (the summary and its thresholds), runner (the I/O), cli (the
`loadgen` sub-command of `saga-service`). All but runner are pure and unit-tested
(tests/unit/app/test_loadgen.py); runner is tested over httpx's in-memory transport.
"""

# In one place: cli, runner and report each end a run with one of them, and the chart's
# Job reports the run by its exit code.
EXIT_OK = 0
EXIT_FAILED = 1  # the run finished but broke a threshold (errors, stuck sagas, a signal)
EXIT_USAGE = 2  # bad arguments / environment
EXIT_UNREACHABLE = 3  # the target never became ready, or its stock could not be set
