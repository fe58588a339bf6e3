"""One comparison over several workloads: the same rows on each workload, each in its own comparison
directory (``out/<workload>/``, with its own report, through run_comparison), then the cross-workload
report in ``out`` (report.md/.csv/.json and profile.png: mtbench.report.workloads).

NOTE [workloads]: runs of different workloads cannot be paired by seed, so each workload is a comparison of
its own and the rows meet only in the profiles (their time to target and their joint score relative to the
best row's on each workload) and in the count of workloads each row is best on.

NOTE [per-workload settings]: a workload's data root and its budget (epochs, batch size, image size, training
images) may be given per workload as NAME=VALUE items (``workload_settings``); a plain value applies to every
workload not named, and a workload given neither keeps its own default. The data has no plain form: each
workload's folder has its own layout, so one folder for all is refused. ``mtbench tune --workloads`` reads them
the same way (mtbench.tuning.across).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

from ..config import DEFAULT_WORKLOAD, LIMITS
from ..errors import ConfigError
from ..plugins import Registry
from .launch import TrainFn
from .run import ComparisonResult, ComparisonSpec, plan_spec, run_comparison

__all__ = ["AcrossResult", "PER_WORKLOAD", "check_workloads", "run_across_workloads", "workload_settings"]

# The run options (as `mtbench run` names them) that take NAME=VALUE items with several workloads.
PER_WORKLOAD = ("data", "epochs", "batch_size", "image_size", "limit_train")
# imagenet-coco's own data options: they reach that workload's runs alone.
_IMAGENET_COCO = ("imagenet", "coco")


def check_workloads(names: Sequence[str], registry: Registry) -> list[str]:
    """The workloads of ``--workloads``, checked: two or more, none twice, each known (ConfigError naming it)."""
    names = [n.strip() for n in names if n.strip()]
    if len(names) < 2:
        raise ConfigError(f"--workloads needs two workloads or more, got {', '.join(names) or 'none'}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"workload {', '.join(twice)} is named twice")
    for name in names:
        registry.workload(name)  # an unknown name stops before anything trains
    return names


def workload_settings(settings: Mapping[str, Any], workloads: Sequence[str], known: Collection[str]
                      ) -> dict[str, dict[str, Any]]:
    """Each workload's run options: ``settings`` (as `mtbench run` names them) with the PER_WORKLOAD ones
    resolved for it (NOTE [per-workload settings]) and --imagenet/--coco kept for imagenet-coco alone.

    A PER_WORKLOAD setting is None, a plain value, or a sequence of values, each a plain value or text of
    NAME=VALUE items, comma-separated. ConfigError, naming the item, for a workload that is not one of
    ``workloads`` (``known``: every workload's name, to tell a mistyped one apart), a name given twice, a
    value out of range, a data folder that does not exist or a plain one.
    """
    names = list(workloads)
    given = [option for option in _IMAGENET_COCO if settings.get(option) is not None]
    if given and DEFAULT_WORKLOAD not in names:
        raise ConfigError(f"--{given[0]} is the {DEFAULT_WORKLOAD} workload's data, and --workloads {','.join(names)} "
                          f"does not run it; give another workload's data as --data NAME=DIR")
    per = {option: _per_workload(option, settings.get(option), names, known) for option in PER_WORKLOAD}
    if given and per["data"].get(DEFAULT_WORKLOAD) is not None:
        raise ConfigError(f"--data {DEFAULT_WORKLOAD}=... and --{given[0]} both name {DEFAULT_WORKLOAD}'s data; "
                          "give one of them")
    out = {}
    for name in names:
        own = {**settings, **{option: values.get(name) for option, values in per.items()}}
        if name != DEFAULT_WORKLOAD:
            own.update(dict.fromkeys(_IMAGENET_COCO))
        out[name] = own
    return out


def _per_workload(option: str, given: Any, workloads: list[str], known: Collection[str]) -> dict[str, Any]:
    """{workload: its value of ``option``, None for its default} (see ``workload_settings``)."""
    flag = "--" + option.replace("_", "-")
    values = [] if given is None else list(given) if isinstance(given, (list, tuple)) else [given]
    plain, named, seen_plain = None, {}, None
    for value in values:
        for item in (value.split(",") if isinstance(value, str) else [value]):
            text = item.strip() if isinstance(item, str) else item
            if text == "":
                continue
            if not isinstance(text, str) or "=" not in text:
                if option == "data":
                    raise ConfigError(f"--data {text}: with --workloads give each workload's data folder as NAME=DIR "
                                      f"(e.g. {workloads[0]}={text}); a workload not named reads its embedded "
                                      "stand-in")
                if seen_plain is not None:
                    raise ConfigError(f"{flag} {text}: a value for every workload is given twice ({seen_plain} "
                                      "and this); name a workload with NAME=VALUE")
                plain, seen_plain = _value(option, flag, text, text), text
                continue
            name, _, raw = (part.strip() for part in text.partition("="))
            if name not in workloads:
                what = "is not one of" if name in known else "is no workload: expected one of"
                raise ConfigError(f"{flag} {text}: {name!r} {what} --workloads {','.join(workloads)}")
            if name in named:
                raise ConfigError(f"{flag} {text}: {name} is given twice")
            named[name] = _value(option, flag, raw, text)
    return {name: named.get(name, plain) for name in workloads}


def _value(option: str, flag: str, raw: Any, item: Any) -> Any:
    """One value of ``option`` (``item`` as given, for the message): an existing folder, or a count in range."""
    if option == "data":
        if not raw or not Path(raw).is_dir():
            raise ConfigError(f"--data {item}: {raw or 'nothing'} is not a folder (expected the workload's data root)")
        return str(raw)
    limit = LIMITS[option]
    try:
        return limit.check_option(flag, raw)
    except ConfigError:
        raise ConfigError(f"{flag} {item} is not allowed: expected {limit.describe()}") from None


@dataclass
class AcrossResult:
    """What a comparison over workloads did: each workload's comparison, and the cross-workload files
    written in ``out`` (relative to it)."""

    out: Path
    results: dict[str, ComparisonResult]
    files: list[str]

    def failures(self) -> str | None:
        """Every workload's failed runs in one line, None when none failed."""
        failed = [f"{name}: {text}" for name, r in self.results.items() if (text := r.failures())]
        return "; ".join(failed) or None


def run_across_workloads(specs: Sequence[ComparisonSpec], out: Path, registry: Registry,
                         echo: Callable[[str], None] | None = None,
                         train_fn: TrainFn | None = None) -> AcrossResult:
    """Run each spec (one per workload; its ``out`` is replaced by ``out/<workload>``) with run_comparison,
    then write the cross-workload report into ``out``. A workload named twice, or settings that do not make
    a run of some workload, are a ConfigError before anything trains; ComparisonInterrupted stops the whole
    (the same call resumes every workload)."""
    from ..report.workloads import write_cross_workload  # matplotlib: only where the report is written

    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    check_workloads([spec.workload for spec in specs], registry)
    for spec in specs:  # every workload's runs are planned before the first trains: a bad setting stops them all
        try:
            plan_spec(spec, registry)
        except ConfigError as exc:
            raise ConfigError(f"{spec.workload}: {exc}") from None
    results = {}
    for k, spec in enumerate(specs, 1):
        echo(f"workload {k} of {len(specs)}: {spec.workload}")
        results[spec.workload] = run_comparison(dataclasses.replace(spec, out=Path(out) / spec.workload), registry,
                                                echo=echo, train_fn=train_fn)
    files = write_cross_workload({name: r.report for name, r in results.items()}, Path(out))
    return AcrossResult(Path(out), results, files)
