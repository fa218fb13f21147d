"""streams/worker/observability.py without a broker: per-app registry, sensor counting, JSON logs."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from schemas.deadletter import make_dead_letter
from schemas.serde import default_store
from streams.worker.observability import JsonFormatter, json_logging_config, observe_bulk
from streams.settings import Settings


def _app(tmp_path: Path, prefix: str):  # noqa: ANN202
    from streams.worker.app import build_app

    settings = Settings(run_dir=tmp_path, topic_prefix=prefix, app_id=f"obs-{prefix.strip('.')}")
    return settings, build_app(settings)


def _samples(registry) -> dict[tuple[str, tuple], float]:  # noqa: ANN001
    from prometheus_client import generate_latest

    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_each_app_has_its_own_registry_and_the_sensor_counts_by_stage_and_source(tmp_path: Path) -> None:
    from faust.types import TP

    settings, app = _app(tmp_path / "a", "pa.")
    _other_settings, other = _app(tmp_path / "b", "pb.")
    assert app.pingan_registry is not other.pingan_registry
    sensor = next(s for s in app.sensors if type(s).__name__ == "PinganSensor")
    sensor.on_message_in(TP("pa.raw.grid.v1", 0), 5, None)
    sensor.on_message_in(TP("pa.raw.grid.v1", 1), 6, None)
    sensor.on_message_in(TP("pa.internal.events-by-county.v1", 0), 1, None)
    sensor.on_send_initiated(None, "pa.events.v1", SimpleNamespace(key=b"grid:R1", value=b""), 7, 0)
    sensor.on_send_initiated(None, "pa.links.v1", SimpleNamespace(key=b"513221", value=b""), 6, 0)
    dl = make_dead_letter(source="grid", stage="normalize", raw=b"x", error=ValueError("bad"), at_ms=1)
    sensor.on_send_initiated(None, "pa.deadletters.v1",
                             SimpleNamespace(key=b"grid", value=default_store().encode("pingan.DeadLetter", dl)), 4, 0)
    app.pingan_metrics.links = 3
    app.pingan_metrics.checkpointed(0.25)
    app.pingan_metrics.checkpointed(0.5)
    observe_bulk(app, 0.02, retried=2)

    got = _samples(app.pingan_registry)
    assert got[("pingan_events_in_total", (("source", "grid"), ("stage", "normalize")))] == 2
    assert got[("pingan_events_in_total", (("source", "events"), ("stage", "correlate")))] == 1
    assert got[("pingan_events_out_total", (("source", "grid"), ("stage", "normalize")))] == 1
    assert got[("pingan_events_out_total", (("source", "links"), ("stage", "correlate")))] == 1
    assert got[("pingan_dead_letters_total", (("error_type", "ValueError"), ("source", "grid"),
                                              ("stage", "normalize")))] == 1
    assert got[("pingan_links_total", ())] == 3
    assert got[("pingan_checkpoints_total", ())] == 2 and got[("pingan_checkpoint_seconds_total", ())] == 0.75
    assert got[("pingan_checkpoint_seconds_max", ())] == 0.5
    assert got[("pingan_bulk_seconds_count", ())] == 1 and got[("pingan_bulk_retried_items_total", ())] == 2
    assert got[("pingan_table_recovery_completed", ())] == 0
    assert not any(k[0] == "pingan_events_in_total" for k in _samples(other.pingan_registry))


def test_json_log_formatter() -> None:
    fmt = JsonFormatter()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("pingan.x", logging.ERROR, __file__, 1, "bad %s", ("东西",), sys.exc_info())
    line = json.loads(fmt.format(record))
    assert line["level"] == "error" and line["message"] == "bad 东西" and "RuntimeError: boom" in line["exc"]
    assert json_logging_config("info")["root"]["level"] == "INFO"


def test_a_correlate_batch_waits_as_long_as_its_oldest_record() -> None:
    from streams.worker.app import Metrics

    m = Metrics()
    m.batch_started([12.0, 10.0, 11.0], now=15.0)  # the oldest record was produced 5 s ago
    m.batch_started([14.0], now=14.5)
    m.batch_started([], now=99.0)  # an empty batch counts nothing
    assert m.correlate_wait_seconds == 5.5 and m.correlate_wait_seconds_max == 5.0
