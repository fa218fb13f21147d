"""Text cleaning shared by every source.

Contract: `clean_text(s)` returns simplified Chinese (OpenCC ``t2s``), with full-width ASCII
(U+FF01–U+FF5E) and the ideographic space folded to half-width, zero-width characters removed
and every run of whitespace collapsed to one ASCII space, stripped at both ends.
`fold_width(s)` does only the width folding and keeps the length (one char in, one char out),
so spans found in its output are valid in the input.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

_FULLWIDTH_START = 0xFF01
_FULLWIDTH_END = 0xFF5E
_FULLWIDTH_OFFSET = 0xFEE0
_WIDTH_TABLE: dict[int, int] = {cp: cp - _FULLWIDTH_OFFSET for cp in range(_FULLWIDTH_START, _FULLWIDTH_END + 1)}
_WIDTH_TABLE[0x3000] = 0x20  # ideographic space
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
_WS = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _t2s() -> Any:
    """The OpenCC traditional→simplified converter, created on first use only."""
    import opencc  # local import: no import-time side effects, cheap after the first call

    return opencc.OpenCC("t2s")


def fold_width(s: str) -> str:
    """Full-width ASCII and the ideographic space → half-width; length preserved."""
    return s.translate(_WIDTH_TABLE)


def to_simplified(s: str) -> str:
    """Traditional → simplified Chinese (OpenCC t2s)."""
    if not s or s.isascii():
        return s
    return str(_t2s().convert(s))


def clean_text(s: str | None) -> str:
    """Simplified, half-width, whitespace-collapsed text ('' for None)."""
    if not s:
        return ""
    out = fold_width(s).translate(_ZERO_WIDTH)
    out = _WS.sub(" ", out).strip()
    return to_simplified(out)
