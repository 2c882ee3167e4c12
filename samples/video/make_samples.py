"""Regenerate the video fixtures in samples/video/ (deterministic; PyAV only, no ffmpeg binary).

    .venv/bin/python samples/video/make_samples.py    # shapes_speech.mp4 needs `apt-get install espeak-ng`

Writes shapes.mp4 (10 s, 320x240, 10 fps, silent), shapes_speech.mp4 (the same kind of scene with a spoken
question as its AAC soundtrack) and samples.json (question, answer and the ground-truth events of each file).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from adasr_mm.adapters.synthetic import Scene, ShapeEvent, render_scene, scene_questions

HERE = Path(__file__).resolve().parent
SIZE, FPS = (320, 240), 10
L, C, R = 1 / 6, 1 / 2, 5 / 6  # 3x3 grid cell centres
SPEECH = "Watch the shapes. Count the red circles."


def shapes_scene() -> Scene:
    events = [
        ShapeEvent(1.0, None, "circle", "red", L, L, 0.22),
        ShapeEvent(2.5, 8.5, "square", "blue", C, C, 0.22),
        ShapeEvent(4.0, None, "triangle", "green", R, R, 0.24),
        ShapeEvent(5.5, None, "circle", "red", R, L, 0.2),
        ShapeEvent(7.0, None, "square", "yellow", L, R, 0.2),
    ]
    return Scene(10.0, events, "white", scene_questions(events))


def speech_scene() -> Scene:
    events = [
        ShapeEvent(1.5, None, "circle", "red", C, L, 0.2),
        ShapeEvent(3.0, None, "square", "purple", L, C, 0.22),
        ShapeEvent(4.5, None, "circle", "red", R, R, 0.2),
        ShapeEvent(6.0, None, "triangle", "orange", C, C, 0.24),
        ShapeEvent(7.5, None, "circle", "red", R, L, 0.2),
    ]
    return Scene(10.0, events, "white", scene_questions(events))


def speak(text: str, tmp: Path) -> tuple[np.ndarray, int]:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
    audio, sr = sf.read(wav, dtype="float32", always_2d=False)
    return audio, int(sr)


def entry(scene: Scene, question: str) -> dict:
    answer = dict(scene.qa)[question]
    return {"question": question, "answer": answer, "duration": scene.duration, "background": scene.background,
            "events": scene.to_dict()["events"], "qa": [list(q) for q in scene.qa]}


def main() -> None:
    q = "How many red circles appeared?"
    shapes = shapes_scene()
    render_scene(shapes, HERE / "shapes.mp4", size=SIZE, fps=FPS)
    speech = speech_scene()
    with tempfile.TemporaryDirectory() as tmp:
        audio, sr = speak(SPEECH, Path(tmp))
    pad = np.zeros(int(0.3 * sr), np.float32)  # start speaking 0.3 s in; silence to the end of the video
    audio = np.concatenate([pad, audio, np.zeros(max(0, int(speech.duration * sr) - len(audio) - len(pad)),
                                                 np.float32)])
    render_scene(speech, HERE / "shapes_speech.mp4", size=SIZE, fps=FPS, audio=audio, sample_rate=sr)
    meta = {"shapes.mp4": entry(shapes, q),
            "shapes_speech.mp4": {**entry(speech, q), "transcript": SPEECH, "speech_start_s": 0.3}}
    (HERE / "samples.json").write_text(json.dumps(meta, indent=1) + "\n")
    for name in meta:
        print(f"{name}: {(HERE / name).stat().st_size / 1024:.0f} KB, answer {meta[name]['answer']}")


if __name__ == "__main__":
    main()
