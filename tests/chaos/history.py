"""What a campaign records, and nothing else: the operations the load driver sent, the
faults the runner injected, and what the app says at the end. Plain data, read from and
written to JSON lines, so the checker and the report work on a saved run as well as a
live one (`python -m tests.chaos check RUN_DIR`).

Times are wall-clock seconds (UNIX epoch, float) taken inside the cluster for operations
and on the host for faults; both clocks are the same kernel's here (kind nodes are
containers), and the checker only compares them at the seconds scale.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class Outcome(enum.StrEnum):
    """Jepsen's three: the operation happened (ok), did not happen (fail), or nobody knows
    (info: the request was sent but no answer came, so the order may exist)."""

    OK = "ok"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Op:
    """One `POST /orders` as the load driver saw it."""

    seq: int
    start: float
    end: float
    outcome: Outcome
    sku: str
    quantity: int
    customer_id: str
    status: int | None = None  # HTTP status; None when no answer came
    order_id: str | None = None  # set when outcome is ok (202)
    saga_id: str | None = None
    error: str = ""  # error code from the body, or the exception's name
    served_by: str = ""  # x-served-by: the pod that answered
    # Errors of the connection attempts that failed (the driver tries a second one)
    connect_errors: tuple[str, ...] = ()

    @classmethod
    def from_line(cls, line: dict[str, Any]) -> Op:
        """From a JSON line of the load driver or of a written history (minus its type)."""
        return cls(
            **{
                **line,
                "outcome": Outcome(line["outcome"]),
                "connect_errors": tuple(line.get("connect_errors", ())),
            }
        )


@dataclass(frozen=True, slots=True)
class StockSample:
    """`GET /stock/{sku}` during the run (for the 'never negative' rule)."""

    at: float
    sku: str
    available: int
    reserved: int


@dataclass(frozen=True, slots=True)
class Sample:
    """What the runner saw of the release every couple of seconds."""

    at: float
    ready_pods: int  # app pods Ready (from the API server)
    backlog: float | None = None  # saga backlog from the external metrics API, when served


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault. `effect_at` is when a probe confirmed it took effect (None: it
    never did, and the checker refuses to trust that window); `recovered_at` is when the
    runner saw the release whole again after the heal (app pods Ready, data layer Ready)."""

    index: int
    kind: str
    target: str
    start: float
    effect_at: float | None
    heal_at: float
    recovered_at: float | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SagaStep:
    step: str  # reserve_stock, charge_payment, confirm_order, refund_payment, ...
    outcome: str  # SUCCEEDED or FAILED
    executed_by: str | None
    at: float


@dataclass(frozen=True, slots=True)
class FinalOrder:
    """An accepted order at the end of the run, as `GET /orders/{id}` and
    `GET /sagas/{saga_id}` answer."""

    order_id: str
    saga_id: str
    status: str  # PENDING, CONFIRMED or CANCELLED
    saga_state: str  # COMPLETED, COMPENSATED, or a state still under way
    steps: tuple[SagaStep, ...]
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class FinalStock:
    sku: str
    initial: int
    available: int
    reserved: int


@dataclass(slots=True)
class History:
    run_id: str
    seed: int
    ops: list[Op] = field(default_factory=list)
    stock_samples: list[StockSample] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    orders: list[FinalOrder] = field(default_factory=list)
    stock: list[FinalStock] = field(default_factory=list)
    load_started: float = 0.0
    load_ended: float = 0.0

    # --- files --------------------------------------------------------------------------

    def write(self, path: Path) -> None:
        path.write_text("".join(json.dumps(line) + "\n" for line in self._lines()))

    def _lines(self) -> Iterator[dict[str, Any]]:
        yield {
            "type": "run",
            "run_id": self.run_id,
            "seed": self.seed,
            "load_started": self.load_started,
            "load_ended": self.load_ended,
        }
        for kind, items in (
            ("op", self.ops),
            ("stock", self.stock_samples),
            ("sample", self.samples),
            ("fault", self.faults),
            ("order", self.orders),
            ("final_stock", self.stock),
        ):
            for item in items:
                yield {"type": kind, **asdict(item)}

    @classmethod
    def read(cls, path: Path) -> History:
        return cls.from_lines(json.loads(raw) for raw in path.read_text().splitlines() if raw)

    @classmethod
    def from_lines(cls, lines: Iterable[dict[str, Any]]) -> History:
        history = cls(run_id="", seed=0)
        for line in lines:
            kind = line.pop("type")
            if kind == "run":
                history.run_id = line["run_id"]
                history.seed = line["seed"]
                history.load_started = line["load_started"]
                history.load_ended = line["load_ended"]
            elif kind == "op":
                history.ops.append(Op.from_line(line))
            elif kind == "stock":
                history.stock_samples.append(StockSample(**line))
            elif kind == "sample":
                history.samples.append(Sample(**line))
            elif kind == "fault":
                history.faults.append(Fault(**line))
            elif kind == "order":
                steps = tuple(SagaStep(**s) for s in line.pop("steps"))
                history.orders.append(FinalOrder(**line, steps=steps))
            elif kind == "final_stock":
                history.stock.append(FinalStock(**line))
            else:
                raise ValueError(f"unknown history line type {kind!r}")
        return history
