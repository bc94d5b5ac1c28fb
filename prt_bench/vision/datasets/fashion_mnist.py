"""Fashion-MNIST (Xiao et al. 2017) from its four idx .gz files in the data dir.

``<data dir>/fashion_mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``, the layout of
the official release; 28x28 grey images, 10 classes.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np
import torch

from prt_bench.data import require_data_file

FILES = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An idx file (the MNIST format): magic (0, 0, dtype 0x08, ndim), big-endian sizes, bytes."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # click would print a bare "Aborted." for EOFError
        raise OSError(f"{path}: truncated or corrupt gzip file ({type(e).__name__}: {e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {shape}, found {array.size} bytes")
    return array.reshape(shape)


def load(split: str, data_dir=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [N, 1, 28, 28] uint8, labels [N] int64)`` of the official train or test split."""
    if split not in FILES:
        raise ValueError(f"fashion_mnist has splits {sorted(FILES)}, not {split!r}")
    stem = FILES[split]
    images = read_idx(require_data_file(f"fashion_mnist/{stem}-images-idx3-ubyte.gz", data_dir))
    labels = read_idx(require_data_file(f"fashion_mnist/{stem}-labels-idx1-ubyte.gz", data_dir))
    if len(images) != len(labels):
        raise ValueError(f"fashion_mnist {split}: {len(images)} images but {len(labels)} labels")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
