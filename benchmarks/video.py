"""Video adapter speed: decode + describe (stats describer) at 2 fps, per backend, as the adapter runs it.

Files: the bundled ``samples/video/shapes.mp4`` (10 s, 320x240) and a longer synthetic video generated into a
temporary directory (default 5 minutes, 640x480 at 25 fps, shapes appearing, moving and disappearing).
Decode time includes opening, seeking, scaling to ``max_side`` and RGB conversion; describe time is the
describer alone. "x real time" is media seconds per second of compute (target: >= 20 on 2 cores).

    python benchmarks/video.py [--minutes 5] [--size 640x480] [--src-fps 25] [--json benchmarks/results/video.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "video" / "shapes.mp4"


def long_scene(duration: float, seed: int = 0):
    """Shapes appearing every 1-6 s, staying 5-20 s, a quarter of them drifting sideways."""
    from adasr_mm.adapters.synthetic import SHAPE_COLOURS, SHAPES, Scene, ShapeEvent

    rng = random.Random(seed)
    events = []
    t = 1.0
    while t < duration - 5:
        events.append(ShapeEvent(round(t, 2), round(t + rng.uniform(5, 20), 2), rng.choice(SHAPES),
                                 rng.choice(SHAPE_COLOURS), rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85),
                                 0.15, vx=rng.choice([0.0, 0.0, 0.0, 0.02, -0.02])))
        t += rng.uniform(1, 6)
    return Scene(duration, events)


def run(path: Path, backend: str, fps: float, max_side: int) -> dict:
    from adasr_mm.adapters.video import VideoConfig, VideoSource

    src = VideoSource(path, VideoConfig(fps=fps, max_side=max_side, backend=backend, keep_frames=False))
    t0 = time.perf_counter()
    chunks = list(src)
    wall = time.perf_counter() - t0
    st = src.stats()
    media = st["video_media_s"]
    return {"file": path.name, "backend": backend, "media_s": round(media, 2), "frames": st["video_frames"],
            "chunks": len(chunks), "decode_s": round(st["video_decode_s"], 3),
            "describe_s": round(st["video_describe_s"], 3), "wall_s": round(wall, 3),
            "frames_per_s": round(st["video_frames"] / wall, 1), "x_realtime": round(media / wall, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="length of the generated video")
    ap.add_argument("--size", default="640x480", help="WxH of the generated video")
    ap.add_argument("--src-fps", type=int, default=25, help="frame rate of the generated video")
    ap.add_argument("--fps", type=float, default=2.0, help="sampling rate of the adapter")
    ap.add_argument("--max-side", type=int, default=320)
    ap.add_argument("--backends", default="decord,pyav")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "video.json"))
    args = ap.parse_args(argv)

    from adasr_mm.adapters.synthetic import render_scene

    w, h = (int(x) for x in args.size.lower().split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        long_path = Path(tmp) / f"generated_{args.minutes:g}min_{w}x{h}_{args.src_fps}fps.mp4"
        t0 = time.perf_counter()
        render_scene(long_scene(args.minutes * 60), long_path, size=(w, h), fps=args.src_fps)
        gen_s = time.perf_counter() - t0
        print(f"generated {long_path.name} ({long_path.stat().st_size / 1e6:.1f} MB) in {gen_s:.1f} s",
              file=sys.stderr)
        for path in (SAMPLE, long_path):
            for backend in args.backends.split(","):
                rows.append(run(path, backend, args.fps, args.max_side))

    cols = [("file", 34), ("backend", 7), ("media_s", 8), ("frames", 7), ("chunks", 6), ("decode_s", 9),
            ("describe_s", 10), ("frames_per_s", 12), ("x_realtime", 10)]
    print(" ".join(f"{c:>{n}}" for c, n in cols))
    for r in rows:
        print(" ".join(f"{r[c]!s:>{n}}" for c, n in cols))
    result = {"settings": {"fps": args.fps, "max_side": args.max_side, "describer": "stats",
                           "generated": {"minutes": args.minutes, "size": args.size, "src_fps": args.src_fps}},
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "processor": platform.processor() or platform.machine()},
              "rows": rows}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
