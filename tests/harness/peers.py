"""Test peers from Debian's packages (DESIGN.md §10): a private PostgreSQL cluster, sipp, Chromium.

Each helper answers "is the peer installed?" with a reason string for `pytest.skip`, so a test
skips with a clear message only when the binary is absent, and fails loudly on anything else.

PostgreSQL: `postgres_cluster()` runs ``initdb`` + ``pg_ctl start`` from
``/usr/lib/postgresql/<newest>/bin`` on a free 127.0.0.1 port in a fresh temporary directory (no
Unix socket, trust auth for the one superuser ``pingan``), and stops and deletes it at exit.
``initdb`` refuses to run as root, so as root every server command runs as the ``postgres``
system user (created by the Debian package) through ``runuser -u postgres --``; the directory is
made under /tmp (not pytest's 0700 root-owned tmp tree) and handed to that user.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.screenshot import CHROMIUM
from infra.processes import free_port

PG_SUPERUSER = "pingan"
PG_SYSTEM_USER = "postgres"
__all__ = ["free_port", "PostgresCluster", "postgres_cluster", "postgres_missing", "sipp_missing", "chromium_missing"]


# ---------------------------------------------------------------------------------- PostgreSQL

def postgres_bindir() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/<major>/bin`` with initdb, pg_ctl and postgres."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        p = Path(d)
        if all((p / b).is_file() and os.access(p / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            try:
                found.append((int(p.parent.name.split(".")[0]), p))
            except ValueError:
                continue
    return max(found)[1] if found else None


def postgres_missing() -> str | None:
    """Why a private PostgreSQL cluster cannot be started here (None: it can)."""
    if postgres_bindir() is None:
        return ("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                "(`apt-get install postgresql`; ./run.sh test installs it when run as root)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            return f"running as root but there is no {PG_SYSTEM_USER!r} user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root but `runuser` (util-linux) is missing"
    return None


@dataclass
class PostgresCluster:
    """A running private cluster (see `postgres_cluster`)."""

    bindir: Path
    root: Path
    port: int

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL of `database` (TCP, trust auth)."""
        return f"{driver}://{PG_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """libpq connection string for psycopg."""
        return f"host=127.0.0.1 port={self.port} user={PG_SUPERUSER} dbname={database}"

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_SYSTEM_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], cwd: Path, timeout: float = 60) -> None:
    proc = subprocess.run(_as_server_user(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@contextlib.contextmanager
def postgres_cluster(start_timeout_s: float = 60) -> Iterator[PostgresCluster]:
    """Start a throw-away cluster; stop it (immediate) and delete its directory at exit."""
    reason = postgres_missing()
    if reason:
        raise RuntimeError(reason)
    bindir = postgres_bindir()
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="pingan-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_SYSTEM_USER)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    cluster = PostgresCluster(bindir, root, free_port())
    started = False
    try:
        _run([str(bindir / "initdb"), "-D", str(cluster.datadir), "-U", PG_SUPERUSER, "--auth=trust",
              "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], cwd=root)
        opts = (f"-p {cluster.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                "-c fsync=off -c max_connections=20 -c shared_buffers=16MB")
        _run([str(bindir / "pg_ctl"), "-D", str(cluster.datadir), "-l", str(cluster.logfile), "-o", opts,
              "-w", "-t", str(int(start_timeout_s)), "start"], cwd=root, timeout=start_timeout_s + 10)
        started = True
        _wait_port(cluster.port, start_timeout_s)
        yield cluster
    finally:
        if started:
            with contextlib.suppress(Exception):
                _run([str(bindir / "pg_ctl"), "-D", str(cluster.datadir), "-m", "immediate", "-w", "stop"],
                     cwd=root, timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not accept connections on 127.0.0.1:{port}")


# ---------------------------------------------------------------------------------- sipp, Chromium

def sipp_missing() -> str | None:
    """Why the sipp SIP peer cannot run here (None: it can)."""
    if shutil.which("sipp") is None:
        return "sipp not installed (`apt-get install sip-tester`; ./run.sh test installs it when run as root)"
    return None


def chromium_missing() -> str | None:
    """Why headless Chromium via Playwright cannot run here (None: it can)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} not installed (`apt-get install chromium`; ./run.sh test installs it when run as root)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -e '.[test]')"
    return None
