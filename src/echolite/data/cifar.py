"""Image classification data in the official CIFAR-10 python layout.

A folder ``cifar-10-batches-py/`` (or its parent) holds ``data_batch_1`` .. ``data_batch_5``,
``test_batch`` and ``batches.meta``: pickled dicts with *bytes* keys, as the official files have:
``b'data'`` uint8 (N, 3072), each row the R, G and B planes of a 32×32 image in row-major order,
``b'labels'`` N ints, and in ``batches.meta`` ``b'label_names'``.

The batch files are pickles, and unpickling an untrusted file runs arbitrary code. They are read
with :class:`SafeUnpickler`, which admits only what the official files contain (dicts, lists,
bytes/str, ints, numpy arrays and dtypes) and refuses anything else with a clear error — the
same care as ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echolite import EcholiteError
from echolite.data.validate import Problem, Report

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
SIDE, CHANNELS = 32, 3
ROW = SIDE * SIDE * CHANNELS  # 3072 values per image

# (module, name) pairs a CIFAR batch pickle may reference: numpy's array reconstruction, and
# _codecs.encode, with which Python 3 writes bytes under pickle protocol 2 (torch's weights_only
# unpickler admits it for the same reason)
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode")}


class UnsafePickle(EcholiteError):
    """A pickle asked for something the CIFAR-10 format never contains."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, bytes, str, numbers and numpy arrays/dtypes; nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickle(f"refusing to load {module}.{name}: not part of the CIFAR-10 format "
                           "(a crafted or foreign pickle; only trusted files can hold code)")


def load_pickle(path: Path) -> object:
    """Read one batch file with :class:`SafeUnpickler` (bytes keys kept, as in the official files)."""
    with open(path, "rb") as f:
        return SafeUnpickler(f, encoding="bytes").load()


def batches_dir(root: str | Path) -> Path:
    """``root`` itself if it holds the batch files, else ``root/cifar-10-batches-py``."""
    root = Path(root)
    return root / FOLDER if (root / FOLDER).is_dir() and not (root / META).exists() else root


@dataclass
class Batch:
    images: np.ndarray  # uint8 (N, 3, 32, 32)
    labels: np.ndarray  # int64 (N,)


def _check_batch(raw, path: Path, n_classes: int) -> Batch:
    """The images and labels of one unpickled batch; EcholiteError naming the file otherwise."""
    if not isinstance(raw, dict):
        raise EcholiteError(f"{path}: expected a dict, found {type(raw).__name__}")
    data, labels = raw.get(b"data"), raw.get(b"labels", raw.get(b"fine_labels"))
    if data is None or labels is None:
        found = ", ".join(repr(k) for k in list(raw)[:6])
        raise EcholiteError(f"{path}: no b'data' and b'labels' entries (found {found}); "
                            "keys must be bytes, as in the official files")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        got = f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
        raise EcholiteError(f"{path}: b'data' must be uint8 (N, {ROW}), got {got}")
    try:
        labels = np.asarray(labels)
    except ValueError:
        raise EcholiteError(f"{path}: b'labels' is not a flat list of integers") from None
    if labels.ndim != 1 or len(labels) != len(data):
        raise EcholiteError(f"{path}: {len(labels)} labels for {len(data)} images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise EcholiteError(f"{path}: labels must be integers, got {labels.dtype}")
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if len(bad):
        raise EcholiteError(f"{path}: label {int(labels[bad[0]])} of image {int(bad[0])} is outside "
                            f"0..{n_classes - 1} ({len(bad)} such labels)")
    return Batch(data.reshape(-1, CHANNELS, SIDE, SIDE), labels.astype(np.int64))


def read_meta(folder: Path) -> list[str]:
    path = folder / META
    raw = _load(path)
    names = raw.get(b"label_names") if isinstance(raw, dict) else None
    if not names:
        raise EcholiteError(f"{path}: no b'label_names' (the class names)")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _load(path: Path):
    if not path.is_file():
        raise EcholiteError(f"{path}: missing (a CIFAR-10 folder holds {', '.join(TRAIN_BATCHES)}, "
                            f"{TEST_BATCH}, {META})")
    try:
        return load_pickle(path)
    except UnsafePickle as err:
        raise EcholiteError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, MemoryError) as err:
        raise EcholiteError(f"{path}: not a readable pickle ({type(err).__name__}: {err}); "
                            "the file is truncated or not a CIFAR-10 batch") from None


def read_batch(path: Path, n_classes: int) -> Batch:
    return _check_batch(_load(path), path, n_classes)


@dataclass
class CifarData:
    classes: list[str]
    train: Batch  # data_batch_1..5 concatenated, in file order
    test: Batch


def read_cifar(root: str | Path) -> CifarData:
    """Read and check a CIFAR-10-layout folder (raises EcholiteError naming the first bad file)."""
    folder = batches_dir(root)
    classes = read_meta(folder)
    parts = [read_batch(folder / name, len(classes)) for name in TRAIN_BATCHES]
    train = Batch(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))
    return CifarData(classes, train, read_batch(folder / TEST_BATCH, len(classes)))


def validate(root: str | Path) -> Report:
    """Every problem of a CIFAR-10-layout folder once, each naming its file."""
    folder = batches_dir(root)
    report = Report(folder)
    try:
        classes = read_meta(folder)
    except EcholiteError as err:
        report.problems.append(Problem(str(folder / META), str(err).split(": ", 1)[-1],
                                       "restore the file from the CIFAR-10 archive"))
        return report
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        try:
            report.n_rows += len(read_batch(folder / name, len(classes)).labels)
        except EcholiteError as err:
            report.problems.append(Problem(str(folder / name), str(err).split(": ", 1)[-1],
                                           "restore the file from the CIFAR-10 archive"))
    return report


def stratified_split(labels: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, val) indices with VAL holding the class proportions of ``labels``."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts / counts.sum() * n_val
    take = np.floor(share).astype(int)
    for i in np.argsort(-(share - take))[: n_val - take.sum()]:  # largest remainders
        take[i] += 1
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)])
    val = np.sort(val)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def write_cifar(out: str | Path, images: np.ndarray, labels: np.ndarray, test_images: np.ndarray,
                test_labels: np.ndarray, classes: list[str], label: str) -> Path:
    """Write images in the official layout (protocol 2 pickles with bytes keys, 5 train batches)."""
    folder = Path(out) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    chunks = np.array_split(np.arange(len(labels)), len(TRAIN_BATCHES))
    for i, (name, idx) in enumerate(zip(TRAIN_BATCHES, chunks), 1):
        _dump(folder / name, {b"batch_label": f"training batch {i} of 5 ({label})".encode(),
                              b"labels": [int(v) for v in labels[idx]],
                              b"data": images[idx].reshape(len(idx), ROW),
                              b"filenames": [f"{label}_{j:05d}.png".encode() for j in idx]})
    _dump(folder / TEST_BATCH, {b"batch_label": f"testing batch 1 of 1 ({label})".encode(),
                                b"labels": [int(v) for v in test_labels],
                                b"data": test_images.reshape(len(test_labels), ROW),
                                b"filenames": [f"{label}_test_{j:05d}.png".encode()
                                               for j in range(len(test_labels))]})
    _dump(folder / META, {b"label_names": [c.encode() for c in classes],
                          b"num_cases_per_batch": int(len(chunks[0])), b"num_vis": ROW})
    return folder


def _dump(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    tmp.replace(path)
