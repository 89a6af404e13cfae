"""One reconciliation run: read a snapshot, check the saga's invariants, store the findings
(the latest run is what every worker exports as gauges), ask again for the document jobs
that went missing, report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from saga_service.adapters.postgres import reconciliation as store
from saga_service.adapters.postgres.db import Pool
from saga_service.domain.reconciliation import (
    Finding,
    Rule,
    check,
    count_by_rule,
    orders_without_document,
)
from saga_service.observability import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Report:
    run_id: int
    orders: int
    skus: int
    findings: list[Finding]
    counts: dict[Rule, int]
    # Document jobs asked for again (their job was lost with Redis's data, say).
    requeued: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


async def reconcile(pool: Pool, *, document_grace_seconds: float) -> Report:
    started_at = datetime.now(UTC)
    async with pool.connection() as conn:
        orders, skus = await store.read_snapshot(conn)
    findings = check(orders, skus, document_grace_seconds=document_grace_seconds)
    counts = count_by_rule(findings)
    async with pool.connection() as conn:
        run_id = await store.save_run(
            conn,
            started_at=started_at,
            orders=len(orders),
            skus=len(skus),
            findings=findings,
            counts=counts,
        )
    export(counts, datetime.now(UTC))
    requeued = 0
    if missing := orders_without_document(findings):
        async with pool.connection() as conn, conn.transaction():
            requeued = await store.requeue_document_jobs(conn, missing)
        log.warning("document jobs asked for again", extra={"orders": requeued})
    for finding in findings:
        log.warning(
            "invariant broken",
            extra={
                "rule": finding.rule.value,
                "subject": finding.subject,
                "detail": finding.detail,
            },
        )
    return Report(run_id, len(orders), len(skus), findings, counts, requeued)


def export(counts: dict[Rule, int] | dict[str, int], finished_at: datetime | None) -> None:
    """Set the gauges: every rule gets a series, 0 when it holds or has not been checked."""
    by_name = {str(rule): int(n) for rule, n in counts.items()}
    for rule in Rule:
        metrics.RECONCILE_FINDINGS.labels(rule.value).set(by_name.get(rule.value, 0))
    metrics.RECONCILE_LAST_RUN.set(finished_at.timestamp() if finished_at else 0)


async def export_latest(pool: Pool) -> None:
    """Export the latest run of whoever ran it (the CronJob, another worker)."""
    async with pool.connection() as conn:
        latest = await store.latest_run(conn)
    if latest is None:
        export({}, None)
    else:
        export(latest.counts, latest.finished_at)
