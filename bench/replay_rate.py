"""Replay rate against the live pipeline's rate, in one run on the real stack.

``python -m bench.replay_rate [FOLDER]`` (default: simulate seed 3, one day, scale 3): publishes the
folder into an isolated namespace, lets a real worker index it (the live rate, publish → fully
indexed, worker start included), then times `replay index --from-beginning` and
`replay pipeline` over the same data, and deletes the namespace.
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import bench.quality_live as quality_live
from infra.processes import simulate_folder
from streams.ops.replay import replay_index, replay_pipeline
from streams.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", nargs="?", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / "sim"
        if not (folder / "truth.json").exists():
            simulate_folder(folder, seed=3, scale=3)
        made: list[Settings] = []
        isolated = quality_live.isolated_settings

        def capture(*a: object, **k: object) -> Settings:
            made.append(isolated(*a, **k))  # type: ignore[arg-type]
            return made[-1]

        quality_live.isolated_settings = capture  # keep the namespace the live run used
        try:
            live = quality_live.evaluate_live(Settings.from_env(), folder, keep=True)
        finally:
            quality_live.isolated_settings = isolated
        ns = made[-1]
        try:
            print(f"live pipeline: {live.events} events → {live.incidents} incidents in {live.seconds:.1f} s = "
                  f"{live.events / live.seconds:,.0f} events/s (publish → fully indexed, worker start included)")
            rep = asyncio.run(replay_index(ns))
            print(f"replay index: {rep.records} incident records → {rep.target_index} in {rep.seconds:.2f} s = "
                  f"{rep.rate:,.0f} records/s (completed={rep.completed})")
            pipe = replay_pipeline(ns, target_prefix=f"{ns.topic_prefix}r.")
            print(f"replay pipeline: {pipe.raw_records} raw records in {pipe.seconds_pipeline:.1f} s = "
                  f"{pipe.raw_records / pipe.seconds_pipeline:,.0f} raw/s, then {pipe.index.records} incident "
                  f"records indexed in {pipe.index.seconds:.2f} s")
        finally:
            quality_live._drop(ns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
