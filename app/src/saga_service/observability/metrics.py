"""Prometheus metrics. Names and labels are part of the app contract (app/README.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

SAGAS_STARTED = Counter("saga_started_total", "Sagas started (orders accepted).")
ORDER_STORE_RETRIES = Counter(
    "saga_order_store_retries_total",
    "Orders stored again on a new connection after their PostgreSQL session ended.",
)
SAGAS_COMPLETED = Counter("saga_completed_total", "Sagas that ended COMPLETED (order confirmed).")
SAGAS_COMPENSATED = Counter(
    "saga_compensated_total", "Sagas that ended COMPENSATED (order cancelled)."
)
STEP_FAILURES = Counter(
    "saga_step_failed_total",
    "Forward steps that failed and sent their saga into compensation, by step.",
    ["step"],
)
STEP_DURATION = Histogram(
    "saga_step_duration_seconds",
    "Time to run one saga step (lock wait included), by step and outcome.",
    ["step", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
SAGA_DURATION = Histogram(
    "saga_end_to_end_duration_seconds",
    "From order accepted to the saga's final state, by final state.",
    ["final_state"],
    buckets=_E2E_BUCKETS,
)
LOCK_WAIT = Histogram(
    "saga_lock_wait_seconds",
    "Time spent acquiring the Redis stock locks of one step.",
    buckets=_LATENCY_BUCKETS,
)
LOCK_HOLD = Histogram(
    "saga_lock_hold_seconds",
    "Time the Redis stock locks of one step were held.",
    buckets=_LATENCY_BUCKETS,
)
LOCK_FENCING_REJECTIONS = Counter(
    "saga_lock_fencing_rejections_total",
    "Stock writes rejected because a newer fencing token had already written.",
)
LOCK_ACQUIRE_FAILURES = Counter(
    "saga_lock_acquire_failures_total",
    "Lock acquisitions that timed out or hit a Redis error.",
    ["reason"],
)
OUTBOX_PENDING = Gauge("saga_outbox_pending", "Outbox rows not yet published to Kafka.")
OUTBOX_LAG = Gauge(
    "saga_outbox_lag_seconds", "Age of the oldest outbox row not yet published (0 when none)."
)
OUTBOX_PUBLISHED = Counter("saga_outbox_published_total", "Outbox rows published to Kafka.")
CONSUMER_BACKLOG = Gauge(
    "saga_consumer_backlog_messages",
    "Kafka messages not yet consumed on the partitions this process owns "
    "(the custom autoscaling signal).",
)
CONSUMER_WORK = Gauge(
    "saga_consumer_work_messages",
    "The backlog plus the messages this process is running now: it rises as soon as the "
    "consumer's slots fill, before any backlog forms (the leading autoscaling signal).",
)
CONSUMER_SLOTS = Gauge(
    "saga_consumer_slots", "Messages this process runs at once at most (its consumer slots)."
)
CONSUMER_REBALANCE_PAUSE = Histogram(
    "saga_consumer_rebalance_pause_seconds",
    "Time this process consumed nothing while its group rebalanced: from its partitions "
    "being revoked to its new assignment (the group's first join is not a pause).",
    buckets=_E2E_BUCKETS,
)
EVENTS_CONSUMED = Counter(
    "saga_events_consumed_total",
    "Kafka events handled, by outcome (processed, duplicate, stale, dead_lettered, retry_later).",
    ["outcome"],
)
DEAD_LETTERED = Counter(
    "saga_dead_lettered_total", "Messages sent to the dead-letter topic.", ["reason"]
)
DEPENDENCY_UP = Gauge(
    "saga_dependency_up",
    "1 when the dependency answered the last readiness check, else 0 (the pod stays Ready "
    "without Redis or Kafka, degraded).",
    ["dependency"],
)
SAGAS_IN_FLIGHT = Gauge("saga_in_flight", "Sagas not yet in a final state (whole database).")
RECOVERY_RESUMED = Counter(
    "saga_recovery_resumed_total", "Sagas whose lease expired and that this process resumed."
)
RECOVERY_GAVE_UP = Counter(
    "saga_recovery_gave_up_total",
    "Forward steps abandoned after SAGA_MAX_ATTEMPTS (the saga is compensated).",
)
HTTP_REQUESTS = Counter(
    "saga_http_requests_total", "HTTP requests by route and status.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "saga_http_request_duration_seconds",
    "HTTP request latency by route.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
RUNTIME_SETTING = Gauge(
    "saga_runtime_setting",
    "A setting that can change without a restart, as in effect now, by its environment name; "
    "LOG_LEVEL as Python's number (10 DEBUG, 20 INFO, 30 WARNING, 40 ERROR).",
    ["name"],
)
RUNTIME_CONFIG_RELOADS = Counter(
    "saga_runtime_config_reloads_total",
    "Changes of the runtime settings file seen, by outcome (applied, rejected).",
    ["outcome"],
)

# --- background jobs (the worker; the relay's counters in every `serve`) ---------------

_JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
JOB_STATES = ("waiting", "active", "delayed", "prioritized", "failed", "completed", "paused")
JOB_OUTCOMES = ("completed", "retried", "failed")

JOBS = Gauge(
    "saga_jobs",
    "Jobs in the queue by state, sampled from Redis (whole queue, every pod sees the same).",
    ["queue", "state"],
)
JOB_WAIT = Histogram(
    "saga_job_wait_seconds",
    "From a job's enqueueing to the start of its first attempt, by job name.",
    ["queue", "name"],
    buckets=_JOB_BUCKETS,
)
JOB_RUN = Histogram(
    "saga_job_run_seconds",
    "Run time of one attempt of a job, by job name and outcome.",
    ["queue", "name", "outcome"],
    buckets=_JOB_BUCKETS,
)
JOBS_PROCESSED = Counter(
    "saga_jobs_processed_total",
    "Job attempts by outcome: completed, retried (failed, attempts left), failed (to the "
    "failed set).",
    ["queue", "name", "outcome"],
)
JOBS_STALLED = Counter(
    "saga_jobs_stalled_total",
    "Jobs whose worker vanished (lock expired) that this worker's stall check handed back.",
    ["queue"],
)
JOB_OUTBOX_PENDING = Gauge(
    "saga_job_outbox_pending", "Job outbox rows not yet on the queue (whole database)."
)
JOB_OUTBOX_ENQUEUED = Counter(
    "saga_job_outbox_enqueued_total", "Job outbox rows this process put on the queue."
)
RECONCILE_FINDINGS = Gauge(
    "saga_reconcile_findings",
    "Findings of the latest reconciliation run, by broken invariant (0 when it holds).",
    ["rule"],
)
RECONCILE_LAST_RUN = Gauge(
    "saga_reconcile_last_run_timestamp_seconds",
    "When the latest reconciliation run finished (Unix time; 0 before the first).",
)

# Labelled counters have no series until a label value is first used, so an alert on
# increase()/rate() would miss the first event and a dashboard would show "No data".
# The label values the code can produce start at 0 (adapters/lock.py, entrypoints/consumer.py).
for _reason in ("timeout", "redis_error"):
    LOCK_ACQUIRE_FAILURES.labels(_reason)
for _reason in ("malformed", "unknown saga_id"):
    DEAD_LETTERED.labels(_reason)
for _outcome in ("applied", "rejected"):
    RUNTIME_CONFIG_RELOADS.labels(_outcome)
