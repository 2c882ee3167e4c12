"""The shipped default policy: small, loaded by default, and still as accurate as its recorded eval.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adasr_mm.models import default_policy_dir, is_adapter_dir, resolve_policy_path

ROOT = Path(__file__).resolve().parents[1]
N_CHECK = 16  # held-out streams re-evaluated here (of the 32 in eval.json): ~1 min on 2 cores


def _recorded(name: str = "eval.json") -> dict:
    return json.loads((default_policy_dir() / name).read_text())


def test_shipped_adapter_is_small_and_the_default():
    d = default_policy_dir()
    assert is_adapter_dir(d)
    assert sum(p.stat().st_size for p in d.iterdir()) <= 8_000_000
    assert resolve_policy_path(None) == resolve_policy_path("default") == str(d)
    assert resolve_policy_path("base") != str(d)


def test_loading_the_default_policy_warns_nothing():
    """Every ``adasr-mm run`` loads it: a library's deprecation notice there is noise the user cannot act on."""
    import warnings

    from adasr_mm.models import load_causal_lm

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_causal_lm(None)
    assert not [f"{w.category.__name__}: {w.message}" for w in caught
                if issubclass(w.category, (FutureWarning, DeprecationWarning))]


@pytest.mark.slow
@pytest.mark.parametrize("recorded", ["eval.json", "eval-asr-style.json", "eval-recall.json"])
def test_shipped_adapter_keeps_its_recorded_held_out_accuracy(recorded: str):
    """Re-run the first held-out streams of ``eval.json`` (same data, caps and greedy decoding): accuracy and
    answers must match what was recorded when the adapter was trained, so a change that breaks the policy (the
    loader, the protocol, the session) fails here. ``eval-asr-style.json``: the same streams with every chunk as
    streaming ASR may write it (no closing mark, lower case, number words), which the policy was trained to read.
    ``eval-recall.json``: fact-recall streams (``builtin:recall``), answered with a word of the stream."""
    from adasr_mm.training.asr_style import asr_style_sample
    from adasr_mm.training.config import load_train_config
    from adasr_mm.training.evaluate import evaluate
    from adasr_mm.training.pipeline import load_run_samples

    rec = _recorded(recorded)
    meta = rec["meta"]
    caps = dict(zip(("max_thought_tokens", "max_deep_tokens", "max_answer_tokens"), meta["caps"], strict=True))
    cfg = load_train_config(None, [f"train.data={meta['data']}", f"train.modality={meta['modality']}",
                                   *(f"rl.{k}={v}" for k, v in caps.items()),
                                   f"adapters.policy.calculator={meta['calculator']}"])
    samples = load_run_samples(cfg, "test", N_CHECK)
    if meta.get("asr_style"):
        samples = [asr_style_sample(s, s.chunks, meta["asr_style_seed"], meta["asr_style"]) for s in samples]
    want = rec["per_sample"]["trained/stream"][:N_CHECK]
    assert [s.id for s in samples] == [r["id"] for r in want]
    rows: list[dict] = []
    got = evaluate("default", samples, cfg, "stream", rows)
    recorded_acc = sum(r["accuracy"] for r in want) / len(want)
    assert got["accuracy"] == pytest.approx(recorded_acc, abs=2 / N_CHECK)
    same = sum(a["answer"] == b["answer"] for a, b in zip(rows, want, strict=True))
    assert same >= N_CHECK - 2, [(a["answer"], b["answer"]) for a, b in zip(rows, want, strict=True)]
    # the untrained base scores 0 here; session 35's adapter 4/16 where its eval.json was recorded, 3/16 on
    # another 2-core Xeon (one greedy answer differs there, cause not pinned down: the same with either clock,
    # transformers 5.24 or 5.25, peft 0.20-0.21, 1 or 2 threads), which the tolerance above allows; a fixed 0.2
    # floor did not
    assert got["accuracy"] > 0
