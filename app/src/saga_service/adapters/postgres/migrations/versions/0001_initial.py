"""Initial schema: orders, stock, sagas with steps, payments, outbox, processed events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE stock (
    sku          text PRIMARY KEY,
    available    integer NOT NULL CHECK (available >= 0),
    reserved     integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    fence_token  bigint  NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    order_id     uuid PRIMARY KEY,
    saga_id      uuid NOT NULL UNIQUE,
    customer_id  text NOT NULL,
    total_cents  bigint NOT NULL CHECK (total_cents >= 0),
    status       text NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_items (
    order_id          uuid NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    sku               text NOT NULL,
    quantity          integer NOT NULL CHECK (quantity > 0),
    unit_price_cents  bigint NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, sku)
);

CREATE TABLE sagas (
    saga_id           uuid PRIMARY KEY,
    order_id          uuid NOT NULL UNIQUE REFERENCES orders (order_id),
    state             text NOT NULL,
    attempts          integer NOT NULL DEFAULT 0,
    failed_step       text,
    last_error        text,
    lease_owner       text,
    lease_expires_at  timestamptz NOT NULL,
    correlation_id    text,
    traceparent       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
CREATE INDEX sagas_due_idx ON sagas (lease_expires_at)
    WHERE state NOT IN ('COMPLETED', 'COMPENSATED');

-- One row per step that took effect; UNIQUE makes "no effect twice" a database fact.
CREATE TABLE saga_steps (
    id           bigserial PRIMARY KEY,
    saga_id      uuid NOT NULL REFERENCES sagas (saga_id),
    step         text NOT NULL,
    outcome      text NOT NULL,
    from_state   text NOT NULL,
    to_state     text NOT NULL,
    detail       text,
    executed_by  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (saga_id, step)
);

CREATE TABLE stock_reservations (
    saga_id      uuid NOT NULL REFERENCES sagas (saga_id),
    sku          text NOT NULL REFERENCES stock (sku),
    quantity     integer NOT NULL CHECK (quantity > 0),
    status       text NOT NULL CHECK (status IN ('RESERVED', 'RELEASED', 'COMMITTED')),
    fence_token  bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_id, sku)
);

CREATE TABLE payments (
    saga_id       uuid PRIMARY KEY REFERENCES sagas (saga_id),
    order_id      uuid NOT NULL,
    customer_id   text NOT NULL,
    amount_cents  bigint NOT NULL CHECK (amount_cents >= 0),
    status        text NOT NULL CHECK (status IN ('CHARGED', 'DECLINED', 'REFUNDED')),
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    saga_id       uuid NOT NULL,
    event_type    text NOT NULL,
    payload       text NOT NULL,
    headers       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE processed_events (
    consumer      text NOT NULL,
    event_id      uuid NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
"""

DOWNGRADE = """
DROP TABLE processed_events;
DROP TABLE outbox;
DROP TABLE payments;
DROP TABLE stock_reservations;
DROP TABLE saga_steps;
DROP TABLE sagas;
DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE stock;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
