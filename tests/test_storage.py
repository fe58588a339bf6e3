"""`mtbench tune --storage`: the URLs it takes and the one-line errors for those it cannot use (no server
needed; tests/test_storage_postgres.py runs against a real PostgreSQL server)."""

import sys

import pytest

from mtbench.errors import ConfigError
from mtbench.tuning.storage import first_contact, open_storage, shown


@pytest.mark.parametrize("url, message", [
    ("mysql://user@localhost/db", r"--storage mysql://user@localhost/db: mysql is not supported .*; expected "
                                  r"sqlite:///PATH, postgresql://USER@HOST:PORT/DATABASE or journal:PATH$"),
    ("nonsense", r"--storage nonsense: not a database URL; expected sqlite:///PATH, postgresql://"),
    ("journal:", r"--storage journal:: expected journal:PATH, a file on a file system every worker sees$"),
])
def test_a_storage_mtbench_cannot_use_is_named_with_what_is_expected(url, message):
    with pytest.raises(ConfigError, match=message) as info:
        open_storage(url)
    assert "\n" not in str(info.value)


def test_a_missing_postgresql_driver_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    with pytest.raises(ConfigError, match=r"^--storage postgresql://u:\*\*\*@127\.0\.0\.1:1/db: its driver is not "
                                          r"installed \(.*\); `make setup` installs psycopg"):
        open_storage("postgresql://u:secret@127.0.0.1:1/db")


def test_an_unreachable_server_is_named_without_its_password():
    hidden = r"^--storage postgresql://u:\*\*\*@127\.0\.0\.1:1/db: cannot open it"
    with pytest.raises(ConfigError, match=hidden) as info:
        open_storage("postgresql://u:secret@127.0.0.1:1/db")  # port 1: nothing listens
    assert "secret" not in str(info.value)
    assert shown("journal:/shared/tune.log") == "journal:/shared/tune.log"


def test_a_sqlite_first_contact_holds_the_lock_beside_the_database(tmp_path):
    from mtbench.locks import DirLock, LockedError

    with first_contact(f"sqlite:///{tmp_path / 'study.db'}"):
        with pytest.raises(LockedError):
            DirLock(tmp_path).acquire()
    DirLock(tmp_path).acquire().release()
