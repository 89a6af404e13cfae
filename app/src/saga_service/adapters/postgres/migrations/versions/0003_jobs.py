"""Background jobs: the job outbox, order documents, reconciliation runs and findings.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
-- Jobs to put on the Redis queue, written in the transaction whose outcome asks for them
-- (a job exists if and only if that transaction committed). job_id is the queue's job id,
-- so a relay that enqueues a row twice adds one job.
CREATE TABLE job_outbox (
    id           bigserial PRIMARY KEY,
    job_id       text NOT NULL UNIQUE,
    job_name     text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    enqueued_at  timestamptz
);
CREATE INDEX job_outbox_pending_idx ON job_outbox (id) WHERE enqueued_at IS NULL;
CREATE INDEX job_outbox_enqueued_at_idx ON job_outbox (enqueued_at)
    WHERE enqueued_at IS NOT NULL;

-- The order-document job's effect. The primary key is its idempotency key: a job that
-- runs twice finds the row and changes nothing.
CREATE TABLE order_documents (
    order_id     uuid PRIMARY KEY REFERENCES orders (order_id),
    saga_id      uuid NOT NULL,
    body         text NOT NULL,
    job_id       text NOT NULL,
    rendered_by  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reconciliation_runs (
    id            bigserial PRIMARY KEY,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    orders        integer NOT NULL,
    skus          integer NOT NULL,
    findings      integer NOT NULL,
    counts        jsonb NOT NULL
);

CREATE TABLE reconciliation_findings (
    run_id   bigint NOT NULL REFERENCES reconciliation_runs (id) ON DELETE CASCADE,
    rule     text NOT NULL,
    subject  text NOT NULL,
    detail   text NOT NULL,
    PRIMARY KEY (run_id, rule, subject)
);
"""

DOWNGRADE = """
DROP TABLE reconciliation_findings;
DROP TABLE reconciliation_runs;
DROP TABLE order_documents;
DROP TABLE job_outbox;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
