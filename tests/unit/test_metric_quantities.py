"""The metrics APIs print values as Kubernetes quantities; the e2e tier and the scaling
benchmark read them back (a backlog of 2000 arrives as "2k")."""

from __future__ import annotations

import pytest

from tests.e2e.scaling import quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("40", 40),
        ("250m", 0.25),
        ("2k", 2000),
        ("1.5M", 1.5e6),
        ("1Gi", 2**30),
        ("1234567n", 1234567e-9),
        ("512Ki", 512 * 2**10),
    ],
)
def test_quantities_read_back_as_numbers(text: str, value: float) -> None:
    assert quantity(text) == value


def test_an_unknown_suffix_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        quantity("3x")
