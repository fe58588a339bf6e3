"""Writing an embedded data set once into the cache, as ``synthetic.ensure_synthetic`` does for the
ImageNet + COCO set: the folder is named after the set, its format version and a digest of its
spec (a new spec never reuses an old set), built in a temporary folder and renamed into place, so
concurrent first uses cannot leave a half-written set behind. A manifest written last marks a
complete set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DataError
from .synthetic import build_in_cache, cache_root

__all__ = ["MANIFEST", "ensure_embedded", "write_embedded", "write_indexed_arrays"]

MANIFEST = "embedded.json"


def _folder_name(name: str, version: int, spec: Any) -> str:
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode()).hexdigest()
    return f"{name}-v{version}-{digest[:10]}"


def write_embedded(out_dir: str | Path, name: str, version: int, spec: Any,
                   write: Callable[[Path, Any], dict]) -> Path:
    """Write the set into ``out_dir`` (new or empty) with ``write(out_dir, spec)``, which returns what the
    manifest records of it (class names, ...); returns ``out_dir``."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if any(out.iterdir()):
            raise DataError(f"{out} is not empty; choose a new or empty folder for the {name} data set")
        described = write(out, spec)
        manifest = {"set": name, "format": version, "spec": dataclasses.asdict(spec), **described}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot write the {name} data set to {out}: {exc.strerror or exc}") from None
    return out


def ensure_embedded(name: str, version: int, spec: Any, write: Callable[[Path, Any], dict],
                    cache_dir: str | Path | None = None) -> Path:
    """The folder of the embedded set ``name`` in the cache, written with ``write`` on first use."""
    final = cache_root(cache_dir) / _folder_name(name, version, spec)
    build_in_cache(final, MANIFEST, name, lambda staging: write_embedded(staging, name, version, spec, write))
    return final


def write_indexed_arrays(out: Path, folders: tuple[str, ...], counts: tuple[int, int], seed: int,
                         make: Callable[[np.random.Generator], tuple[np.ndarray, ...]]) -> None:
    """``out/{train,val}/<folder>/<i>.npy``: ``make(rng)`` gives image i's arrays, one per folder, from
    its own generator seeded with (seed, split, i), so every image is the same whatever the counts."""
    for split_id, (split, count) in enumerate(zip(("train", "val"), counts)):
        for name in folders:
            (out / split / name).mkdir(parents=True)
        for i in range(count):
            for name, array in zip(folders, make(np.random.default_rng([seed, split_id, i]))):
                np.save(out / split / name / f"{i}.npy", array)
