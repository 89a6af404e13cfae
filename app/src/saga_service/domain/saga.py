"""The order saga as a state machine.

Forward: RESERVING_STOCK -> CHARGING_PAYMENT -> CONFIRMING -> COMPLETED.
A failure at a step enters the compensations of the steps already done, in reverse:
REFUNDING -> RELEASING_STOCK -> CANCELLING -> COMPENSATED.
Each state names the one step that is due; a step's effect and the move to the next
state happen in one database transaction, so a state is never half applied.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from saga_service.domain.order import OrderStatus


class SagaState(enum.StrEnum):
    RESERVING_STOCK = "RESERVING_STOCK"
    CHARGING_PAYMENT = "CHARGING_PAYMENT"
    CONFIRMING = "CONFIRMING"
    COMPLETED = "COMPLETED"
    REFUNDING = "REFUNDING"
    RELEASING_STOCK = "RELEASING_STOCK"
    CANCELLING = "CANCELLING"
    COMPENSATED = "COMPENSATED"


class Step(enum.StrEnum):
    RESERVE_STOCK = "reserve_stock"
    CHARGE_PAYMENT = "charge_payment"
    CONFIRM_ORDER = "confirm_order"
    REFUND_PAYMENT = "refund_payment"
    RELEASE_STOCK = "release_stock"
    CANCEL_ORDER = "cancel_order"


class StepOutcome(enum.StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


FINAL_STATES = frozenset({SagaState.COMPLETED, SagaState.COMPENSATED})
FORWARD_STATES = frozenset(
    {SagaState.RESERVING_STOCK, SagaState.CHARGING_PAYMENT, SagaState.CONFIRMING}
)
COMPENSATING_STATES = frozenset(
    {SagaState.REFUNDING, SagaState.RELEASING_STOCK, SagaState.CANCELLING}
)

_STEP_OF_STATE: dict[SagaState, Step] = {
    SagaState.RESERVING_STOCK: Step.RESERVE_STOCK,
    SagaState.CHARGING_PAYMENT: Step.CHARGE_PAYMENT,
    SagaState.CONFIRMING: Step.CONFIRM_ORDER,
    SagaState.REFUNDING: Step.REFUND_PAYMENT,
    SagaState.RELEASING_STOCK: Step.RELEASE_STOCK,
    SagaState.CANCELLING: Step.CANCEL_ORDER,
}

_ON_SUCCESS: dict[SagaState, SagaState] = {
    SagaState.RESERVING_STOCK: SagaState.CHARGING_PAYMENT,
    SagaState.CHARGING_PAYMENT: SagaState.CONFIRMING,
    SagaState.CONFIRMING: SagaState.COMPLETED,
    SagaState.REFUNDING: SagaState.RELEASING_STOCK,
    SagaState.RELEASING_STOCK: SagaState.CANCELLING,
    SagaState.CANCELLING: SagaState.COMPENSATED,
}

# Where compensation starts when a forward step fails (or gives up): undo only what the
# earlier steps did. A step's own effect is atomic with its state change, so a failed step
# left nothing of its own to undo.
_ON_FAILURE: dict[SagaState, SagaState] = {
    SagaState.RESERVING_STOCK: SagaState.CANCELLING,
    SagaState.CHARGING_PAYMENT: SagaState.RELEASING_STOCK,
    SagaState.CONFIRMING: SagaState.REFUNDING,
}

# The event each state change publishes (what just happened).
_EVENT_OF_TRANSITION: dict[tuple[SagaState, StepOutcome], str] = {
    (SagaState.RESERVING_STOCK, StepOutcome.SUCCEEDED): "StockReserved",
    (SagaState.RESERVING_STOCK, StepOutcome.FAILED): "StockReservationFailed",
    (SagaState.CHARGING_PAYMENT, StepOutcome.SUCCEEDED): "PaymentCharged",
    (SagaState.CHARGING_PAYMENT, StepOutcome.FAILED): "PaymentDeclined",
    (SagaState.CONFIRMING, StepOutcome.SUCCEEDED): "OrderConfirmed",
    (SagaState.CONFIRMING, StepOutcome.FAILED): "OrderConfirmationFailed",
    (SagaState.REFUNDING, StepOutcome.SUCCEEDED): "PaymentRefunded",
    (SagaState.RELEASING_STOCK, StepOutcome.SUCCEEDED): "StockReleased",
    (SagaState.CANCELLING, StepOutcome.SUCCEEDED): "OrderCancelled",
}

INITIAL_EVENT = "OrderPlaced"
EVENT_TYPES = frozenset({INITIAL_EVENT, *_EVENT_OF_TRANSITION.values()})


class IllegalTransition(ValueError):
    pass


def is_final(state: SagaState) -> bool:
    return state in FINAL_STATES


def step_for(state: SagaState) -> Step | None:
    """The step due in `state`; None for a final state."""
    return _STEP_OF_STATE.get(state)


@dataclass(frozen=True, slots=True)
class Transition:
    source: SagaState
    target: SagaState
    step: Step
    outcome: StepOutcome
    event_type: str

    @property
    def compensating(self) -> bool:
        return self.target in COMPENSATING_STATES or self.target is SagaState.COMPENSATED


def transition(state: SagaState, outcome: StepOutcome) -> Transition:
    """Where the saga goes after the step due in `state` ended with `outcome`."""
    step = step_for(state)
    if step is None:
        raise IllegalTransition(f"saga in final state {state} has no step")
    if outcome is StepOutcome.SUCCEEDED:
        target = _ON_SUCCESS[state]
    elif state in _ON_FAILURE:
        target = _ON_FAILURE[state]
    else:
        raise IllegalTransition(f"compensation step {step} cannot fail, it is retried")
    return Transition(state, target, step, outcome, _EVENT_OF_TRANSITION[(state, outcome)])


def give_up(state: SagaState) -> Transition:
    """A forward step that cannot progress after its retries: compensate instead."""
    if state not in FORWARD_STATES:
        raise IllegalTransition(f"only forward steps give up, not {state}")
    return transition(state, StepOutcome.FAILED)


def order_status_for(state: SagaState) -> OrderStatus:
    if state is SagaState.COMPLETED:
        return OrderStatus.CONFIRMED
    if state is SagaState.COMPENSATED:
        return OrderStatus.CANCELLED
    return OrderStatus.PENDING


def retry_delay_seconds(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff for the n-th retry (1-based), capped."""
    if attempt < 1:
        return 0.0
    return float(min(cap, base * (2 ** (attempt - 1))))
