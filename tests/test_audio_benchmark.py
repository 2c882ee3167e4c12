"""benchmarks/audio.py's offline-spread report: pooled per shift, over the same files as the WER ratios."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

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
    # each shifted run scored against the unshifted one by the targets' two criteria: pooled 2 / 1 and 3 / 1
    # errors; per file only the second row counts (offline reads the first perfectly): 1 / 1 and 3 / 1 errors
    assert sp["self_ratio_by_shift_ms"] == {"10": 2.0, "20": 3.0}
    assert sp["self_max_file_ratio_by_shift_ms"] == {"10": 1.0, "20": 3.0}
    assert bench.offline_spread(rows, "kit-approx") is None


def test_no_spread_without_shifted_runs() -> None:
    rows = [{"group": "kit", "reference": "a b", "offline_text": "a b", "offline_wer": 0.0}]
    assert bench.offline_spread(rows, "kit") is None


def _audio_context():
    """benchmarks/audio_context.py (it imports its sibling audio.py, so the folder goes on the path while loading)."""
    import sys

    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, folder)
    try:
        import audio_context
    finally:
        sys.path.remove(folder)
    return audio_context


def test_oracle_cuts_fall_mid_gap_after_a_pause_or_a_sentence_end() -> None:
    from adasr_mm.adapters.asr import Word

    words = [Word(0.0, 0.4, " Tom"), Word(0.45, 0.8, " has"), Word(1.4, 1.8, " five."), Word(1.85, 2.1, " He"),
             Word(2.15, 2.5, " eats")]
    # 0.6 s of silence after "has" (a pause), "five." ends a sentence with 0.05 s after it, the last word ends it
    cuts = _audio_context().cuts
    got = cuts(words, 0.2)
    assert [end for end, _ in got] == [0.8, 1.8, 2.5]
    assert [b for _, b in got] == pytest.approx([1.1, 1.825, float("inf")])
    assert cuts([], 0.2) == []


def test_the_oracle_with_lookahead_past_the_end_is_offline_word_for_word() -> None:
    """Every segment decoded with the whole file after it is the offline decode: the cuts must then hand each
    offline word to exactly one segment (none dropped at a boundary, none taken twice)."""
    from adasr_mm.adapters.asr import ASRConfig, load_whisper, transcribe_offline, words_text
    from adasr_mm.adapters.audio_io import TARGET_SR, load_audio

    ctx = _audio_context()
    model = load_whisper("tiny.en", "cpu", "auto", 1)
    cfg = ASRConfig(cpu_threads=1)
    audio = load_audio(Path(__file__).resolve().parents[1] / "samples" / "audio" / "pauses.flac")
    offline = transcribe_offline(model, audio, cfg)
    segs = ctx.cuts(offline, 0.2)
    assert len(segs) >= 3
    assert ctx.lookahead_decode(model, audio, cfg, segs, 60.0, TARGET_SR) == words_text(offline)


def test_the_plot_reads_each_oracle_by_lookahead_and_each_stream_at_its_latency(tmp_path: Path) -> None:
    ctx = _audio_context()
    summary = {"offline": {"errors": 10, "ratio": 1.0, "latency_avg_s": None},
               "oracle, lookahead 2 s": {"ratio": 1.2, "latency_avg_s": None},
               "oracle, lookahead 0.5 s": {"ratio": 1.5, "latency_avg_s": None},
               "stream fixed-1": {"ratio": 1.4, "latency_avg_s": 1.7}}
    assert ctx.curves(summary) == ([(0.5, 1.5), (2.0, 1.2)], {"fixed-1": (1.7, 1.4)})
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"asr": "tiny.en", "summary": {
        k: {**v, "max_file_ratio": v["ratio"]} for k, v in summary.items()}}))
    assert ctx.main(["--plot", str(run), "--png", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_the_audio_plot_draws_a_stored_run(tmp_path: Path) -> None:
    """From a stored JSON alone (no kit, no model): the settings' points and offline's band against itself."""
    rows = [row("kit", "a b c d", "a b c x", {"10": "a b x x"}, 0.25)]
    spread = {"kit": bench.offline_spread(rows, "kit")}
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"asr": "base", "date": "2026-12-05 10:00:00", "offline_spread": spread, "summary": {
        "kit": {"ours t1": {"ratio": 1.4, "max_file_ratio": 1.8, "commit_latency_avg_s": 1.8}},
        "kit-nonspeech": {"ours t1": {"ratio": None, "commit_latency_avg_s": None}}}}))
    assert bench.main(["--plot", str(run), str(run), "--png", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_the_spread_table_reads_a_kit_offline_transcribes_perfectly() -> None:
    """No ratio exists when offline makes no error at all: '-' instead of a division by zero."""
    rows = [row("kit", "a b", "a b", {"10": "a b"}, 0.0)]
    spread = {"kit": bench.offline_spread(rows, "kit")}
    lines = bench.spread_lines(spread, {"kit": {"ours t1": {"stream_wer": 0.5}}})
    assert lines[-1].endswith("| 0.000 - 0.000 | -, - | - (ours t1) |")


def test_repeated_runs_report_each_targets_range_and_how_many_runs_meet_it() -> None:
    """``--repeat``: the runs of one setting are pooled by label, a single-run setting and a group without the
    figure are left out, a run exactly at a target counts as meeting it, and the result is plain JSON."""
    def fig(ratio: float | None, mfr: float | None, rtf: float, lat_max: float) -> dict:
        return {"ratio": ratio, "max_file_ratio": mfr, "rtf": rtf, "commit_latency_avg_s": 1.7,
                "commit_latency_max_s": lat_max, "hallucinated_chunks": 0}

    summary = {"kit": {"ours t1": fig(1.07, 1.4, 0.176, np.float64(5.02)),
                       "old-default t1": fig(1.0, 1.3, 0.55, 11.3),
                       "ours t1 #2": fig(1.02, 1.3, 0.161, 4.16), "ours t1 #3": fig(1.12, 1.2, 0.21, 3.9)},
               "kit-nonspeech": {"ours t1": fig(None, None, 0.02, 0.0), "ours t1 #2": fig(None, None, 0.01, 0.0)}}
    reps = bench.repeats(summary)
    assert list(reps["kit"]) == ["ours t1"]
    kit = reps["kit"]["ours t1"]
    assert (kit["ratio"]["min"], kit["ratio"]["max"], kit["ratio"]["met"]) == (1.02, 1.12, 2)
    assert kit["max_file_ratio"]["met"] == 2 and kit["commit_latency_max_s"]["met"] == 2
    assert kit["rtf"]["met"] == 2 and kit["hallucinated_chunks"]["met"] == 3
    assert "ratio" not in reps["kit-nonspeech"]["ours t1"]
    assert json.loads(json.dumps(reps)) == reps  # stored with the run (latencies come as numpy floats)
    lines = bench.repeat_lines(reps)
    assert lines[2].startswith("| kit | ours t1 (3) | 1.02 - 1.12, 2/3 | 1.2 - 1.4, 2/3 |")
    assert lines[3].startswith("| kit-nonspeech | ours t1 (2) | - | - | 0.01 - 0.02, 2/2 |")


def test_a_numeral_read_digit_by_digit_is_not_a_hallucinated_chunk() -> None:
    # the kit's vosk digits: Whisper writes the spoken code as numerals, which share no word with the reference
    ref = "one zero zero zero one nine oh two one oh zero one eight zero three"
    assert bench.hallucinated(["1,001", "90210", "01803"], ref) == 0
    # an invented sentence, and an invented number whose digits were not spoken, still count
    assert bench.hallucinated(["Thank you.", "90210", "4567"], ref) == 2
    assert bench.hallucinated(["Thank you."], "") == 1
