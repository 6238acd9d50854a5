"""A throwaway PostgreSQL cluster for the store's tests and bench/store.py.

It runs the server binaries of the machine (``/usr/lib/postgresql/<n>/bin``, or
``$FLOWENGINE_PG_BIN``) on a fresh data directory in a temporary folder, on a free loopback
port with trust authentication, and removes it all on stop. PostgreSQL refuses to run as
root, so under root (CI) the data directory is given to the ``postgres`` user and every
server command runs as that user through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PgCluster", "pg_bin_dir", "pg_unavailable"]


def pg_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are, or None."""
    given = os.environ.get("FLOWENGINE_PG_BIN")
    candidates = [given] if given else sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                              reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def pg_unavailable() -> str | None:
    """Why a cluster cannot be started here (None: it can)."""
    if pg_bin_dir() is None:
        return ("no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin "
                "or $FLOWENGINE_PG_BIN")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    return None


#: In each cluster's folder: the pid of the process that started it.
OWNER_FILE = "owner.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_orphans() -> None:
    """Stop and remove the clusters left by test runs that were killed before their
    teardown (a timeout's SIGTERM skips it): those whose starting process is gone."""
    for owner in glob.glob(os.path.join(tempfile.gettempdir(), "flowengine-pg-*", OWNER_FILE)):
        root = Path(owner).parent
        try:
            pid = int(Path(owner).read_text())
        except (OSError, ValueError):
            continue
        if _alive(pid):
            continue
        bin_dir = pg_bin_dir()
        if bin_dir is not None and (root / "data" / "postmaster.pid").exists():
            cmd = [str(bin_dir / "pg_ctl"), "stop", "-D", str(root / "data"), "-m", "immediate",
                   "-w"]
            if os.geteuid() == 0:
                cmd = ["runuser", "-u", "postgres", "--", *cmd]
            subprocess.run(cmd, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """``with PgCluster() as pg: pg.create_database("x")`` → a URL. ``durable=False`` turns
    fsync off (tests); the bench keeps PostgreSQL's defaults."""

    def __init__(self, *, durable: bool = False) -> None:
        reason = pg_unavailable()
        if reason:
            raise RuntimeError(reason)
        self.bin = pg_bin_dir()
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="flowengine-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        self._databases = 0

    def _cmd(self, *args: str) -> list[str]:
        assert self.bin is not None
        cmd = [str(self.bin / args[0]), *args[1:]]
        return ["runuser", "-u", "postgres", "--", *cmd] if self._as_postgres else cmd

    def start(self) -> PgCluster:
        _stop_orphans()
        (self.root / OWNER_FILE).write_text(str(os.getpid()))
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        subprocess.run(self._cmd("initdb", "-D", str(self.data), "-A", "trust", "-U",
                                 "postgres", "--no-sync", "-E", "UTF8"),
                       check=True, capture_output=True, timeout=120)
        options = [f"-k {self.root}", "-c listen_addresses=127.0.0.1"]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        last = ""
        for _ in range(5):   # another process may take the free port before the server does
            self.port = _free_port()
            proc = subprocess.run(
                self._cmd("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                          "-l", str(self.root / "server.log"),
                          "-o", " ".join([f"-p {self.port}", *options])),
                capture_output=True, text=True, timeout=90)
            if proc.returncode == 0:
                return self
            last = proc.stderr + (self.root / "server.log").read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; its URL."""
        import psycopg
        self._databases += 1
        name = name or f"t{self._databases}_{os.getpid()}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.data.exists() and (self.data / "postmaster.pid").exists():
            subprocess.run(self._cmd("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w"),
                           capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
