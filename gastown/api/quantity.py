"""Kubernetes resource quantities (``500m``, ``1Gi``, ``2e3``) as exact numbers.

The webhook compares requests with limits and flags very large values, so it needs the
apiserver's reading of a quantity, not a float's: ``0.1`` CPU must equal ``100m`` exactly.
Values are :class:`fractions.Fraction` in base units (cores, bytes).

The grammar is the one in k8s.io/apimachinery ``resource.Quantity``::

    quantity ::= [+-] number suffix
    number   ::= digits | digits "." [digits] | "." digits
    suffix   ::= "" | n | u | m | k | M | G | T | P | E        (decimal SI)
               | Ki | Mi | Gi | Ti | Pi | Ei                   (binary SI)
               | (e | E) [+-] digits                           (decimal exponent)

Inputs are untrusted (they come from admission requests), so the text length and the
exponent are bounded: ``1e999999999`` must be refused quickly, not computed.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final

MAX_QUANTITY_LENGTH: Final = 64
MAX_EXPONENT: Final = 64

_DECIMAL_SI: Final[dict[str, Fraction]] = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_BINARY_SI: Final[dict[str, Fraction]] = {
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

_QUANTITY: Final = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exp>[+-]?[0-9]+)|(?P<decimal>[numkMGTPE]?))"
)


class QuantityError(ValueError):
    """Not a Kubernetes quantity. The message is a predicate ("is not a quantity; use ...")
    meant to follow the quoted value, and says what is allowed."""


def parse_quantity(text: str) -> Fraction:
    """Parse a quantity into base units; raise :class:`QuantityError` if it is not one."""
    if not isinstance(text, str):
        raise QuantityError("is not a string; write a quantity such as '500m', '2' or '1Gi'")
    if len(text) > MAX_QUANTITY_LENGTH:
        raise QuantityError(f"is longer than {MAX_QUANTITY_LENGTH} characters, the most a quantity may have")
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise QuantityError(
            "is not a quantity; use a number with an optional suffix, e.g. 500m, 2, 1.5, 512Mi, 4Gi, 1e3"
        )
    number = Fraction(match["number"])
    if match["binary"] is not None:
        return number * _BINARY_SI[match["binary"]]
    if match["exp"] is not None:
        exponent = int(match["exp"])
        if abs(exponent) > MAX_EXPONENT:
            raise QuantityError(
                f"has an exponent beyond ±{MAX_EXPONENT}; write the amount with a suffix such as G or Gi"
            )
        return number * Fraction(10) ** exponent
    return number * _DECIMAL_SI[match["decimal"] or ""]


def format_quantity(value: Fraction) -> str:
    """A short human form of a value in base units, for messages (not for the API)."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):g}"
