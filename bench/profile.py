"""py-spy profiles of benchmark processes, taken over a timed window (``pingan bench throughput --profile DIR``).

`Sampler` attaches ``py-spy record --pid`` to running processes (the worker processes of a variant)
for the window it is started and stopped around, in ``--nonblocking`` mode (the sampled process
is never paused, so the measured rate is what it would be without the profiler, up to the CPU the
sampler itself takes on a shared machine), writing py-spy's ``raw`` (collapsed stacks) format:
one ``frame;frame;…;frame count`` line per distinct stack, loadable by speedscope or
flamegraph.pl. `summarize` reads such a file into the frames that hold the most samples.
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence


_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """The py-spy executable (next to this interpreter, else on PATH), or None."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@dataclass(frozen=True)
class Frame:
    """One frame's share of a profile's samples."""

    frame: str
    inclusive: float  # share of samples with this frame anywhere on the stack
    own: float        # share of samples with this frame on top


@dataclass(frozen=True)
class Profile:
    """A summarized profile: samples taken, the window, and the top frames."""

    path: Path
    samples: int
    seconds: float
    rate: int
    top: list[Frame]

    @property
    def busy(self) -> float:
        """Samples taken ÷ samples possible: the share of the window a thread of the process was
        active. py-spy leaves idle (sleeping) threads out but counts a thread that waits for a core,
        so on a loaded machine this is above its CPU share (the benchmark measures that from
        /proc); with more than one active thread it can pass 1."""
        possible = self.seconds * self.rate
        return self.samples / possible if possible > 0 else 0.0

    def text(self, n: int = 20) -> str:
        lines = [f"{self.path.name}: {self.samples} samples in {self.seconds:.1f} s at {self.rate}/s "
                 f"(active {self.busy:.0%} of the window)", "  incl%   own%  frame"]
        lines += [f"  {f.inclusive:5.1%} {f.own:6.1%}  {f.frame}" for f in self.top[:n]]
        return "\n".join(lines)


def _stacks(path: Path) -> Iterator[tuple[list[str], int]]:
    """(frames root first, by function rather than by line; samples) per line of a raw profile
    (nothing for a missing file)."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield [_LINE.sub(")", f) for f in stack.split(";")], int(count)


#: frames every stack of a worker passes through (interpreter, event loop, command line, threads)
ENTRY_POINTS = ("<module>", "_run_module_as_main (", "_run_code (", "(asyncio/base_events.py)", "(asyncio/events.py)",
                "(typer/", "(click/", "(mode/worker.py)", "(streams/cli/", "(threading.py)", "(mode/threads.py)",
                "Agent._execute_actor (faust/agents/agent.py)")


def summarize(path: Path, *, seconds: float = 0.0, rate: int = 0, top: int = 40,
              skip: Sequence[str] = ENTRY_POINTS) -> Profile:
    """The `top` frames of a raw (collapsed stacks) profile by inclusive samples, leaving out the
    frames every stack passes through (`skip`: a frame starting with or containing one of them)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for frames, n in _stacks(path):
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    frames = [Frame(f, c / total, own[f] / total) for f, c in inclusive.most_common()
              if not any(f.startswith(s) or s in f for s in skip)] if total else []
    return Profile(path, total, seconds, rate, frames[:top])


#: parts of a worker's (or a baseline's) time, each the samples with a matching frame on the stack
#: (they overlap: the domain step includes its table reads, "engine" includes the RocksDB writes)
PARTS: tuple[tuple[str, str], ...] = (
    ("correlate step (CountyProcessor.process)", "CountyProcessor.process ("),
    ("  of which table reads (CachedTable)", "(streams/worker/tables.py)"),
    ("normalize (Normalizer.normalize)", "Normalizer.normalize ("),
    ("Avro encode", "SchemaStore.encode ("),
    ("Avro decode", "SchemaStore.decode ("),
    ("index documents (incident_document)", "incident_document ("),
    ("Elasticsearch client", "(elasticsearch/"),
    ("json", "(json/"),
    ("RocksDB store", "(faust/stores/rocksdb.py)"),
    ("checkpoint transactions (checkpoint.py)", "(streams/worker/checkpoint.py)"),
    ("engine (consumer, changelog records, store writes)", "(streams/worker/engine.py)"),
    ("aiokafka", "(aiokafka/"),
    ("event loop select", "(selectors.py)"),
)


def parts(path: Path) -> dict[str, float]:
    """Share of a raw profile's samples in each of `PARTS` (0.0 for an empty profile)."""
    total, hits = 0, dict.fromkeys((name for name, _ in PARTS), 0)
    for frames, n in _stacks(path):
        total += n
        for name, pattern in PARTS:
            if any(pattern in f for f in frames):
                hits[name] += n
    return {name: (h / total if total else 0.0) for name, h in hits.items()}


class Sampler:
    """py-spy attached to some processes from `start` to `stop` (a no-op without py-spy)."""

    def __init__(self, out_dir: Path, label: str, pids: Sequence[int], rate: int = 97) -> None:
        self.out_dir, self.label, self.pids, self.rate = out_dir, label, [p for p in pids if p], rate
        self.procs: list[tuple[Path, subprocess.Popen[bytes]]] = []
        self.t0 = 0.0

    def start(self) -> "Sampler":
        exe = py_spy()
        if exe is None:
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        for i, pid in enumerate(self.pids):
            path = self.out_dir / f"{self.label}-{i}.raw"
            cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(self.rate),
                   "--nonblocking", "--output", str(path)]
            self.procs.append((path, subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                      stderr=open(f"{path}.log", "wb"))))
        return self

    def stop(self) -> list[Profile]:
        """Stop sampling (py-spy writes its file on SIGINT); the summaries of what was written."""
        seconds = time.monotonic() - self.t0
        for _path, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        out: list[Profile] = []
        for path, proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            out.append(summarize(path, seconds=seconds, rate=self.rate))
        self.procs = []
        return out


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.profile FILE.raw [--top N] [--parts --cpu S --items N]``: the top frames of
    a saved profile; with ``--parts``, CPU ms per item in each of `PARTS`, from the process's
    measured CPU seconds over the window (the benchmark's round line: ``py`` / ``python.<i>``) and
    the items it processed."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=main.__doc__)
    ap.add_argument("raw", type=Path, nargs="+")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--parts", action="store_true")
    ap.add_argument("--cpu", type=float, nargs="*", default=[], help="CPU seconds of each profiled process")
    ap.add_argument("--items", type=int, nargs="*", default=[], help="items each process handled")
    args = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.parts:
        for raw in args.raw:
            print(summarize(raw, top=args.top).text(args.top))
        return
    if len(args.cpu) != len(args.raw) or len(args.items) != len(args.raw):
        raise SystemExit("--parts needs one --cpu and one --items value per profile")
    shares = [parts(raw) for raw in args.raw]
    print(f"{'CPU ms per item':52}" + "".join(f"{raw.stem:>16}" for raw in args.raw))
    for name, _ in PARTS:
        print(f"{name:52}" + "".join(f"{1000 * sh[name] * cpu / n:16.3f}"
                                     for sh, cpu, n in zip(shares, args.cpu, args.items)))
    print(f"{'all (measured)':52}" + "".join(f"{1000 * cpu / n:16.3f}" for cpu, n in zip(args.cpu, args.items)))


if __name__ == "__main__":
    main()
