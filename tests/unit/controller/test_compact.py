"""The informer cache's codec: every blob decodes to exactly what was encoded."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gastown.controller.compact import DictionaryCodec


def _pod(name: str, phase: str) -> bytes:
    return orjson.dumps(
        {
            "metadata": {"name": name, "namespace": "team-a", "labels": {"gastown.gastown.io/polecat": name}},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )


def test_objects_of_one_kind_shrink_against_the_first_and_round_trip() -> None:
    codec = DictionaryCodec()
    first = _pod("fix-login", "Pending")
    assert codec.decode(codec.encode(first)) == first
    later = _pod("add-tests", "Running")
    blob = codec.encode(later)
    assert codec.decode(blob) == later
    assert len(blob) < len(later) // 4


@given(st.lists(st.binary(max_size=5000), min_size=1, max_size=20))
def test_any_bytes_round_trip_whatever_came_first(documents: list[bytes]) -> None:
    codec = DictionaryCodec()
    blobs = [codec.encode(doc) for doc in documents]
    assert [codec.decode(blob) for blob in blobs] == documents


def test_decoding_before_any_encoding_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing was encoded"):
        DictionaryCodec().decode(b"\x00")
