"""Test-wide settings: the embedded data set goes to a per-session cache, never the user's; a test
sees a GPU only when it carries the `cuda` marker (tests/devices.py)."""

import os

import pytest

from devices import MARKER, hide_cuda, missing_for, unmarked_cuda_tests

pytest_plugins = ["pytester"]  # tests/test_devices.py runs the collection check on a small suite


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    if "MTBENCH_CACHE" not in os.environ:
        os.environ["MTBENCH_CACHE"] = str(tmp_path_factory.mktemp("mtbench-cache"))
    yield


_HIDDEN = pytest.StashKey[pytest.MonkeyPatch]()


# A hook, not an autouse fixture: module- and session-scoped fixtures set up for the test see no GPU either.
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker(MARKER) is None:
        item.stash[_HIDDEN] = patch = pytest.MonkeyPatch()
        hide_cuda(patch)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    patch = item.stash.get(_HIDDEN, None)
    if patch is not None:
        patch.undo()


def pytest_collection_modifyitems(config, items):
    unmarked = unmarked_cuda_tests(items)
    if unmarked:
        raise pytest.UsageError(f"{len(unmarked)} test(s) parametrized with a CUDA device lack the `{MARKER}` "
                                f"marker (tests/devices.py), e.g. {unmarked[0]}")
    for item in items:
        marker = item.get_closest_marker(MARKER)
        reason = missing_for(marker) if marker is not None else None
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
