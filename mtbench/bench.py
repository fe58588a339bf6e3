"""The optimizer-step benchmark (DESIGN §7): MTAdamV2 fused and reference against torch.optim.Adam,
timed in one process on the parameter shapes of a torchvision model.

Byte model (what one step must move through memory, per parameter element):
  Adam:      read p, g, m, v and write p, m, v: 3 tensors of the parameter dtype and 4 of the state
             dtype (torch keeps Adam's state in the parameter dtype).
  MTAdamV2:  the norm pass reads the T gradients; the update reads p and each task's g, m, v and
             writes p and each task's m, v: 2 + 2T tensors of the parameter dtype and 4T of the
             state dtype (float32, float64 for float64 parameters). For float32 and T = 2 that is
             14 floats against Adam's 7, so 2.0 is the floor of the time ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from . import ops
from .errors import ConfigError
from .optim import MTAdamV2
from .presets import did_you_mean
from .table import format_table

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class BenchRow:
    """One optimizer's timing; `ratio` and `floor` are relative to Adam (fused)."""

    name: str
    median_ms: float
    gb_per_s: float
    ratio: float
    floor: float


@dataclass(frozen=True)
class BenchResult:
    model: str
    num_params: int
    num_tensors: int
    tasks: int
    dtype: str
    device: str
    repeat: int
    threads: int
    rows: list[BenchRow]


def parameter_shapes(model: str) -> list[torch.Size]:
    """The parameter shapes of a torchvision classification model, built on the meta device (no weights)."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if model not in names:
        hint = did_you_mean(model, names) or "; expected a torchvision classification model such as resnet18"
        raise ConfigError(f"unknown model {model!r}{hint}")
    with torch.device("meta"):
        net = torchvision.models.get_model(model, weights=None)
    return [p.shape for p in net.parameters()]


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; expected cpu or cuda[:N]") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported; expected cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} is not available: torch sees no CUDA GPU")
    return device


def _median_ms(steps: list[Callable[[], None]], repeat: int, device: torch.device) -> list[float]:
    """Median wall time of each step function over `repeat` rounds, after two warm-up calls each
    (which also create the optimizer state).

    NOTE [interleaved timing]: each round times every step once, in turn, so that a change in the
    machine's load during the run shifts all rows alike instead of skewing their ratios.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in steps:
        step()
        step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeat):
        for step, row_times in zip(steps, times):
            sync()
            start = time.perf_counter()
            step()
            sync()
            row_times.append(time.perf_counter() - start)
    return [1e3 * statistics.median(row_times) for row_times in times]


def run_bench(model: str = "resnet18", tasks: int = 2, dtype: str = "float32", device: str = "cpu",
              repeat: int = 20, threads: int | None = None) -> BenchResult:
    """Times one step of each optimizer on the same parameters and gradients; `threads` sets torch's
    intra-op threads for the run (default: as torch has them)."""
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        return _run_bench(model, tasks, dtype, device, repeat)
    finally:
        torch.set_num_threads(previous)


def _run_bench(model: str, tasks: int, dtype: str, device: str, repeat: int) -> BenchResult:
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if not 1 <= tasks <= ops.MAX_TASKS:  # the fused row takes one compiled call
        raise ConfigError(f"tasks must be in 1..{ops.MAX_TASKS}, got {tasks}")
    if repeat < 1:
        raise ConfigError(f"repeat must be >= 1, got {repeat}")
    torch_device = _device(device)
    torch_dtype = DTYPES[dtype]
    shapes = parameter_shapes(model)

    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=generator).to(torch_device, torch_dtype) for s in shapes]
    task_grads = [[torch.randn(s, generator=generator).to(torch_device, torch_dtype) for s in shapes]
                  for _ in range(tasks)]
    numel = sum(p.numel() for p in params)
    param_size = torch.empty((), dtype=torch_dtype).element_size()
    state_size = ops.state_dtype(torch_dtype).itemsize
    adam_bytes = numel * 7 * param_size
    mtadam_bytes = numel * ((2 + 2 * tasks) * param_size + 4 * tasks * state_size)

    # Adam reads task 0's gradients from .grad; MTAdamV2 takes every task's as arguments.
    for p, g in zip(params, task_grads[0]):
        p.grad = g

    def mtadamv2(impl: str) -> Callable[[], None]:
        opt = MTAdamV2(params, task_weights=[1.0 / tasks] * tasks, impl=impl)
        return lambda: opt.step(task_grads)

    candidates = [("Adam (fused)", torch.optim.Adam(params, fused=True).step, adam_bytes),
                  ("Adam (foreach)", torch.optim.Adam(params, foreach=True).step, adam_bytes),
                  ("MTAdamV2 (reference)", mtadamv2("reference"), mtadam_bytes)]
    if ops.supports(torch_device):
        candidates.insert(0, ("MTAdamV2 (fused)", mtadamv2("fused"), mtadam_bytes))
    times = _median_ms([step for _, step, _ in candidates], repeat, torch_device)
    baseline = times[[name for name, _, _ in candidates].index("Adam (fused)")]
    rows = [BenchRow(name, ms, nbytes / (ms * 1e-3) / 1e9, ms / baseline, nbytes / adam_bytes)
            for (name, _, nbytes), ms in zip(candidates, times)]
    return BenchResult(model, numel, len(params), tasks, dtype, str(torch_device), repeat, torch.get_num_threads(),
                       rows)


def format_result(result: BenchResult) -> str:
    """The result as a titled plain-text table."""
    title = (f"optimizer step, {result.model} shapes ({result.num_params / 1e6:.2f} M parameters in "
             f"{result.num_tensors} tensors), T={result.tasks}, {result.dtype} on {result.device} "
             f"({result.threads} CPU thread{'s' if result.threads != 1 else ''}), median of {result.repeat} steps; {ops.describe()}")
    headers = ["optimizer", "ms/step", "GB/s", "vs Adam (fused)", "floor"]
    rows = [[r.name, f"{r.median_ms:.2f}", f"{r.gb_per_s:.1f}", f"{r.ratio:.2f}x", f"{r.floor:.2f}x"]
            for r in result.rows]
    note = "floor: the ratio to Adam (fused) that the bytes each step must move allow"
    return "\n".join([title, "", format_table(headers, rows), "", note])


def result_json(result: BenchResult) -> dict:
    """The result as plain data for --json."""
    return asdict(result)
