"""Tiny NYUv2 / Cityscapes sets in the preprocessed .npy layout, written by the tests that read them."""

from pathlib import Path

import numpy as np


def write_dense(root: Path, label_folder: str = "label", classes: int = 13, normals: bool = True,
                count: tuple[int, int] = (4, 2), size: tuple[int, int] = (8, 12), seed: int = 0) -> Path:
    """``root/{train,val}/{image,<label_folder>,depth[,normal]}/<i>.npy`` of random but valid arrays:
    a corner of ignored labels and of missing depth (and normals) in every image."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in zip(("train", "val"), count):
        for folder in ("image", label_folder, "depth") + (("normal",) if normals else ()):
            (root / split / folder).mkdir(parents=True)
        for i in range(n):
            label = rng.integers(0, classes, (h, w)).astype(np.float32)
            label[0, 0] = -1
            depth = rng.uniform(0.5, 10.0, (h, w, 1)).astype(np.float32)
            depth[-1, -1] = 0
            np.save(root / split / "image" / f"{i}.npy", rng.uniform(0, 1, (h, w, 3)).astype(np.float32))
            np.save(root / split / label_folder / f"{i}.npy", label)
            np.save(root / split / "depth" / f"{i}.npy", depth)
            if normals:
                normal = rng.normal(size=(h, w, 3))
                normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
                normal[-1, -1] = 0
                np.save(root / split / "normal" / f"{i}.npy", normal.astype(np.float32))
    return root
