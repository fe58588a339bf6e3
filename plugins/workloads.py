"""The field's standard multi-task workloads: NYUv2, Cityscapes and MultiMNIST-style digit pairs.

Each reads its real on-disk format with ``--data DIR`` and otherwise an embedded stand-in written
once into the cache: rendered rooms and streets (mtbench.data.nyuv2, mtbench.data.cityscapes) and
pairs of scikit-learn's bundled digits (mtbench.data.multidigits). All three label one image set
for every task (a shared batch). The declarations import no torch; the losses, meters and builders
are named lazily.
"""

from mtbench import Metric, Task, Workload, hookimpl

__all__ = ["CITYSCAPES", "MULTIDIGITS", "NYUV2", "mtbench_workloads"]

_DENSE = "mtbench.workloads.dense"
_DIGITS = "mtbench.workloads.digits"


def _segmentation(classes: int) -> Task:
    return Task(
        name="seg", title=f"{classes}-class segmentation",
        metrics=(Metric("miou", "mIoU", True), Metric("pixel_acc", "pixel acc", True, "%")),
        primary="miou", loss=f"{_DENSE}:seg_loss", meter=f"{_DENSE}:seg_meter",
    )


def _depth(unit: str) -> Task:
    """Depth; ``unit`` is what the set stores: metres (NYUv2) or disparity pixels / 256 (Cityscapes,
    an inverse depth; NOTE [Cityscapes depth is scaled disparity] in mtbench.data.cityscapes)."""
    return Task(
        name="depth", title="depth",
        metrics=(Metric("depth_abs", "abs err", False, unit), Metric("depth_rel", "rel err", False)),
        primary="depth_abs", loss=f"{_DENSE}:depth_loss", meter=f"{_DENSE}:depth_meter",
    )


NORMAL = Task(
    name="normal", title="surface normals",
    metrics=(
        Metric("normal_mean", "mean angle", False, "deg"),
        Metric("normal_median", "median angle", False, "deg"),
        Metric("normal_11", "within 11.25", True, "%"),
        Metric("normal_22", "within 22.5", True, "%"),
        Metric("normal_30", "within 30", True, "%"),
    ),
    primary="normal_mean", loss=f"{_DENSE}:normal_loss", meter=f"{_DENSE}:normal_meter",
)

NYUV2 = Workload(
    name="nyuv2",
    title="NYUv2: segmentation, depth, surface normals",
    tasks=(_segmentation(13), _depth("m"), NORMAL),
    build_model=f"{_DENSE}:build_dense_model",
    build_data=f"{_DENSE}:build_nyuv2_data",
    batches="shared",
    image_size=72,
    batch_size=8,
    epochs=4,
    description="Indoor scenes labelled for 13-class segmentation, depth and surface normals; a ResNet "
                "backbone with an FCN-style decoder per task. --data DIR: MTAN's preprocessed "
                "{train,val}/{image,label,depth,normal}/<i>.npy (288 x 384; --image-size is the height, the "
                "width keeps the aspect ratio), else 400 + 100 rendered rooms at 72 x 96.",
    order=10,
)
CITYSCAPES = Workload(
    name="cityscapes",
    title="Cityscapes: segmentation, depth",
    tasks=(_segmentation(7), _depth("px/256")),
    build_model=f"{_DENSE}:build_dense_model",
    build_data=f"{_DENSE}:build_cityscapes_data",
    batches="shared",
    image_size=64,
    batch_size=8,
    epochs=4,
    description="Street scenes labelled for 7-class segmentation and depth (stored as disparity / 256, an "
                "inverse depth, as LibMTL's set holds it); a ResNet backbone with an FCN-style decoder per task. --data DIR: LibMTL's {train,val}/{image,label_7,depth}/<i>.npy "
                "(128 x 256; --image-size is the height), else 400 + 100 rendered streets at 64 x 128.",
    order=20,
)
MULTIDIGITS = Workload(
    name="multidigits",
    title="MultiDigits: left and right digit",
    tasks=tuple(
        Task(name=side, title=f"{side} digit", metrics=(Metric(f"{side}_acc", f"{side} acc", True, "%"),),
             primary=f"{side}_acc", loss=f"{_DIGITS}:digit_loss", meter=f"{_DIGITS}:{side}_meter")
        for side in ("left", "right")
    ),
    build_model=f"{_DIGITS}:build_digits_model",
    build_data=f"{_DIGITS}:build_digits_data",
    batches="shared",
    image_size=32,
    batch_size=64,
    epochs=5,
    description="Two overlaid handwritten digits, one 10-way task each, on a small convolutional network "
                "of its own (--backbone does not apply). --data DIR: {train,val}/images.npy (N x H x W) "
                "and labels.npy (N x 2), else 2000 + 500 pairs of scikit-learn's bundled 8 x 8 digits.",
    order=30,
)


@hookimpl
def mtbench_workloads():
    return [NYUV2, CITYSCAPES, MULTIDIGITS]
