"""Built-in classification data: scikit-learn's handwritten digits, written in the CIFAR-10 layout.

The digits (1,797 real 8×8 scans, 16 grey levels, 10 classes; UCI "Optical Recognition of
Handwritten Digits", shipped inside scikit-learn) are upsampled to 32×32 (bilinear), scaled to
0..255 and repeated over 3 channels, then split deterministically and stratified into TEST (1/6)
and five training batches, so the default classification run reads them with the very reader
real CIFAR-10 uses. The folder records where the images came from (``PROVENANCE.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from echolite.data.cifar import SIDE, stratified_split, write_cifar

TEST_FRACTION = 1 / 6
SEED = 0


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """uint8 (1797, 3, 32, 32) images and int labels from scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits  # heavy (about 1 s): only the digits writer needs scikit-learn

    digits = load_digits()
    small = (digits.images / 16.0 * 255.0).astype(np.float32)  # (N, 8, 8), 0..255
    big = np.stack([cv2.resize(im, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR) for im in small])
    big = np.clip(np.round(big), 0, 255).astype(np.uint8)
    return np.repeat(big[:, None], 3, axis=1), digits.target.astype(np.int64)


def write_digits(out: str | Path) -> Path:
    """Write the digits into ``out/cifar-10-batches-py``; returns that folder."""
    import sklearn  # heavy, as above

    images, labels = digits_images()
    train, test = stratified_split(labels, round(len(labels) * TEST_FRACTION), SEED)
    folder = write_cifar(out, images[train], labels[train], images[test], labels[test],
                         [str(d) for d in range(10)], "sklearn digits")
    provenance = {
        "source": "sklearn.datasets.load_digits (UCI Optical Recognition of Handwritten Digits)",
        "scikit_learn": sklearn.__version__, "images": int(len(labels)), "classes": 10,
        "transform": "8x8 grey, 0..16 -> x255/16 -> bilinear 32x32 -> 3 equal channels, uint8",
        "split": f"stratified, seed {SEED}: {len(test)} test_batch, {len(train)} in data_batch_1..5",
    }
    (Path(out) / "PROVENANCE.json").write_text(json.dumps(provenance, indent=1))
    return folder
