"""Mediation dispute types → kind and severity.

Contract: every case is a ``dispute`` (婚姻家庭, 邻里, 房屋宅基地, 合同, 损害赔偿, 山林土地, 征地拆迁,
劳动争议, 物业 …); 家暴/家庭暴力 in the type or the summary makes it ``domestic_violence``.
"""
from __future__ import annotations

from typing import Final

from streams.domain.kinds import Classification, KeywordTable, by_keywords, default

KEYWORDS: Final[KeywordTable] = (
    (("家暴", "家庭暴力"), Classification("domestic_violence", 3)),
)


def kind(dispute_type: str | None, summary: str | None = None) -> Classification:
    """Mediation cases are disputes; 家暴 in the type or summary makes it domestic violence."""
    return by_keywords(KEYWORDS, (dispute_type, summary)) or default("dispute")
