"""Writing a built-in workload's embedded stand-in to a folder of one's choice (``mtbench data synth``).

A run without ``--data`` writes its workload's stand-in once into the cache; this writes the same
set (the same spec, so the same bytes) into a new or empty folder, in the workload's real on-disk
layout, where one can look at it or train on it with ``--data``. Each writer returns the lines that
say what it wrote. The table is keyed by workload name; a workload a plugin brings makes its own
data in its ``build_data`` and has no entry here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ConfigError

__all__ = ["STAND_INS", "write_stand_in"]


def _imagenet_coco(out: Path) -> list[str]:
    from .synthetic import SyntheticSpec, write_synthetic

    spec = SyntheticSpec()
    imagenet, coco = write_synthetic(out, spec)
    return [
        f"wrote the synthetic data set to {out}",
        f"  ImageNet layout: {imagenet}  {spec.classes} classes, "
        f"{spec.classes * spec.train_per_class} train / {spec.classes * spec.val_per_class} val images",
        f"  COCO layout:     {coco}  {spec.seg_classes} VOC classes, {spec.seg_train} train / {spec.seg_val} val images",
        f"  {spec.image_size}x{spec.image_size} JPEG; what each class looks like: {out / 'synthetic.json'}",
        f"  train on this copy: mtbench run --data {out}",
    ]


def _dense(workload: str) -> Callable[[Path], list[str]]:
    def write(out: Path) -> list[str]:
        from . import cityscapes, nyuv2
        from .embedded import MANIFEST, write_embedded

        module, spec, writer, what = {
            "nyuv2": (nyuv2, nyuv2.NyuSpec(), nyuv2.write_nyuv2, "rooms"),
            "cityscapes": (cityscapes, cityscapes.CityscapesSpec(), cityscapes.write_cityscapes, "streets"),
        }[workload]
        write_embedded(out, workload, module.FORMAT_VERSION, spec, writer)
        layout = module.LAYOUT
        return [
            f"wrote the {workload} stand-in to {out}",
            f"  {layout.name} layout: {out}/{{train,val}}/{{{','.join(layout.folders)}}}/<i>.npy  "
            f"{spec.train} train / {spec.val} val {what} at {spec.height} x {spec.width}, {layout.classes} classes",
            f"  class names: {out / MANIFEST}",
            f"  train on this copy: mtbench run --workload {workload} --data {out}",
        ]

    return write


def _multidigits(out: Path) -> list[str]:
    from .embedded import MANIFEST, write_embedded
    from .multidigits import FORMAT_VERSION, DigitsSpec, write_multidigits

    spec = DigitsSpec()
    write_embedded(out, "multidigits", FORMAT_VERSION, spec, write_multidigits)
    return [
        f"wrote the multidigits stand-in to {out}",
        f"  {out}/{{train,val}}/images.npy (N x {spec.canvas} x {spec.canvas}) and labels.npy (N x 2)  "
        f"{spec.train} train / {spec.val} val pairs",
        f"  what it was made from: {out / MANIFEST}",
        f"  train on this copy: mtbench run --workload multidigits --data {out}",
    ]


# workload name -> writer of its stand-in into a new or empty folder
STAND_INS: dict[str, Callable[[Path], list[str]]] = {
    "imagenet-coco": _imagenet_coco,
    "nyuv2": _dense("nyuv2"),
    "cityscapes": _dense("cityscapes"),
    "multidigits": _multidigits,
}


def write_stand_in(workload: str, out: str | Path) -> list[str]:
    """Write ``workload``'s embedded stand-in into ``out`` (new or empty); the lines that say what was
    written. ConfigError for a workload without one; DataError when ``out`` cannot take it."""
    try:
        write = STAND_INS[workload]
    except KeyError:
        raise ConfigError(f"workload {workload!r} has no embedded stand-in to write (the built-in ones: "
                          f"{', '.join(STAND_INS)}); a plugin's workload makes its data in its build_data") from None
    return write(Path(out))
