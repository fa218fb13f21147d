"""110 call categories (BJLB/BJLX/BJXL, 6-digit codes) and levels (JQJB) → kind and severity.

Contract: `kind(bjlb, bjlx, bjxl, content, jqjb)` takes the most specific code the table knows
(exact code, then its 4-digit group), else the 1-digit class of the most specific code; the
shared keyword refinements apply to the content (a criminal call saying 盗/偷/扒窃 is ``theft``);
JQJB 1 (most serious) … 4 gives severity 5 − JQJB.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from streams.domain.kinds import Classification, refine, with_level

CODE: Final[Mapping[str, Classification]] = {
    # exact code or 4-digit group (code[:4]); looked up most specific first
    "2002": Classification("dispute", 2),
    "2006": Classification("domestic_violence", 3),
    "1003": Classification("theft", 2),             # 盗窃 group (local code table)
    "4003": Classification("rescue", 4),            # 人员落水
    "5001": Classification("medical", 3),
}
CLASS: Final[Mapping[str, Classification]] = {
    "1": Classification("criminal", 3),
    "2": Classification("public_order", 2),
    "3": Classification("traffic", 2),
    "4": Classification("fire", 4),
    "5": Classification("help", 2),
    "7": Classification("mass_gathering", 4),
    "8": Classification("disaster", 4),
}


def _code(code: str | None) -> str | None:
    s = (code or "").strip()
    return s if len(s) == 6 and s.isdigit() else None


def kind(bjlb: str | None, bjlx: str | None = None, bjxl: str | None = None,
         content: str | None = None, jqjb: int | None = None) -> Classification:
    """Kind/severity of a 110 call from its most specific known category code, text and JQJB."""
    codes = [c for c in (_code(bjxl), _code(bjlx), _code(bjlb)) if c]
    found: Classification | None = None
    for code in codes:
        found = CODE.get(code) or CODE.get(code[:4])
        if found:
            break
    if found is None:
        found = CLASS.get(codes[0][0]) if codes else None
    return with_level(refine(found or Classification("other", 1), content), jqjb)
