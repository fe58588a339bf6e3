"""Exact comparison of saved training state: nested dicts, lists and tensors, as checkpoints hold them."""

import math

import torch


def assert_same_state(actual, expected, where: str = "state") -> None:
    """The same keys and lengths throughout, every tensor bit-equal (dtype and shape included), every
    other value equal; a failure names the path of the first difference, e.g. ``state.optimizer.state.3.exp_avg``."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f"{where}: {type(actual).__name__}, expected a tensor"
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{where}: {m}")
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), \
            f"{where}: keys {sorted(map(str, actual))}, expected {sorted(map(str, expected))}"
        for key, value in expected.items():
            assert_same_state(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), \
            f"{where}: {actual!r}, expected {len(expected)} items"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_state(a, e, f"{where}.{i}")
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float) and math.isnan(actual), f"{where}: {actual!r}, expected nan"
    else:
        assert actual == expected, f"{where}: {actual!r}, expected {expected!r}"
