# Vendored unchanged from ../shared/tools/cifar_check.py (the team's independent checker of the
# official CIFAR-10 layout), so the tests can run it on a clean clone.
"""Check of a folder in the official CIFAR-10 python layout (spec: cs.toronto.edu/~kriz/cifar.html).
data_batch_1..5 + test_batch: pickled dicts with b'data' uint8 (N, 3072) and b'labels' list of N ints in [0, 10);
batches.meta with b'label_names' (10 names). Prints 'ok: N train, M test, K classes' last.
Usage: python cifar_check.py DIR   (DIR or DIR/cifar-10-batches-py)"""
import pathlib, pickle, sys
import numpy as np

d = pathlib.Path(sys.argv[1])
if (d / "cifar-10-batches-py").is_dir():
    d = d / "cifar-10-batches-py"
names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
n = {}
for name in names:
    p = d / name
    if not p.is_file():
        sys.exit(f"FAIL: {name} missing")
    with open(p, "rb") as f:
        b = pickle.load(f, encoding="bytes")
    x, y = b.get(b"data"), b.get(b"labels")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        sys.exit(f"FAIL: {name} data is {type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}")
    if len(y) != len(x) or min(y) < 0 or max(y) > 9:
        sys.exit(f"FAIL: {name} labels")
    n[name] = len(x)
with open(d / "batches.meta", "rb") as f:
    meta = pickle.load(f, encoding="bytes")
k = len(meta.get(b"label_names", []))
if k != 10:
    sys.exit(f"FAIL: batches.meta has {k} label names")
print(f"ok: {sum(v for k_, v in n.items() if k_ != 'test_batch')} train, {n['test_batch']} test, {k} classes")
