"""`mtbench data`: the data sets, starting with the embedded synthetic one."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def data() -> None:
    """Data sets: write the embedded synthetic set where you can look at it."""


@data.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def synth(out: Path) -> None:
    """Write the synthetic data set to OUT (a new or empty folder) in the ImageNet and COCO layouts.

    \b
    The same set a run uses when neither --imagenet nor --coco is given; train on this copy with
      mtbench run --imagenet OUT/imagenet --coco OUT/coco
    """
    from ..data.synthetic import SyntheticSpec, write_synthetic

    spec = SyntheticSpec()
    imagenet, coco = write_synthetic(out, spec)
    click.echo(f"wrote the synthetic data set to {out}")
    click.echo(
        f"  ImageNet layout: {imagenet}  {spec.classes} classes, "
        f"{spec.classes * spec.train_per_class} train / {spec.classes * spec.val_per_class} val images"
    )
    click.echo(
        f"  COCO layout:     {coco}  {spec.seg_classes} VOC classes, "
        f"{spec.seg_train} train / {spec.seg_val} val images"
    )
    click.echo(f"  {spec.image_size}x{spec.image_size} JPEG; what each class looks like: {out / 'synthetic.json'}")
