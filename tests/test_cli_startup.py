"""Listing the commands is instant: `mtbench --help` and the completion of command names import no
command module, so none of the heavy libraries the commands use."""

import os
import subprocess
import sys

import click
import pytest

from mtbench.cli import _COMMANDS, main

# What a command may import when it runs, and listing the commands must not.
HEAVY = ("torch", "torchvision", "numpy", "scipy", "matplotlib", "PIL", "optuna", "pycocotools", "torchjd")

# Runs the CLI the way the console script (`main`) or `python -m mtbench` (runpy) does, then prints
# the heavy top-level packages it imported.
WRAPPER = """\
import runpy, sys
sys.argv = ["mtbench", *sys.argv[1:]]
try:
    if {as_module}:
        runpy.run_module("mtbench", run_name="__main__", alter_sys=True)
    else:
        from mtbench.cli import main
        main(prog_name="mtbench")
except SystemExit:
    pass
print("loaded:", ",".join(sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))))
"""


def loaded_heavy(args, as_module=False, env=None):
    code = WRAPPER.format(as_module=as_module, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})})
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("loaded:"), out.stdout + out.stderr
    return out.stdout + out.stderr, [m for m in last[len("loaded:"):].strip().split(",") if m]


@pytest.mark.parametrize("as_module", [False, True], ids=["console-script", "python-m"])
@pytest.mark.parametrize("args", [["--help"], ["-h"], []], ids=["--help", "-h", "no-args"])
def test_listing_the_commands_imports_no_heavy_library(args, as_module):
    output, heavy = loaded_heavy(args, as_module)  # with no arguments click shows the help on stderr
    assert "compare  Train every row" in output and "tune     Give every optimizer" in output
    assert heavy == [], f"`mtbench {' '.join(args)}` imported {heavy}"


def test_completing_a_command_name_imports_no_heavy_library():
    env = {"_MTBENCH_COMPLETE": "bash_complete", "COMP_WORDS": "mtbench ", "COMP_CWORD": "1"}
    output, heavy = loaded_heavy([], env=env)
    assert {"plain,compare", "plain,report", "plain,tune"} <= set(output.splitlines())
    assert heavy == []


@pytest.mark.parametrize("args", [["list"], ["list", "--json"]], ids=["list", "list-json"])
def test_listing_the_presets_imports_no_heavy_library(args):
    # Every built-in plugin names its factory by a dotted name, imported only when a run builds it.
    output, heavy = loaded_heavy(args)
    assert "mtadamv2" in output and "upgrad" in output and "uncertainty" in output, output
    assert heavy == [], f"`mtbench {' '.join(args)}` imported {heavy}"


# `mtbench run` on a terminal with no --optimizer: what is loaded when the numbered menu asks.
MENU = """\
import sys
import click
import mtbench.cli.run

mtbench.cli.run._stdin_is_terminal = lambda: True

def answer(*args, **kwargs):
    print("loaded:", ",".join(sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))))
    raise SystemExit(0)

click.prompt = answer
from mtbench.cli import main
main(["run"], prog_name="mtbench")
"""


def test_the_run_menu_imports_no_heavy_library():
    out = subprocess.run([sys.executable, "-c", MENU.format(heavy=HEAVY)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert "Select an optimizer:" in out.stdout and "MTAdamV2" in out.stdout, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "loaded:", out.stdout + out.stderr


def test_each_command_line_in_the_listing_is_the_commands_own_short_help():
    ctx = click.Context(main)
    for name, (_, summary) in _COMMANDS.items():
        assert summary == main.get_command(ctx, name).get_short_help_str(limit=10_000), name
