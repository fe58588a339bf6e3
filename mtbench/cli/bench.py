"""`mtbench bench`: time one optimizer step, MTAdamV2 against torch.optim.Adam."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--model", default="resnet18", show_default=True,
              help="torchvision model whose parameter shapes are used (built without weights).")
@click.option("--tasks", "-T", type=int, default=2, show_default=True, help="Number of tasks for MTAdamV2.")
@click.option("--dtype", default="float32", show_default=True, help="float32, float64 or bfloat16.")
@click.option("--device", default=None, help="cpu or cuda[:N]  [default: cuda when a GPU is visible, else cpu]")
@click.option("--repeat", type=int, default=20, show_default=True, help="Timed steps per optimizer (median).")
@click.option("--threads", type=int, default=None, help="torch intra-op CPU threads  [default: torch's]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bench(model: str, tasks: int, dtype: str, device: str | None, repeat: int, threads: int | None,
          as_json: bool) -> None:
    """Time one optimizer step: MTAdamV2 fused and reference, Adam fused and foreach.

    Reports the median time per step, the effective memory bandwidth, the ratio to Adam (fused)
    and the floor of that ratio set by the bytes each step must move.
    """
    import torch

    from ..bench import format_result, result_json, run_bench

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    result = run_bench(model=model, tasks=tasks, dtype=dtype, device=device, repeat=repeat, threads=threads)
    click.echo(json.dumps(result_json(result), indent=2) if as_json else format_result(result))
