"""A throw-away PostgreSQL server for tests: a cluster made with ``initdb`` in a test's folder, listening
on loopback only, stopped (and its folder's permissions put back) when the test ends, however it ends.

The server binaries are looked up on PATH, then in Debian's /usr/lib/postgresql/<version>/bin; a test
that needs them skips, saying so, where there are none. PostgreSQL refuses to run as root, so as root
the cluster belongs to the ``postgres`` user, and its server runs with one capability of root's: to pass
through the folders above the test's folder, which pytest keeps private to root (so nothing outside
the test's folder changes).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Iterator

SERVER_USER = "postgres"
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections


def server_bin() -> Path | None:
    """The folder of initdb and pg_ctl, newest version first; None where no server is installed."""
    found = shutil.which("pg_ctl")
    if found and (Path(found).resolve().parent / "initdb").exists():
        return Path(found).resolve().parent  # a link on PATH leads to the folder of the other binaries
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                    key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return debian[-1].parent if debian else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(folder: Path, database: str = "mtbench") -> Iterator[str]:
    """Start a server with its cluster in ``folder`` and yield the URL of a fresh, empty ``database``
    (``postgresql://postgres@127.0.0.1:PORT/DATABASE``)."""
    bin_dir = server_bin()
    if bin_dir is None:
        raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl)")
    folder.mkdir(parents=True, exist_ok=True)
    as_server = []
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise RuntimeError(f"PostgreSQL does not run as root, and there is no {SERVER_USER!r} user to run it "
                               "as (Debian's postgresql package makes one)") from None
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_server = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups",
                     "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]
    data, log, port = folder / "data", folder / "server.log", _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_server, str(bin_dir / args[0]), *args[1:]], cwd=folder, capture_output=True,
                              text=True)
        if done.returncode:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}{tail}")

    run("initdb", "-D", str(data), "-U", SERVER_USER, "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    try:
        run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-t", str(START_TIMEOUT), "-w", "start")
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", SERVER_USER, database)
        yield f"postgresql://{SERVER_USER}@127.0.0.1:{port}/{database}"
    finally:
        if (data / "postmaster.pid").exists():  # also a server that started too slowly for pg_ctl's wait
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
