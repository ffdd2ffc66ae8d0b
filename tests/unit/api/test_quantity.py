"""Kubernetes quantities: the apiserver's reading, exactly, and refusal of everything else."""

from __future__ import annotations

import contextlib
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gastown.api.quantity import MAX_QUANTITY_LENGTH, QuantityError, format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", Fraction(2)),
        ("500m", Fraction(1, 2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("1.", Fraction(1)),
        ("100m", Fraction(1, 10)),
        ("0.1", Fraction(1, 10)),
        ("1Ki", Fraction(1024)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("4Gi", Fraction(4 * 2**30)),
        ("1G", Fraction(10**9)),
        ("1k", Fraction(1000)),
        ("2e3", Fraction(2000)),
        ("2E3", Fraction(2000)),
        ("1e-3", Fraction(1, 1000)),
        ("1E", Fraction(10**18)),  # exa, not an exponent
        ("+3", Fraction(3)),
        ("-1", Fraction(-1)),
        ("10n", Fraction(1, 10**8)),
        ("7u", Fraction(7, 10**6)),
    ],
)
def test_parses_like_the_apiserver(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "lots", "4 gigs", "1GB", "1gi", "1.2.3", "Gi", "e3", "1e", "1e999999999", " 1", "1 ", "0x10", "１"],
)
def test_refuses_what_is_not_a_quantity(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_refuses_long_text_before_parsing() -> None:
    with pytest.raises(QuantityError, match="longer than"):
        parse_quantity("1" * (MAX_QUANTITY_LENGTH + 1))


def test_messages_read_after_the_value() -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity("lots")
    assert str(info.value).startswith("is not a quantity; use")


def test_format_for_messages() -> None:
    assert format_quantity(Fraction(2)) == "2"
    assert format_quantity(Fraction(1, 2)) == "0.5"


@given(st.text(max_size=80))
def test_never_raises_anything_but_quantity_error(text: str) -> None:
    with contextlib.suppress(QuantityError):
        parse_quantity(text)


@given(st.from_regex(r"[+-]?[0-9]{1,6}(\.[0-9]{0,3})?(m|k|M|G|Ki|Mi|Gi|e[0-9])?", fullmatch=True))
def test_well_formed_quantities_parse(text: str) -> None:
    parse_quantity(text)
