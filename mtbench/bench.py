"""The optimizer-step benchmark (DESIGN §7): MTAdamV2 fused and reference against torch.optim.Adam,
timed in one process on the parameter shapes of a torchvision model; and the method benchmark: a
multi-task method's full combine against the one-pass weighted sum of the task gradients.

Byte model (what one step must move through memory, per parameter element):
  Adam:      read p, g, m, v and write p, m, v: 3 tensors of the parameter dtype and 4 of the state
             dtype (torch keeps Adam's state in the parameter dtype).
  MTAdamV2:  the norm pass reads the T gradients; the update reads p and each task's g, m, v and
             writes p and each task's m, v: 2 + 2T tensors of the parameter dtype and 4T of the
             state dtype (float32, float64 for float64 parameters). For float32 and T = 2 that is
             14 floats against Adam's 7, so 2.0 is the floor of the time ratio.
  A method:  any method must at least read the T gradients and write their combination (T + 1
             elements per parameter element), which the one-pass weighted sum does. A Gramian
             method (UPGrad, MGDA, ...) reads the gradients once more for the Gramian: (2T + 1) /
             (T + 1) = 5/3 for T = 2, under the target of 2.0.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from . import ops
from .aggregation import weighted_sum
from .distributed import resolve_device
from .errors import ConfigError
from .optim import MTAdamV2
from .presets import MethodPreset
from .text import did_you_mean, format_table

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
METHOD_TARGET = 2.0  # a method's combine against the one-pass weighted sum (the Gramian route's floor: 5/3)


@dataclass(frozen=True)
class BenchRow:
    """One optimizer's timing; `ratio` and `floor` are relative to Adam (fused)."""

    name: str
    median_ms: float
    gb_per_s: float
    ratio: float
    floor: float


@dataclass(frozen=True)
class MethodBenchResult:
    """A method's full combine against the one-pass weighted sum, on the same [T, N] gradient buffer."""

    method: str
    title: str
    model: str
    num_params: int
    num_tensors: int
    tasks: int
    dtype: str
    device: str
    repeat: int
    threads: int
    weighted_sum_ms: float
    combine_ms: float
    ratio: float
    target: float


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


def median_ms(steps: list[Callable[[], None]], repeat: int, device: torch.device,
              clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Median time of each step function over `repeat` rounds, after two warm-up calls each (which also
    create the optimizer state): wall time, or with ``clock=time.thread_time`` this thread's CPU time (on
    cores other processes share, the time this process was descheduled does not count; CPU only).

    NOTE [interleaved timing]: each round times every step once, in turn, so that a change in the
    machine's load during the run shifts all rows alike instead of skewing their ratios.
    """
    # The device's own queue: synchronize() alone waits for the current device, not necessarily this one.
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for step in steps:
        step()
        step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeat):
        for step, row_times in zip(steps, times):
            sync()
            start = clock()
            step()
            sync()
            row_times.append(clock() - start)
    return [1e3 * statistics.median(row_times) for row_times in times]


def task_gradient_buffer(shapes: list[torch.Size], tasks: int, dtype: torch.dtype, device: torch.device,
                         generator: torch.Generator) -> list[list[torch.Tensor]]:
    """Random per-task gradients laid out as the trainer holds them (training/gradients.py
    TaskGradientBuffer): ``grads[t][i]`` is a view of row t of one contiguous ``[T, N]`` buffer, shaped as
    parameter i."""
    total = sum(s.numel() for s in shapes)
    buffer = torch.randn(tasks, total, generator=generator).to(device, dtype)
    grads: list[list[torch.Tensor]] = [[] for _ in range(tasks)]
    offset = 0
    for shape in shapes:
        for t in range(tasks):
            grads[t].append(buffer[t, offset:offset + shape.numel()].view(shape))
        offset += shape.numel()
    return grads


def _with_threads(threads: int | None, run: Callable[[], object]):
    """``run()`` with torch's intra-op threads set to ``threads`` (None: as torch has them)."""
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        return run()
    finally:
        torch.set_num_threads(previous)


def _checked(model: str, tasks: int, dtype: str, device: str, repeat: int):
    """(device, dtype, parameter shapes) of a benchmark's options; ConfigError naming the first bad one."""
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if not 1 <= tasks <= ops.MAX_TASKS:  # the fused row takes one compiled call
        raise ConfigError(f"tasks must be in 1..{ops.MAX_TASKS}, got {tasks}")
    if repeat < 1:
        raise ConfigError(f"repeat must be >= 1, got {repeat}")
    return resolve_device(device), DTYPES[dtype], parameter_shapes(model)


