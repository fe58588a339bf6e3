"""The Optuna storages of `mtbench tune --storage`: a SQLite file (the default, in the tune directory),
a PostgreSQL database, or a journal file on a file system every worker sees.

NOTE [first contact]. Optuna sets a storage up on first use by looking and then writing: RDBStorage
creates its tables and stamps their schema version, ``create_study`` inserts the study, and mtbench
records the tune's settings on it. Workers that start together on a fresh database all find nothing
and all write: on PostgreSQL the losers die on a unique constraint (pg_type's, for a table made twice),
and a study attribute written twice keeps one worker's settings without a word to the other (Optuna
ignores that conflict). So a worker's first contact runs under one lock per storage, held by what
every worker shares: a PostgreSQL advisory lock (the server drops it with the connection of a worker
that dies) or the lock file beside a SQLite database. A journal needs none: its log orders every
write, and a study's creation is decided by which came first.
"""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..errors import ConfigError
from ..locks import DirLock
from ..text import first_line

if TYPE_CHECKING:
    import optuna

__all__ = [
    "ADVISORY_KEY", "EXPECTED", "FIRST_CONTACT_WAIT", "JOURNAL_PREFIX", "SQLITE_TIMEOUT", "STUDY_DB", "Guard",
    "default_storage", "first_contact", "open_storage", "shown", "sqlite_path",
]

STUDY_DB = "study.db"
JOURNAL_PREFIX = "journal:"
SQLITE_TIMEOUT = 60.0  # seconds a SQLite writer waits for another one
FIRST_CONTACT_WAIT = 600  # seconds a worker waits for the others' first contact before it gives up
# The advisory lock of mtbench's first contact, one per database: a fixed 32-bit key.
ADVISORY_KEY = zlib.crc32(b"mtbench.tuning.storage first contact")
EXPECTED = "expected sqlite:///PATH, postgresql://USER@HOST:PORT/DATABASE or journal:PATH"


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / STUDY_DB).resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL (None for other storages and in-memory SQLite)."""
    if not url.startswith("sqlite:///") or url in ("sqlite://", "sqlite:///:memory:"):
        return None
    return Path(url[len("sqlite:///"):])


def shown(url: str) -> str:
    """``url`` as messages show it: without its password."""
    import sqlalchemy

    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_storage(url: str) -> "optuna.storages.BaseStorage":
    """An Optuna storage for ``--storage`` (``journal:PATH`` or a sqlite / postgresql URL), set up safely
    however many workers open it at once; ConfigError says why not."""
    import optuna

    try:
        if url.startswith(JOURNAL_PREFIX):
            path = Path(url[len(JOURNAL_PREFIX):])
            if not path.name:
                raise ConfigError("expected journal:PATH, a file on a file system every worker sees")
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        db = sqlite_path(url)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"engine_kwargs": {"connect_args": {"timeout": SQLITE_TIMEOUT}}} if db is not None else {}
        with first_contact(url):
            return optuna.storages.RDBStorage(url, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"--storage {shown(url)}: {exc}") from None
    except Exception as exc:  # SQLAlchemy's and the database drivers' many errors
        raise ConfigError(f"--storage {shown(url)}: cannot open it ({first_line(exc)}); {EXPECTED}") from None


@contextlib.contextmanager
def first_contact(storage: "str | optuna.storages.BaseStorage") -> Iterator[None]:
    """Hold the storage's first-contact lock (NOTE [first contact]) while the block runs; ``storage`` is a
    ``--storage`` URL or an opened storage. ConfigError for a database mtbench cannot lock."""
    url = storage if isinstance(storage, str) else getattr(storage, "url", None)  # RDBStorage keeps its URL
    if url is None or url.startswith(JOURNAL_PREFIX):
        yield
        return
    if url.startswith("sqlite:"):
        with Guard(url):
            yield
        return
    with _advisory_lock(url):
        yield


@contextlib.contextmanager
def _advisory_lock(url: str) -> Iterator[None]:
    """PostgreSQL's session advisory lock ADVISORY_KEY, on a connection of its own."""
    import sqlalchemy

    try:
        backend = sqlalchemy.engine.make_url(url).get_backend_name()
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"not a database URL; {EXPECTED}") from None
    if backend != "postgresql":
        raise ConfigError(f"{backend} is not supported (mtbench makes workers that start together safe on "
                          f"PostgreSQL, SQLite and journal files); {EXPECTED}")
    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    except ImportError as exc:
        raise ConfigError(f"its driver is not installed ({first_line(exc)}); `make setup` installs psycopg, "
                          "or: pip install 'mtbench[postgres]'") from None
    try:
        with engine.connect() as connection:  # closed at the end: NullPool ends the session, and its lock
            connection.execute(sqlalchemy.text(f"SET lock_timeout = '{FIRST_CONTACT_WAIT}s'"))
            try:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            except sqlalchemy.exc.OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                    raise
                raise ConfigError(f"another worker has been setting the storage up for {FIRST_CONTACT_WAIT} s "
                                  "(its PostgreSQL advisory lock is still held); try again later") from None
            connection.commit()  # the lock is the session's: no transaction stays open while it is held
            yield
    finally:
        engine.dispose()


class Guard:
    """Serialises what SQLite cannot make atomic (taking a WAITING trial, marking one lost, a first
    contact) among the processes of this host, with a lock in the database's folder; a no-op for other
    storages."""

    def __init__(self, url: str):
        db = sqlite_path(url)
        self.lock = DirLock(db.parent, hint="") if db is not None else None

    def __enter__(self) -> Guard:
        if self.lock is not None:
            self.lock.acquire(wait=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.lock is not None:
            self.lock.release()
