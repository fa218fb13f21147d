"""The masking sweep: nothing ID-shaped or phone-shaped leaves normalize in clear.

A simulated day (`infra.processes.simulate_folder`, plain and with the other county's column
variants) goes through the offline pipeline (`bench.quality.run_folder`), with adversarial
identifiers written into *every* free-text field of every source's raw records (and odd spellings
in the structured ID/phone fields): IDs with wrong check digits, spaced, dashed, full-width, glued
to letters, 15-digit legacy ones; phones with +86/0086/86, spaces, dashes, dots, parentheses,
full-width digits, landlines with area codes, a local number after 电话. Then every string of
every event, link, live incident and Elasticsearch document (`incident_document`) is walked
recursively and scanned by a detector that is independent of `streams.domain.extract` and broader
than it: no ID-shaped or phone-shaped number may survive except in masked form (``5132****…``,
``138****1234``). Things that are not identifiers (a timestamp, case numbers, an admin code, an
amount) must survive untouched, and invalid IDs must not become person keys.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bench.quality as quality
from connectors.elasticsearch.documents import incident_document
from infra.processes import simulate_folder
from streams.domain.identity import PersonKeyer, normalize_id_number
from streams.domain.text import fold_width

SECRET = b"sweep"

#: ID-shaped (none of the first six is a valid ID; the 15-digit ones are legacy spellings)
BAD_IDS = [
    "513221198511112341",          # wrong check digit
    "51322119851111234X",          # wrong check character X
    "513221 19851111 2341",        # spaced
    "5132-2119-8511-1123-41",      # dashed
    "５１３２２１１９８５１１１１２３４１",  # full-width
    "ID513221198511112341",        # glued to letters
    "513221851131234",             # 15-digit, impossible date (Nov 31), still ID-shaped
]
VALID_IDS = ["513221198511112349", "513221851111234"]  # the second is a legacy 15-digit ID
PHONES = [
    "+86 138 8888 1234", "0086-139-0837-6222", "8613988881234", "138.8888.1234", "138 8888 1234",
    "１３８－８８８８－１２３４", "(0837)6222110", "（0837） 622 2110", "0837-6222110", "+86 837 6222110",
    "028-86123456",
]
CUED_LOCAL = "联系电话：6222110"
NOT_IDENTIFIERS = ["20260714162311", "J5132212026071400087", "汶三调〔2026〕第031号", "513221107201", "3000000元"]

ADVERSARIAL = ("；补充：" + "，".join(f"证件{v}" for v in BAD_IDS + VALID_IDS) + "；"
               + "，".join(f"电话{p}" for p in PHONES) + f"，{CUED_LOCAL}；"
               + "时间" + "，".join(NOT_IDENTIFIERS))

#: free-text fields of each raw record type (schemas/*.avsc), and of the parties inside them
FREE_TEXT = {
    "alarm110": ("address", "content", "caller_name"),
    "camera": ("description", "person_name"),
    "door": ("community", "door", "person_name"),
    "grid": ("description", "address", "category_name"),
    "mediation": ("summary", "address", "workstation", "mediator", "result_text", "performance"),
}
PARTY_LISTS = ("persons", "parties")
PARTY_TEXT = ("name", "address")
ID_FIELDS = ("caller_id_number", "id_number")
PHONE_FIELDS = ("caller_phone", "contact_phone", "phone")


def _inject(source: str, record: dict[str, Any], n: int) -> set[str]:
    """Write the adversarial text into every free-text field; odd spellings into ID/phone fields."""
    touched: set[str] = set()
    for name in FREE_TEXT.get(source, ()):
        if name in record:
            record[name] = (record[name] or "") + ADVERSARIAL
            touched.add(f"{source}.{name}")
    for name in ID_FIELDS:
        if name in record:
            record[name] = BAD_IDS[n % len(BAD_IDS)]
            touched.add(f"{source}.{name}")
    for name in PHONE_FIELDS:
        if name in record:
            record[name] = PHONES[n % len(PHONES)]
            touched.add(f"{source}.{name}")
    # a translate quality flag that quotes the bad value (as the grid and mediation translators do)
    bad = BAD_IDS[n % len(BAD_IDS)]
    record["quality"] = [*(record.get("quality") or []),
                         {"field": "身份证号", "reason": f"身份证号 '{bad}' has a bad check digit", "value": bad},
                         {"field": "电话", "reason": f"电话 {PHONES[n % len(PHONES)]} 无法识别", "value": None}]
    touched.add(f"{source}.quality")
    for lst in PARTY_LISTS:
        for party in record.get(lst) or []:
            if not isinstance(party, dict):
                continue
            for name in PARTY_TEXT:
                party[name] = (party.get(name) or "王德学") + ADVERSARIAL
                touched.add(f"{source}.{lst}[].{name}")
            party["id_number"] = BAD_IDS[n % len(BAD_IDS)]
            party["phone"] = PHONES[n % len(PHONES)]
            touched.add(f"{source}.{lst}[].id_number/phone")
    return touched


# ---------------------------------------------------------------- the independent detector
_JOIN = re.compile(r"(?<=[0-9])[\s\-.–—()]{1,2}(?=[0-9])")
_RUN = re.compile(r"(?<![a-f0-9])[0-9]+[Xx]?(?![a-f0-9])")  # not inside lower-case hex (keys, ids)
_MOBILE = re.compile(r"(?:86|0086)?1[3-9][0-9]{9}")
_LANDLINE = re.compile(r"(?:86|0086)?0?(?:10|2[0-9]|[3-9][0-9]{2})[2-9][0-9]{6,7}")


def _clear_digits(clear: str) -> str:
    digits = re.sub(r"[^0-9X]", "", fold_width(clear).upper())
    return digits[4:] if digits.startswith("0086") else digits[2:] if digits.startswith("86") else digits


#: what the fixtures wrote, as digits: they must not appear in any spelling, not even inside a longer run
CLEAR_DIGITS = {clear: _clear_digits(clear) for clear in BAD_IDS + VALID_IDS + PHONES + ["6222110"]}


@functools.lru_cache(maxsize=None)
def leaks_in(s: str) -> tuple[str, ...]:
    """ID- or phone-shaped numbers in `s` (separators between digits ignored, width folded)."""
    folded = _JOIN.sub("", fold_width(s).replace("(", " ").replace(")", " "))
    found = []
    for m in _RUN.finditer(folded):
        run = m.group(0).upper()
        if len(run) in (15, 18) and run[0] in "12345678" and run[:-1].isdigit():
            found.append(run)
        elif _MOBILE.fullmatch(run) or (run.startswith(("0", "86")) and _LANDLINE.fullmatch(run)):
            found.append(run)
    upper = folded.upper()
    found.extend(clear for clear, digits in CLEAR_DIGITS.items() if digits in upper)
    return tuple(found)


def strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, string) in a nested structure of dicts, lists and scalars."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k, f"{path}.<key>") if isinstance(k, str) else iter(())
            yield from strings(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]")


def test_the_detector_sees_every_fixture_and_spares_non_identifiers() -> None:
    for clear in BAD_IDS + VALID_IDS + PHONES + [CUED_LOCAL]:
        assert leaks_in(f"文字{clear}文字"), clear
    assert not leaks_in("，".join(NOT_IDENTIFIERS))
    assert not leaks_in("5132**********2341 138****1234 0837***2110 id:4fa08197259661b8aa")


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "variants"])
def swept(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = simulate_folder(tmp_path_factory.mktemp("sweep") / "sim", seed=3, variants=request.param)
    touched: set[str] = set()
    real_iter = quality.iter_deliveries

    def adversarial_deliveries(*args: Any, **kwargs: Any) -> Iterator[Any]:
        n = 0
        for delivery in real_iter(*args, **kwargs):
            for record in delivery.result.records:
                touched.update(_inject(delivery.source, record, n))
                n += 1
            yield delivery

    mp = pytest.MonkeyPatch()
    mp.setattr(quality, "iter_deliveries", adversarial_deliveries)
    try:
        run = quality.run_folder(folder, secret=SECRET)
    finally:
        mp.undo()
    incidents = [inc for proc in run.processors.values() for inc in proc.state.live().values()]
    documents = [incident_document(inc)[1] for inc in incidents]
    return {"run": run, "incidents": incidents, "documents": documents, "touched": touched}


def test_every_source_and_free_text_field_was_attacked(swept: dict[str, Any]) -> None:
    touched = swept["touched"]
    for source, names in FREE_TEXT.items():
        for name in names:
            if source == "camera" and name == "person_name":
                continue  # only face captures carry a name; checked below when present
            assert f"{source}.{name}" in touched, f"{source}.{name} never injected"
    assert {"grid.persons[].name", "mediation.parties[].address", "alarm110.caller_id_number"} <= touched
    run = swept["run"]
    assert len(run.events) > 1000 and not run.normalize_errors, run.normalize_errors
    assert {e["source"] for e in run.events.values()} == {"alarm110", "camera", "door", "grid", "mediation"}


@pytest.mark.parametrize("part", ["events", "links", "incidents", "documents"])
def test_nothing_id_or_phone_shaped_survives(swept: dict[str, Any], part: str) -> None:
    run = swept["run"]
    items = {"events": list(run.events.values()), "links": list(run.links.values()),
             "incidents": swept["incidents"], "documents": swept["documents"]}[part]
    assert items
    hits = [(path, leak, s[:160]) for i, item in enumerate(items) for path, s in strings(item, f"{part}[{i}]")
            for leak in leaks_in(s)]
    assert not hits, f"{len(hits)} clear identifiers, e.g. {hits[:8]}"


def test_masked_forms_are_there_and_non_identifiers_stay(swept: dict[str, Any]) -> None:
    texts = [e["text"] for e in swept["run"].events.values()]
    attacked = [t for t in texts if "补充" in t]
    assert attacked
    t = attacked[0]
    assert "5132**********2341" in t and "138****1234" in t and "0837***2110" in t and "028****3456" in t
    for kept in NOT_IDENTIFIERS:
        assert all(kept in x for x in attacked), kept


def test_invalid_ids_get_no_person_key(swept: dict[str, Any]) -> None:
    keyer = PersonKeyer(SECRET)
    valid_keys = {keyer.id_key(v) for v in VALID_IDS}
    events = list(swept["run"].events.values())
    mentioned = [p for e in events for p in e["persons"] if p["role"] == "mentioned"]
    id_keys = {k for p in mentioned for k in p["keys"] if k.startswith("id:")}
    assert valid_keys <= id_keys  # the valid IDs in the text are keyed, as before
    assert all(normalize_id_number(b) is None for b in BAD_IDS)
    bad_displays = {"5132**********2341", "5132**********234X", "5132*******1234"}
    assert not [p for e in events for p in e["persons"] if p["display_id"] in bad_displays]
    assert not [p for p in mentioned if p["display_id"] is None and p["display_phone"] is None]
