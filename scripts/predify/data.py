"""Fashion-MNIST from Debian's dataset-fashion-mnist package (IDX files, gzip)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion(split: str, root: Path = FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int64 labels (N,) of split 'train' or 't10k'."""
    images = root / f"{split}-images-idx3-ubyte.gz"
    if not images.exists():
        raise FileNotFoundError(f"{images} is missing: run scripts/setup-debian.sh (Debian's dataset-fashion-mnist)")
    return _read_idx(images), _read_idx(root / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)


def normalise(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float32, the way the server preprocesses."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return (x - mean) / std
