"""Test-wide settings: the embedded data set goes to a per-session cache, never the user's."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    if "MTBENCH_CACHE" not in os.environ:
        os.environ["MTBENCH_CACHE"] = str(tmp_path_factory.mktemp("mtbench-cache"))
    yield
