"""Re-encode an echo video as another machine might record it: MP4 (mp4v), another size, another
frame rate, in colour (a sepia-like tint with unequal channels) — to check that `echolite predict`
reads any video as training read its AVIs.

    python tools/echo_to_mp4.py IN.avi OUT.mp4 [--size 224] [--fps 30]

Frames are resampled in time by nearest frame (the heart keeps its speed in seconds).
"""

import argparse

import cv2
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--fps", type=float, default=30.0)
    args = p.parse_args()
    cap = cv2.VideoCapture(args.src)
    fps_in = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    cap.release()
    if not frames or not fps_in > 0:
        raise SystemExit(f"{args.src}: no frames or no frame rate")
    duration = len(frames) / fps_in
    picks = np.minimum(np.round(np.arange(0, duration, 1 / args.fps) * fps_in).astype(int), len(frames) - 1)
    tint = np.array([0.75, 0.95, 1.15])  # B, G, R gains
    out = cv2.VideoWriter(args.dst, cv2.VideoWriter_fourcc(*"mp4v"), args.fps, (args.size, args.size), True)
    for i in picks:
        grey = cv2.resize(frames[i], (args.size, args.size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        out.write(np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8))
    out.release()
    print(f"{args.dst}: {len(picks)} frames at {args.fps:g} fps, {args.size}x{args.size}, colour "
          f"(from {len(frames)} frames at {fps_in:g} fps)")


if __name__ == "__main__":
    main()
