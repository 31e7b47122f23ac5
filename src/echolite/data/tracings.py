"""Left-ventricular volume from EchoNet-style tracings by the (monoplane) method of disks.

A traced frame in VolumeTracings.csv is 21 rows: the first row is the long axis (apex -> centre
of the mitral plane), the next 20 rows are chords perpendicular to it, from apex to mitral plane.
Each row holds the two end points (X1, Y1) and (X2, Y2) in pixels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_DISKS = 20  # chords per traced frame, as in EchoNet-Dynamic


def disk_volume(coords: np.ndarray, cm_per_pixel: float = 1.0) -> float:
    """Volume (cm^3 = mL when ``cm_per_pixel`` is right) of one traced frame.

    Args:
        coords: float array (1 + N_DISKS, 4) of X1, Y1, X2, Y2; row 0 is the long axis.
        cm_per_pixel: isotropic pixel spacing.

    Returns:
        V = pi/4 * sum_i d_i^2 * (L / N), with d_i the chord lengths and L the long-axis length.
    """
    coords = np.asarray(coords, dtype=np.float64)
    axis, chords = coords[0], coords[1:]
    length = np.hypot(axis[2] - axis[0], axis[3] - axis[1]) * cm_per_pixel
    diameters = np.hypot(chords[:, 2] - chords[:, 0], chords[:, 3] - chords[:, 1]) * cm_per_pixel
    return float(np.pi / 4.0 * np.sum(diameters**2) * length / len(chords))


def ef_from_tracings(tracings: pd.DataFrame) -> pd.Series:
    """EF (%) of every video in a VolumeTracings table, from the larger and smaller traced volume.

    Pixel spacing cancels in the ratio, so EF needs no calibration.

    Returns:
        Series indexed by FileName (as written in the table, usually with ``.avi``).
    """
    ef = {}
    for name, rows in tracings.groupby("FileName", sort=False):
        volumes = [
            disk_volume(frame_rows[["X1", "Y1", "X2", "Y2"]].to_numpy())
            for _, frame_rows in rows.groupby("Frame", sort=False)
        ]
        if len(volumes) < 2:
            continue
        ef[name] = 100.0 * (1.0 - min(volumes) / max(volumes))
    return pd.Series(ef, name="EF_tracings", dtype=float)
