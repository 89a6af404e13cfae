"""The saga state machine and the event envelope."""

from __future__ import annotations

import uuid

import pytest
from saga_service.domain.events import MalformedEvent, SagaEvent, parse_event
from saga_service.domain.order import OrderStatus
from saga_service.domain.saga import (
    COMPENSATING_STATES,
    FINAL_STATES,
    FORWARD_STATES,
    IllegalTransition,
    SagaState,
    Step,
    StepOutcome,
    give_up,
    is_final,
    order_status_for,
    retry_delay_seconds,
    step_for,
    transition,
)

S = SagaState
OK = StepOutcome.SUCCEEDED
FAIL = StepOutcome.FAILED


def walk(outcomes: dict[SagaState, StepOutcome]) -> list[Step | SagaState]:
    """Run the machine from the start, with the given outcome per state (default OK)."""
    state, steps = S.RESERVING_STOCK, list[Step | SagaState]()
    while not is_final(state):
        tr = transition(state, outcomes.get(state, OK))
        steps.append(tr.step)
        state = tr.target
    return [*steps, state]


def test_happy_path() -> None:
    assert walk({}) == [
        Step.RESERVE_STOCK,
        Step.CHARGE_PAYMENT,
        Step.CONFIRM_ORDER,
        S.COMPLETED,
    ]


def test_out_of_stock_only_cancels() -> None:
    assert walk({S.RESERVING_STOCK: FAIL}) == [Step.RESERVE_STOCK, Step.CANCEL_ORDER, S.COMPENSATED]


def test_declined_payment_releases_stock_then_cancels() -> None:
    assert walk({S.CHARGING_PAYMENT: FAIL}) == [
        Step.RESERVE_STOCK,
        Step.CHARGE_PAYMENT,
        Step.RELEASE_STOCK,
        Step.CANCEL_ORDER,
        S.COMPENSATED,
    ]


def test_failed_confirmation_compensates_everything_in_reverse() -> None:
    assert walk({S.CONFIRMING: FAIL}) == [
        Step.RESERVE_STOCK,
        Step.CHARGE_PAYMENT,
        Step.CONFIRM_ORDER,
        Step.REFUND_PAYMENT,
        Step.RELEASE_STOCK,
        Step.CANCEL_ORDER,
        S.COMPENSATED,
    ]


def test_every_state_is_classified_once() -> None:
    groups = [FORWARD_STATES, COMPENSATING_STATES, FINAL_STATES]
    assert set().union(*groups) == set(SagaState)
    assert sum(len(g) for g in groups) == len(SagaState)
    for state in SagaState:
        assert (step_for(state) is None) == is_final(state)


def test_compensations_cannot_fail_and_finals_have_no_step() -> None:
    for state in COMPENSATING_STATES:
        with pytest.raises(IllegalTransition):
            transition(state, FAIL)
    for state in FINAL_STATES:
        with pytest.raises(IllegalTransition):
            transition(state, OK)


def test_give_up_enters_compensation_for_forward_states_only() -> None:
    assert give_up(S.RESERVING_STOCK).target is S.CANCELLING
    assert give_up(S.CHARGING_PAYMENT).target is S.RELEASING_STOCK
    assert give_up(S.CONFIRMING).target is S.REFUNDING
    for state in COMPENSATING_STATES | FINAL_STATES:
        with pytest.raises(IllegalTransition):
            give_up(state)


def test_every_path_ends_final_and_in_a_bounded_number_of_steps() -> None:
    for failing in [None, *FORWARD_STATES]:
        outcomes = {failing: FAIL} if failing else {}
        path = walk(outcomes)
        assert path[-1] in FINAL_STATES
        assert len(path) <= 7


def test_order_status_mapping() -> None:
    assert order_status_for(S.COMPLETED) is OrderStatus.CONFIRMED
    assert order_status_for(S.COMPENSATED) is OrderStatus.CANCELLED
    for state in FORWARD_STATES | COMPENSATING_STATES:
        assert order_status_for(state) is OrderStatus.PENDING


def test_retry_backoff_grows_and_is_capped() -> None:
    delays = [retry_delay_seconds(n, base=0.5, cap=4.0) for n in range(0, 7)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_event_round_trip_and_key_check() -> None:
    saga_id = uuid.uuid4()
    event = SagaEvent(uuid.uuid4(), "StockReserved", saga_id, uuid.uuid4(), S.CHARGING_PAYMENT)
    assert parse_event(event.to_json(), str(saga_id).encode()) == event
    with pytest.raises(MalformedEvent, match="key does not match"):
        parse_event(event.to_json(), b"other")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty"),
        (b"\xff\xfe", "not JSON"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"v": 2}', "schema version"),
        (b'{"v": 1, "event_type": "Nope"}', "unknown event_type"),
        (b'{"v": 1, "event_type": "OrderPlaced", "state": "X"}', "unknown state"),
        (
            b'{"v": 1, "event_type": "OrderPlaced", "state": "RESERVING_STOCK",'
            b' "event_id": "x", "saga_id": "y", "order_id": "z"}',
            "not a UUID",
        ),
    ],
)
def test_malformed_events_carry_the_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        parse_event(raw)
