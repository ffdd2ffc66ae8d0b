"""Compress cached objects of one kind against a dictionary taken from the first one.

Why: an informer caches every Polecat and every Pod it watches, and at 10k of each the
serialized JSON alone (~1.2 KiB apiece) was a quarter of the operator's resident memory.
Objects of one kind repeat the same keys, label values, image names and message
templates, so raw deflate primed with one earlier object of the kind (a zlib *preset
dictionary*) shrinks a typical Polecat from ~1.25 KiB to ~50 bytes, where plain zlib only
halves it. A 2 KiB window and memLevel 4 keep a compression at ~4 µs and a decompression
at ~1 µs (a default deflate stream costs ~100 µs just to set up its 256 KiB of state).

The dictionary is fixed for the codec's lifetime once chosen, so every blob stays
decodable; a first object that is untypical only makes later blobs compress less well.
"""

from __future__ import annotations

import zlib
from typing import Final

_LEVEL: Final = 1
_WBITS: Final = -11  # raw deflate (no header or checksum: the blob never leaves memory), 2 KiB window
_MEM_LEVEL: Final = 4
_WINDOW: Final = 1 << -_WBITS


class DictionaryCodec:
    """Encode and decode byte strings of one kind; not thread-safe (one event loop uses it)."""

    def __init__(self) -> None:
        self._dictionary: bytes | None = None

    def encode(self, document: bytes) -> bytes:
        """The compressed form of ``document``; the first call also fixes the dictionary."""
        if self._dictionary is None:
            self._dictionary = document[-_WINDOW:]
        compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zdict=self._dictionary)
        return compressor.compress(document) + compressor.flush()

    def decode(self, blob: bytes) -> bytes:
        """The document ``blob`` was encoded from (by this codec)."""
        if self._dictionary is None:
            raise ValueError("nothing was encoded with this codec yet")
        decompressor = zlib.decompressobj(_WBITS, zdict=self._dictionary)
        return decompressor.decompress(blob) + decompressor.flush()
