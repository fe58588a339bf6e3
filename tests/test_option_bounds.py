"""Every count and size that `run` and `compare` take has a bound, checked where the option is parsed
(command line or --config file) with one line naming the option, the value and the allowed range."""

import click
import pytest
from click.testing import CliRunner

from mtbench.cli import main
from mtbench.cli.bounded import Bounded
from mtbench.cli.compare import compare
from mtbench.cli.run import run
from mtbench.config import LIMITS, RunConfig
from mtbench.errors import ConfigError

CLEAN_ENV = {"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""}


def invoke(args):
    return CliRunner().invoke(main, args, env=CLEAN_ENV)


def numeric_options(command):
    return [p for p in command.params if isinstance(p, click.Option) and not p.is_flag
            and isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType, Bounded))]


@pytest.mark.parametrize("command", [run, compare], ids=["run", "compare"])
def test_every_numeric_option_is_bounded(command):
    options = numeric_options(command)
    assert len(options) >= 10
    unbounded = [p.opts[0] for p in options if not isinstance(p.type, Bounded)]
    assert unbounded == []
    for p in options:
        assert p.type.limit.low is not None and p.type.limit.high is not None, p.opts


def out_of_range_cases():
    for command in (run, compare):
        for p in numeric_options(command):
            limit, flag = p.type.limit, max(p.opts, key=len)
            too_big = limit.high if limit.high_open else limit.high + 1
            too_small = limit.low - 1 if limit.kind is int else limit.low - 0.5
            for value in (too_small, too_big):
                yield pytest.param(command.name, flag, str(value), limit.describe(), id=f"{command.name}{flag}={value}")


@pytest.mark.parametrize("command, flag, value, allowed", list(out_of_range_cases()))
def test_a_value_out_of_range_is_one_line_naming_option_value_and_range(tmp_path, command, flag, value, allowed):
    optimizer = ["-o", "adam"] if command == "run" else ["--optimizers", "adam"]
    result = invoke([command, *optimizer, "--out", str(tmp_path / "out"), flag, value])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: {flag} {value} is not allowed: expected {allowed}"]
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["run", "-o", "adam", "--image-size", "100000"], "--image-size 100000 is not allowed: expected a whole number in [32, "),
    (["run", "-o", "adam", "--epochs", "2.5"], "--epochs 2.5 is not allowed: expected a whole number in [1, "),
    (["run", "-o", "adam", "--holdout", "nan"], "--holdout nan is not allowed: expected a fraction in [0, 1)"),
    (["run", "-o", "adam", "--seed", str(2**64)], f"--seed {2**64} is not allowed: expected a whole number in [0, {2**64 - 1}]"),
    (["compare", "--seeds", "99999999999999999999999"], "a seed count must be at least 1 and at most 10000"),
    (["compare", "--seeds", "0,99999999999999999999999"], f"seeds must be >= 0 and <= {2**64 - 1}"),
    (["compare", "--nproc-per-node", "100000"], "--nproc-per-node 100000 is not allowed: expected a whole number in [1, "),
])
def test_the_reported_cases(tmp_path, args, message):
    result = invoke([*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_the_largest_seed_is_allowed_exactly():
    assert RunConfig("adam", {}, "x", seed=2**64 - 1).seed == 2**64 - 1
    with pytest.raises(ConfigError, match=r"--seed 18446744073709551616 is not allowed"):
        RunConfig("adam", {}, "x", seed=2**64)


@pytest.mark.parametrize("value", ["1.7", "true", "0", "100001", "'many'"])
def test_a_config_files_count_is_a_whole_number_in_range_never_truncated(tmp_path, value):
    path = tmp_path / "c.toml"
    path.write_text(f"epochs = {value}\n")
    result = invoke(["run", "-o", "adam", "--config", str(path), "--out", str(tmp_path / "out")])
    shown = value.strip("'")
    assert result.exit_code == 2, result.output
    assert (f"Error: --epochs {shown} is not allowed: expected a whole number in [1, 100000] "
            f"(from --config {path})") in result.output


@pytest.mark.parametrize("field, value, message", [
    ("epochs", True, "--epochs true is not allowed"), ("batch_size", 1.5, "--batch-size 1.5 is not allowed"),
    ("workers", 2000, r"--workers 2000 is not allowed: expected a whole number in \[0, 1024\]"),
    ("max_consecutive_skips", 0, "--max-skips 0 is not allowed"),
])
def test_a_library_config_has_the_same_bounds(field, value, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig("adam", {}, "x", **{field: value})