def run_bench(model: str = "resnet18", tasks: int = 2, dtype: str = "float32", device: str = "cpu",
              repeat: int = 20, threads: int | None = None) -> BenchResult:
    """Times one step of each optimizer on the same parameters and gradients; `threads` sets torch's
    intra-op threads for the run (default: as torch has them)."""
    return _with_threads(threads, lambda: _run_bench(model, tasks, dtype, device, repeat))


def _run_bench(model: str, tasks: int, dtype: str, device: str, repeat: int) -> BenchResult:
    torch_device, torch_dtype, shapes = _checked(model, tasks, dtype, device, repeat)

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
    times = median_ms([step for _, step, _ in candidates], repeat, torch_device)
    baseline = times[[name for name, _, _ in candidates].index("Adam (fused)")]
    rows = [BenchRow(name, ms, nbytes / (ms * 1e-3) / 1e9, ms / baseline, nbytes / adam_bytes)
            for (name, _, nbytes), ms in zip(candidates, times)]
    return BenchResult(model, numel, len(params), tasks, dtype, str(torch_device), repeat, torch.get_num_threads(),
                       rows)


def run_method_bench(method: MethodPreset, model: str = "resnet18", tasks: int = 2, dtype: str = "float32",
                     device: str = "cpu", repeat: int = 20, threads: int | None = None) -> MethodBenchResult:
    """Times ``method``'s full combine (its default settings) against the one-pass weighted sum of the
    task gradients, both on the same ``[T, N]`` buffer, every parameter reached by every task."""
    return _with_threads(threads, lambda: _run_method_bench(method, model, tasks, dtype, device, repeat))


def _run_method_bench(method: MethodPreset, model: str, tasks: int, dtype: str, device: str,
                      repeat: int) -> MethodBenchResult:
    torch_device, torch_dtype, shapes = _checked(model, tasks, dtype, device, repeat)
    grads = task_gradient_buffer(shapes, tasks, torch_dtype, torch_device, torch.Generator().manual_seed(0))
    built = method.build(tasks, **method.resolve({}))
    for p in (built.parameters() if hasattr(built, "parameters") else ()):
        p.data = p.data.to(torch_device)  # as the trainer moves a method's own loss weights
    weights = torch.full((tasks,), 1.0 / tasks, device=torch_device)
    losses = torch.ones(tasks, device=torch_device)
    step = 0

    def combine() -> None:
        nonlocal step
        step += 1  # a method may depend on the step (DWA's window, say): count as the trainer does
        built.combine(grads, losses, step)

    baseline_ms, combine_ms = median_ms([lambda: weighted_sum(grads, weights), combine], repeat, torch_device)
    return MethodBenchResult(method.name, method.title, model, sum(s.numel() for s in shapes), len(shapes), tasks,
                             dtype, str(torch_device), repeat, torch.get_num_threads(), baseline_ms, combine_ms,
                             combine_ms / baseline_ms, METHOD_TARGET)


def _setup(result: BenchResult | MethodBenchResult) -> str:
    """What a benchmark ran on, in words: the shapes, tasks, dtype, device and threads."""
    return (f"{result.model} shapes ({result.num_params / 1e6:.2f} M parameters in {result.num_tensors} tensors), "
            f"T={result.tasks}, {result.dtype} on {result.device} "
            f"({result.threads} CPU thread{'s' if result.threads != 1 else ''})")


def format_result(result: BenchResult) -> str:
    """The result as a titled plain-text table."""
    title = f"optimizer step, {_setup(result)}, median of {result.repeat} steps; {ops.describe()}"
    headers = ["optimizer", "ms/step", "GB/s", "vs Adam (fused)", "floor"]
    rows = [[r.name, f"{r.median_ms:.2f}", f"{r.gb_per_s:.1f}", f"{r.ratio:.2f}x", f"{r.floor:.2f}x"]
            for r in result.rows]
    note = "floor: the ratio to Adam (fused) that the bytes each step must move allow"
    return "\n".join([title, "", format_table(headers, rows), "", note])


def format_method_result(result: MethodBenchResult) -> str:
    """The method result as a titled plain-text table, with the ratio against its target."""
    title = (f"multi-task method combine, {_setup(result)}, the task gradients as rows of one [T, N] buffer, "
             f"median of {result.repeat} rounds; {ops.describe()}")
    rows = [["weighted sum (one pass)", f"{result.weighted_sum_ms:.2f}", "1.00x"],
            [f"{result.title} combine", f"{result.combine_ms:.2f}", f"{result.ratio:.2f}x"]]
    verdict = "met" if result.ratio <= result.target else "missed"
    note = (f"{result.method}: {result.ratio:.2f}x the one-pass weighted sum (target: at most "
            f"{result.target:.1f}x, {verdict})")
    return "\n".join([title, "", format_table(["step", "ms", "vs weighted sum"], rows), "", note])


def result_json(result: BenchResult | MethodBenchResult) -> dict:
    """The result as plain data for --json."""
    return asdict(result)
