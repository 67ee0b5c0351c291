"""Fashion-MNIST loading and the benchmark configs shared by the Python references.

Images come back one example per ROW (n x 784, scaled to [0, 1]) so that
gathering a shuffled mini-batch copies contiguous rows; x[idx].T is then the
784 x m one-example-per-column matrix the engine uses (a view, no copy).
Labels come back as an int64 vector.
"""

import gzip
import os
import struct

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

# name -> (layer sizes, mini-batch size, eta). All: sigmoid, quadratic cost.
CONFIGS = {
    "A": ([784, 30, 10], 10, 3.0),
    "C": ([784, 256, 128, 10], 64, 3.0),
}


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # unsigned bytes only; that is what the files hold
        raise ValueError(f"{path}: unexpected IDX type in magic {magic:#x}")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {body.size} bytes, header says {dims}")
    return body.reshape(dims)


def load(train, dtype=np.float64, directory=FASHION_MNIST_DIR):
    prefix = "train" if train else "t10k"
    images = _read_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"))
    x = images.reshape(images.shape[0], -1).astype(dtype) / dtype(255)
    return x, labels.astype(np.int64)


def one_hot(labels, classes=10, dtype=np.float64):
    """n x classes, one example per row like load()."""
    y = np.zeros((labels.size, classes), dtype=dtype)
    y[np.arange(labels.size), labels] = 1
    return y
