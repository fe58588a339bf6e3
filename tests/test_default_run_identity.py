"""The default ImageNet + COCO run gives, on CPU, exactly the results it gave before tasks became data.

tests/data/default_run_digest.json was recorded from the trainer as it was before workloads
(`mtbench run --optimizer NAME --epochs 1 --limit-train 64 --device cpu`, one thread): every step's
losses, the final metrics and SHA-256 digests of the checkpoint's model tensors and optimizer state.
One run per gradient strategy: the weighted loss (adam), per-task gradients (mtadamv2) and a method
over them (adam + upgrad).
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from mtbench.config import build_config
from mtbench.plugins import load_registry
from mtbench.train import train

DIGESTS = json.loads((Path(__file__).parent / "data" / "default_run_digest.json").read_text())
REGISTRY = load_registry()


def tensors_digest(obj) -> str:
    """SHA-256 over every tensor in a nested state (dict keys sorted), with its path."""
    h = hashlib.sha256()

    def walk(o, path=""):
        if isinstance(o, torch.Tensor):
            h.update(path.encode())
            h.update(o.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(o, dict):
            for k in sorted(o, key=str):
                walk(o[k], f"{path}/{k}")
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(v, f"{path}/{i}")

    walk(obj)
    return h.hexdigest()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the digests were recorded with OMP_NUM_THREADS=1
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name, optimizer, method", [("adam", "adam", None), ("mtadamv2", "mtadamv2", None),
                                                     ("upgrad", "adam", "upgrad")])
def test_the_default_run_is_bit_identical_to_before_workloads(tmp_path, one_thread, name, optimizer, method):
    preset, mp = REGISTRY.get(optimizer), method and REGISTRY.get_method(method)
    config = build_config(preset, tmp_path / "run", mp, epochs=1, limit_train=64, device="cpu")
    summary = train(config, preset, method=mp, progress=False, echo=lambda s: None)
    want = DIGESTS[name]
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [[r["loss_cls"], r["loss_seg"], r["loss"]] for r in lines] == want["losses"]
    assert {k: summary[f"final_{k}"] for k in want["final"]} == want["final"]
    assert summary["final_metrics"] == want["final"] and summary["workload"] == "imagenet-coco"
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert tensors_digest(ckpt["model"]) == want["model"]
    assert tensors_digest(ckpt["optimizer"]["state"]) == want["optimizer"]
