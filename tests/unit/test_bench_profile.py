"""bench.profile: py-spy's raw (collapsed stacks) output summarized by function."""
from __future__ import annotations

from pathlib import Path

from bench.profile import PARTS, parts, summarize

RAW = """\
<module> (streams/worker/main.py:3);run_forever (asyncio/base_events.py:608);correlate (streams/worker/app.py:310);process (streams/domain/pipeline.py:165) 60
<module> (streams/worker/main.py:3);run_forever (asyncio/base_events.py:608);correlate (streams/worker/app.py:311);process (streams/domain/pipeline.py:170) 20
<module> (streams/worker/main.py:3);run_forever (asyncio/base_events.py:608);send (aiokafka/producer.py:50) 20
"""


def test_frames_are_counted_by_function_inclusive_and_own(tmp_path: Path) -> None:
    path = tmp_path / "split-1-0.raw"
    path.write_text(RAW, encoding="utf-8")
    prof = summarize(path, seconds=2.0, rate=100)
    assert prof.samples == 100 and prof.busy == 0.5
    by = {f.frame: f for f in prof.top}
    # two lines of one function are one frame; entry points every stack passes through are left out
    assert by["process (streams/domain/pipeline.py)"].inclusive == 0.8
    assert by["process (streams/domain/pipeline.py)"].own == 0.8
    assert by["correlate (streams/worker/app.py)"].inclusive == 0.8 and by["correlate (streams/worker/app.py)"].own == 0
    assert by["send (aiokafka/producer.py)"].own == 0.2
    assert not any(f.frame.startswith(("<module>", "run_forever")) for f in prof.top)
    assert [f.frame for f in prof.top][0] in {"process (streams/domain/pipeline.py)", "correlate (streams/worker/app.py)"}
    assert "active 50% of the window" in prof.text()


def test_a_missing_profile_summarizes_to_nothing(tmp_path: Path) -> None:
    prof = summarize(tmp_path / "absent.raw")
    assert prof.samples == 0 and prof.top == [] and prof.busy == 0.0


def test_parts_are_shares_of_the_samples_with_a_matching_frame(tmp_path: Path) -> None:
    path = tmp_path / "p.raw"
    path.write_text(RAW.replace("process (streams/domain/pipeline.py:165)",
                                "CountyProcessor.process (streams/domain/pipeline.py:165)"), encoding="utf-8")
    shares = parts(path)
    assert shares["correlate step (CountyProcessor.process)"] == 0.6
    assert shares["aiokafka"] == 0.2 and shares["Avro encode"] == 0.0
    assert set(shares) == {name for name, _ in PARTS}
