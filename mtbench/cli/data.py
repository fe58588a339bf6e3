"""`mtbench data`: the data sets, starting with the workloads' embedded stand-ins."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import DEFAULT_WORKLOAD


@click.group()
def data() -> None:
    """Data sets: write a workload's embedded stand-in where you can look at it."""


@data.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--workload", default=DEFAULT_WORKLOAD, show_default=True, metavar="NAME",
              help="Whose stand-in: imagenet-coco, nyuv2, cityscapes or multidigits.")
@click.pass_context
def synth(ctx: click.Context, out: Path, workload: str) -> None:
    """Write a workload's embedded stand-in to OUT (a new or empty folder), in its real on-disk layout.

    \b
    The same set a run of the workload uses when no data folder is given; train on this copy with
      mtbench run --workload NAME --data OUT
    (imagenet-coco: OUT/imagenet and OUT/coco, in the ImageNet and COCO layouts).
    """
    from ..data.standins import write_stand_in

    ctx.obj.registry.workload(workload)  # an unknown name: one line with a did-you-mean
    for line in write_stand_in(workload, out):
        click.echo(line)
