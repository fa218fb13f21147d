"""`pingan simulate --variants`: the same county day as another county's systems would export it.

Contract: `apply_variants(folder)` rewrites a generated simulator folder in place so that its 110
export, mediation exports and grid reports use the field names, code-or-name wording, free-text
results and coordinate systems of other vendors' systems (the variants documented in
docs/native-formats.md), and writes the deployment profile that such a county would configure
(`profiles/<feed>.toml`) for what the built-in profiles do not already cover. The ground truth,
the delivery log and every row and line number stay as they were, so the same quality evaluation
applies; `manifest.json` gains ``"profiles"`` (read by `connectors.ingest.files.iter_deliveries`)
and ``"variants"`` (what was changed).

Deterministic: the same folder always gives the same rewrite (no randomness; a row's variant
depends on its own content).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from streams.domain.geo import wgs84_to_gcj02

PROFILES_DIR = "profiles"

# ------------------------------------------------------------------------------------------ 110
#: The 接处警 layout of a county whose desk exports another vendor's column names (all of them
#: aliases the built-in alarm110 profile knows) and one coordinate pair JD/WD in GCJ-02.
ALARM110_RENAME: Mapping[str, str] = {
    "JJDBH": "JCJBH", "GLJJDBH": "GL_JJDBH", "XZQHBH": "XZQH", "BJSJ": "JJSJ", "BJDH": "BJDH",
    "LXDH": "BJRLXDD", "BJRXM": "BJRXM", "S_IDENTITYCARDNO": "BJRZJHM", "SFDZ": "JQDZ", "BJNR": "JQMS",
    "BJLB": "JQLBDM", "BJLX": "JQLXDM", "BJXL": "JQXLDM", "JQJB": "JQDJDM", "GXSJ": "GXSJ",
}
#: Category codes this desk writes as names (the names of the built-in [codes.category] table).
ALARM110_NAMES: Mapping[str, str] = {
    "100000": "刑事", "200000": "治安", "300000": "交通", "400000": "火灾", "500000": "求助",
    "700000": "群体性事件", "800000": "灾害事故", "200200": "纠纷", "200600": "家庭暴力", "100300": "盗窃",
    "400300": "人员落水",
}
ALARM110_PROFILE = """# The county's 110 desk exports its call sheets with one coordinate pair (JD/WD) in GCJ-02.
[coord_systems]
other = "GCJ02"
"""

# ------------------------------------------------------------------------------------ mediation
#: A 人民调解 case register with other column names (aliases of the built-in mediation profile).
MEDIATION_RENAME: Mapping[str, str] = {
    "案件编号": "案号", "调解组织": "调委会名称", "受理日期": "登记日期", "纠纷类型": "纠纷类别",
    "纠纷简要情况": "简要案情", "纠纷发生地": "纠纷发生地点", "行政区划代码": "区划代码",
    "当事人类型": "当事人身份", "当事人姓名": "姓名", "当事人身份证号": "公民身份号码", "当事人电话": "联系电话",
    "当事人住址": "住址", "调解员": "承办人", "调解结果": "调处结果", "协议金额": "涉及金额",
    "履行情况": "协议履行情况", "司法确认": "是否司法确认",
}
#: Results written as sentences, as registers kept in a word processor do.
MEDIATION_RESULT_TEXT: Mapping[str, str] = {
    "调解成功": "经调解，双方自愿达成协议并签订人民调解协议书",
    "调解不成功": "调解不成，已告知当事人可依法向人民法院提起诉讼",
    "调解中": "正在调解，待双方进一步协商",
}

# ----------------------------------------------------------------------------------------- grid
#: A grid app that sends flat keys, the category by name only, and its coordinates at top level.
GRID_KEYS: Mapping[str, str] = {
    "reportId": "eventId", "reporterId": "reporter", "description": "eventContent", "address": "eventPlace",
    "persons": "involvedPersons", "reportTime": "happenTime", "status": "eventStatus",
}


def _alarm110_row(row: dict[str, str]) -> dict[str, str]:
    out = {ALARM110_RENAME[k]: v for k, v in row.items() if k in ALARM110_RENAME}
    for native in ("BJLB", "BJLX"):
        out[ALARM110_RENAME[native]] = ALARM110_NAMES.get(row.get(native, ""), row.get(native, ""))
    lon, lat = row.get("ZDDWJD") or row.get("SDDWJD"), row.get("ZDDWWD") or row.get("SDDWWD")
    if lon and lat:
        glat, glon = wgs84_to_gcj02(float(lat), float(lon))
        out["JD"], out["WD"] = f"{glon:.6f}", f"{glat:.6f}"
    else:
        out["JD"], out["WD"] = "", ""
    return out


def _mediation_row(row: dict[str, str]) -> dict[str, str]:
    out = {MEDIATION_RENAME.get(k, k): v for k, v in row.items()}
    out["调处结果"] = MEDIATION_RESULT_TEXT.get(row.get("调解结果", ""), row.get("调解结果", ""))
    return out


def _grid_report(doc: dict[str, Any]) -> dict[str, Any]:
    out = {GRID_KEYS.get(k, k): v for k, v in doc.items() if k not in ("category", "location")}
    category = doc.get("category")
    if isinstance(category, Mapping):
        out["eventTypeName"] = category.get("name")
    location = doc.get("location")
    if isinstance(location, Mapping):
        out["eventLng"], out["eventLat"] = location.get("lng"), location.get("lat")
        out["coordType"] = location.get("coordType")
    return out


def _rewrite_csv(path: Path, encoding: str, change: Callable[[dict[str, str]], dict[str, str]]) -> int:
    text = path.read_bytes().decode(encoding)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows:
        return 0
    new = [change(r) for r in rows]
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(new[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(new)
    path.write_bytes(buf.getvalue().encode(encoding))
    return len(new)


def _rewrite_jsonl(path: Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    out = [json.dumps(change(json.loads(line)), ensure_ascii=False, separators=(",", ":")) for line in lines]
    path.write_text("".join(line + "\n" for line in out), encoding="utf-8")
    return len(out)


def apply_variants(folder: Path) -> dict[str, Any]:
    """Rewrite a simulator folder as another county's exports (see module); returns what changed."""
    folder = Path(folder)
    changed: dict[str, Any] = {}
    jjd = folder / "alarm110" / "jjd.csv"
    if jjd.exists():
        changed["alarm110/jjd.csv"] = {"rows": _rewrite_csv(jjd, "utf-8", _alarm110_row),
                                       "variant": "other desk layout, category names, JD/WD in GCJ-02"}
    for name, encoding in (("cases.csv", "utf-8-sig"), ("cases_gbk.csv", "gbk")):
        path = folder / "mediation" / name
        if path.exists():
            changed[f"mediation/{name}"] = {"rows": _rewrite_csv(path, encoding, _mediation_row),
                                            "variant": "other register columns, results as sentences"}
    reports = folder / "grid" / "reports.jsonl"
    if reports.exists():
        changed["grid/reports.jsonl"] = {"lines": _rewrite_jsonl(reports, _grid_report),
                                         "variant": "flat keys, category by name only, top-level coordinates"}
    profiles = folder / PROFILES_DIR
    profiles.mkdir(exist_ok=True)
    (profiles / "alarm110.toml").write_text(ALARM110_PROFILE, encoding="utf-8")
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["profiles"] = PROFILES_DIR
    manifest["variants"] = changed
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return changed
