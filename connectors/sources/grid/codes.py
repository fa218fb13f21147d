"""Grid-report categories (local 网格事件分类, GB/T 31000 style) → kind and severity.

Contract: `CATEGORY_NAMES` is the built-in code ↔ name table (first two digits the class) and
`NAME_SYNONYMS` the other names counties' apps use for the same classes (docs/native-formats.md
cites where each came from); a deployment adds or overrides both in its grid profile
(``[codes.category]``, ``[synonyms.category]``), read by translate.
`kind(category_code, category_name, description)` looks the NAME up first when it is one of the
built-in names or synonyms (a county whose own code table numbers 治安隐患 01 still gets a public-
order event), then the code (4-digit, then its 2-digit class); a category neither knows (or
``other``) falls back to keywords in the name and description; the shared keyword refinements
(`streams.domain.kinds.refine`) apply last.
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

#: Built-in 网格事件分类: code → name (the names the grid app shows).
CATEGORY_NAMES: Final[Mapping[str, str]] = {
    "01": "矛盾纠纷", "0101": "婚姻家庭", "0102": "邻里纠纷", "0103": "房屋宅基地/拆迁",
    "0104": "山林土地", "0105": "劳动争议", "02": "治安隐患", "03": "安全生产/消防",
    "04": "自然灾害", "0401": "山洪泥石流", "0402": "地质灾害", "05": "民生服务", "0501": "求助/就医",
    "06": "特殊人群", "07": "群体性事件", "99": "其他",
}

#: Other names for the same categories in counties' grid apps and dictionaries → built-in code.
NAME_SYNONYMS: Final[Mapping[str, str]] = {
    # 矛盾纠纷 family (dictionaries: 矛盾纠纷隐患, 矛盾纠纷排查/排除, 劳资纠纷隐患 …)
    "矛盾纠纷隐患": "01", "矛盾纠纷排查": "01", "矛盾纠纷排除": "01", "纠纷": "01",
    "婚姻家庭纠纷": "0101", "家庭纠纷": "0101", "邻里纠纷隐患": "0102", "相邻关系纠纷": "0102",
    "房屋宅基地纠纷": "0103", "宅基地纠纷": "0103", "征地拆迁": "0103", "征地拆迁纠纷": "0103",
    "山林土地纠纷": "0104", "土地纠纷": "0104", "劳资纠纷": "0105", "劳资纠纷隐患": "0105",
    "劳动争议纠纷": "0105",
    # 治安 / 安全 / 消防 (dictionaries: 治安隐患, 消防隐患, 消防安全隐患, 安全生产隐患, 火灾隐患)
    "治安": "02", "社会治安": "02", "治安问题": "02",
    "安全生产": "03", "安全生产隐患": "03", "消防隐患": "03", "消防安全隐患": "03", "火灾隐患": "03",
    "安全隐患": "03", "消防": "03", "危化品隐患": "03",
    # 自然灾害
    "山洪": "0401", "泥石流": "0401", "山洪灾害": "0401", "滑坡": "0402", "地质灾害隐患": "0402",
    # 民生服务 / 求助
    "求助": "0501", "就医": "0501", "群众求助": "0501", "群众诉求": "05", "民生诉求": "05",
    # 特殊人群 / 群体性事件 / 其他
    "重点人员": "06", "特殊人群服务管理": "06", "群体事件": "07", "群体性上访": "07", "其它": "99",
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


def code_of_name(name: str | None) -> str | None:
    """The built-in code of a category name (built-in names, then synonyms), else None."""
    text = (name or "").strip()
    if not text:
        return None
    for code, known in CATEGORY_NAMES.items():
        if known == text:
            return code
    return NAME_SYNONYMS.get(text)


def _by_code(code: str) -> Classification | None:
    return CATEGORY.get(code) or CATEGORY.get(code[:2]) if code else None


def kind(category_code: str | None, category_name: str | None = None,
         description: str | None = None) -> Classification:
    """Kind/severity of a grid report: a built-in category name, else the code, then keywords."""
    by_name = code_of_name(category_name)
    c = _by_code(by_name) if by_name else _by_code((category_code or "").strip())
    if c is None or c.kind == "other":
        c = by_keywords(KEYWORDS, (category_name, description)) or c
    return refine(c or Classification("other", 1), category_name, description)


#: Grid-app status wording that means the matter is settled (已化解 / 已办结 …); a status with a
#: negation (未化解, 未办结, 不能化解) is not. Matched as substrings, case-insensitively.
SETTLED_WORDS: tuple[str, ...] = ("已化解", "化解成功", "已办结", "办结", "已解决", "已完成", "已结案", "结案",
                                  "已处置", "处置完毕", "resolved", "closed", "finished", "done", "completed")
_NEGATIONS: tuple[str, ...] = ("未", "不", "没有", "无法", "待", "not ", "un")


def settled(status: str | None) -> str | None:
    """The settling wording of a grid report's status ("已化解"), or None if it does not settle."""
    text = (status or "").strip()
    low = text.lower()
    if not text or any(n in low for n in _NEGATIONS):
        return None
    return text if any(w in low for w in SETTLED_WORDS) else None
