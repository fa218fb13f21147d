"""Watch lists: the pure loader, the keys normalize makes, and the worker's wiring."""
from __future__ import annotations

from pathlib import Path

import pytest

from streams.domain.identity import PersonKeyer
from streams.domain.pipeline import CountyProcessor
from streams.domain.watch import WatchlistError, parse_watchlists
from tests.unit.test_normalize import SECRET, anpr_record, make_normalizer

WATCH = """
[[list]]
name = "stolen_vehicles"
description = "被盗抢车辆"
plates = ["川ＵＡ１２３５", "川A·88888"]

[[list]]
name = "key_persons"
id_numbers = ["513221196805120310"]
phones = ["+86 138-8888-1234"]
plates = ["川UA1235"]
"""


def test_keys_are_the_person_keys_normalize_makes() -> None:
    keyer = PersonKeyer(SECRET)
    watch = parse_watchlists(WATCH, keyer)
    assert watch == {
        keyer.plate_key("川UA1235"): "key_persons",  # on two lists: the first name in sort order
        keyer.plate_key("川A88888"): "stolen_vehicles",
        keyer.id_key("513221196805120310"): "key_persons",
        keyer.phone_key("13888881234"): "key_persons",
    }
    assert all("川" not in k and "5132" not in k for k in watch)  # no clear identifiers kept
    assert parse_watchlists("", keyer) == {}


@pytest.mark.parametrize("text, message", [
    ("[[list]]\nplates = ['川UA1235']", "needs a name"),
    ("[[list]]\nname = 'x'\nplates = ['川UA12']", "is not valid"),
    ("[[list]]\nname = 'x'\nid_numbers = ['513221196805120311']", "5132**********0311"),
    ("[[list]]\nname = 'x'\ncars = ['川UA1235']", "unknown fields"),
    ("[[list]]\nname = 'x'\nplates = '川UA1235'", "must be a list"),
    ("name = 'x'", "unknown top-level"),
    ("[[list]\n", "not valid TOML"),
])
def test_bad_files_are_refused_with_the_value_masked(text: str, message: str) -> None:
    with pytest.raises(WatchlistError, match=message.replace("*", r"\*")):
        parse_watchlists(text, PersonKeyer(SECRET))


def test_a_watched_plate_read_opens_an_incident() -> None:
    norm = make_normalizer()
    event = norm.normalize("camera", anpr_record())  # plate 川ＵＡ１２３５: evidence on its own
    (plain,) = CountyProcessor().process(event).incidents
    assert not plain["actionable"] and plain["watch_hits"] == [] and plain["deadline_at"] is None
    watched = CountyProcessor(watch=parse_watchlists(WATCH, PersonKeyer(SECRET)))
    (hit,) = watched.process(event).incidents
    assert hit["actionable"] and hit["watch_hits"] == ["watch:key_persons"] and hit["deadline_at"] is not None


def test_worker_loads_the_watch_list(tmp_path: Path) -> None:
    from streams.settings import Settings
    from streams.worker.app import build_app

    path = tmp_path / "watch.toml"
    path.write_text(WATCH, encoding="utf-8")
    settings = Settings(run_dir=tmp_path, registry_path=None, watchlist_path=path, person_key_secret="w-secret")
    app = build_app(settings, with_index=False, table_store="memory://")
    keyer = PersonKeyer(b"w-secret")
    assert app.pingan_processor.state.watch[keyer.plate_key("川A88888")] == "stolen_vehicles"
    path.write_text("[[list]]\nname = 'x'\nplates = ['bad']", encoding="utf-8")
    with pytest.raises(WatchlistError):
        build_app(settings, with_index=False, table_store="memory://")
