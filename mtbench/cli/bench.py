"""`mtbench bench`: time one optimizer step, MTAdamV2 against torch.optim.Adam; or, with --method, a
multi-task method's combine against the one-pass weighted sum of the task gradients."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--model", default="resnet18", show_default=True,
              help="torchvision model whose parameter shapes are used (built without weights).")
@click.option("--tasks", "-T", type=int, default=2, show_default=True, help="Number of tasks.")
@click.option("--method", default=None, metavar="NAME",
              help="Time this multi-task method's full combine (mtbench list shows them) against the one-pass "
                   "weighted sum of the task gradients, instead of the optimizer step.")
@click.option("--dtype", default="float32", show_default=True, help="float32, float64 or bfloat16.")
@click.option("--device", default="auto", show_default=True, help="auto (cuda when a GPU is visible, else cpu), cpu or cuda:N.")
@click.option("--repeat", type=int, default=20, show_default=True, help="Timed steps per row (median).")
@click.option("--threads", type=int, default=None, help="torch intra-op CPU threads  [default: torch's]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def bench(ctx: click.Context, model: str, tasks: int, method: str | None, dtype: str, device: str,
          repeat: int, threads: int | None, as_json: bool) -> None:
    """Time one optimizer step: MTAdamV2 fused and reference, Adam fused and foreach.

    Reports the median time per step, the effective memory bandwidth, the ratio to Adam (fused)
    and the floor of that ratio set by the bytes each step must move. With --method, times that
    method's combine and the one-pass weighted sum on the task gradients laid out as the trainer
    holds them (rows of one [T, N] buffer), and reports their ratio against the target of 2.0.
    """
    from ..bench import format_method_result, format_result, result_json, run_bench, run_method_bench

    options = dict(model=model, tasks=tasks, dtype=dtype, device=device, repeat=repeat, threads=threads)
    if method is None:
        result = run_bench(**options)
        click.echo(json.dumps(result_json(result), indent=2) if as_json else format_result(result))
        return
    result = run_method_bench(ctx.obj.registry.get_method(method), **options)
    click.echo(json.dumps(result_json(result), indent=2) if as_json else format_method_result(result))
