"""Indexes for listing sagas: newest first (keyset pages) and by customer.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Plain CREATE INDEX inside the migration's transaction: it blocks writes to the table while
# it builds, which on the tables this service keeps takes well under a second. A table large
# enough to matter would want CREATE INDEX CONCURRENTLY, outside a transaction.
UPGRADE = """
-- GET /sagas reads (created_at, saga_id) backwards from a cursor; a b-tree scans either way.
CREATE INDEX sagas_newest_idx ON sagas (created_at, saga_id);
-- GET /sagas?customer_id=: a customer's orders, then their sagas by the unique order_id.
CREATE INDEX orders_customer_idx ON orders (customer_id);
"""

DOWNGRADE = """
DROP INDEX orders_customer_idx;
DROP INDEX sagas_newest_idx;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
