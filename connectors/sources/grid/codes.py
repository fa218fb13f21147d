"""Grid-report categories (local 网格事件分类, GB/T 31000 style) → kind and severity.

Contract: `kind(category_code, category_name, description)` looks the code up (4-digit, then its
2-digit class); a code the table does not know (or ``other``) falls back to keywords in the name
and description; the shared keyword refinements (`streams.domain.kinds.refine`) apply last.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from streams.domain.kinds import Classification, KeywordTable, by_keywords, refine

CATEGORY: Final[Mapping[str, Classification]] = {
    "0101": Classification("dispute", 2),           # 婚姻家庭
    "0102": Classification("dispute", 2),           # 邻里纠纷
    "0103": Classification("dispute", 2),           # 房屋宅基地/拆迁
    "0104": Classification("dispute", 2),           # 山林土地
    "0105": Classification("dispute", 2),           # 劳动争议
    "01": Classification("dispute", 2),             # 矛盾纠纷
    "02": Classification("public_order", 2),        # 治安隐患
    "03": Classification("fire", 2),                # 安全生产/消防 (a hazard, not a fire)
    "0401": Classification("disaster", 3),          # 山洪泥石流
    "0402": Classification("disaster", 3),          # 地质灾害
    "04": Classification("disaster", 3),            # 自然灾害
    "0501": Classification("help", 2),              # 求助/就医
    "05": Classification("help", 1),                # 民生服务
    "06": Classification("public_order", 2),        # 特殊人群
    "07": Classification("mass_gathering", 3),      # 群体性事件
    "99": Classification("other", 1),               # 其他
}

# Keywords for categories the table does not know (name or description).
KEYWORDS: Final[KeywordTable] = (
    (("家暴", "家庭暴力"), Classification("domestic_violence", 3)),
    (("纠纷", "矛盾", "争执", "调解"), Classification("dispute", 2)),
    (("盗", "偷"), Classification("theft", 2)),
    (("山洪", "泥石流", "滑坡", "洪水", "塌方", "地质灾害"), Classification("disaster", 3)),
    (("火灾", "起火", "消防"), Classification("fire", 2)),
    (("聚集", "上访", "群体"), Classification("mass_gathering", 3)),
)


def kind(category_code: str | None, category_name: str | None = None,
         description: str | None = None) -> Classification:
    """Kind/severity of a grid report from its category code, then keywords."""
    code = (category_code or "").strip()
    c = CATEGORY.get(code) or CATEGORY.get(code[:2]) if code else None
    if c is None or c.kind == "other":
        c = by_keywords(KEYWORDS, (category_name, description)) or c
    return refine(c or Classification("other", 1), category_name, description)
