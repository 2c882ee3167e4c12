"""benchmarks/audio.py's offline-spread report: pooled per shift, over the same files as the WER ratios."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("bench_audio", Path(__file__).resolve().parents[1] / "benchmarks"
                                              / "audio.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def row(group: str, ref: str, off: str, shifted: dict[str, str], offline_wer: float) -> dict:
    return {"group": group, "reference": ref, "offline_text": off, "offline_wer": offline_wer,
            "offline_shifted": shifted}


def test_offline_spread_pools_each_shift_over_the_ratio_files() -> None:
    rows = [row("kit", "a b c d", "a b c d", {"10": "a b x d", "20": "a b c d"}, 0.0),
            row("kit", "e f g h", "e f g y", {"10": "e f g y", "20": "e z z y"}, 0.25),
            # offline fails here (WER > 0.3): left out of the ratios, so out of the spread too
            row("kit", "i j", "k l", {"10": "i j", "20": "i j"}, 1.0),
            row("samples", "m n", "m n", {"10": "x x", "20": "x x"}, 0.0)]
    sp = bench.offline_spread(rows, "kit")
    assert sp["wer_by_shift_ms"] == {"0": 1 / 8, "10": 2 / 8, "20": 3 / 8}
    assert (sp["min"], sp["max"]) == (1 / 8, 3 / 8)
    assert abs(sp["mean"] - 0.25) < 1e-9
    assert bench.offline_spread(rows, "kit-approx") is None


def test_no_spread_without_shifted_runs() -> None:
    rows = [{"group": "kit", "reference": "a b", "offline_text": "a b", "offline_wer": 0.0}]
    assert bench.offline_spread(rows, "kit") is None
