"""`adasr-mm train` / `eval` / `prepare` as a user runs them, on a tiny random model (fast) where possible."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_cli import assert_clean_error, cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, embedded_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("tiny-policy")
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(embedded_dir)
    conf = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       tie_word_embeddings=True)
    LlamaForCausalLM(conf).save_pretrained(d)
    tok.save_pretrained(d)
    return d


TINY_RL = ["rl.max_steps=4", "rl.save_steps=1", "rl.num_generations=2", "rl.max_thought_tokens=4",
           "rl.max_deep_tokens=6", "rl.max_answer_tokens=3", "train.n_train=4", "train.n_eval=0",
           "rl.learning_rate=1e-3"]


def train_cmd(tiny_dir, out, *extra):
    return [sys.executable, "-m", "adasr_mm", "train", "--modality", "text", "--stage", "rl", "--policy",
            str(tiny_dir), "--output-dir", str(out), *TINY_RL, *extra]


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "NO_COLOR": "1"}


def weights(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(d / "model.safetensors"))


def test_train_writes_checkpoints_metrics_and_plots(tiny_dir, tmp_path):
    out = tmp_path / "run"
    r = subprocess.run(train_cmd(tiny_dir, out), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "tokenizer.json").is_file()
    ck = sorted((out / "rl-checkpoints").glob("checkpoint-*"))
    assert len(ck) == 4 and (ck[-1] / "optimizer.pt").is_file() and (ck[-1] / "rng_state.pth").is_file()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in rows if "hrpo/stream_tokens" in x]
    assert steps == [1, 2, 3, 4]
    for png in ("rewards.png", "tokens.png", "accuracy.png"):
        assert (out / "plots" / png).stat().st_size > 5000, png
    assert json.loads((out / "config.json").read_text())["rl"]["advantage"] == "hrpo"


def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_dir, tmp_path):
    full = tmp_path / "full"
    r = subprocess.run(train_cmd(tiny_dir, full), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    cut = tmp_path / "cut"
    p = subprocess.Popen(train_cmd(tiny_dir, cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    deadline = time.time() + 300
    while time.time() < deadline and not (cut / "rl-checkpoints" / "checkpoint-2" / "trainer_state.json").is_file():
        time.sleep(0.05)
    time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (cut / "final").exists(), "the run finished before it could be killed"
    r = subprocess.run(train_cmd(tiny_dir, cut, "--resume"), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((cut / "rl-checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    a, b = weights(full / "final"), weights(cut / "final")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


@pytest.mark.parametrize(
    "args, message",
    [
        (["--modality", "text", "train.n_train=0"], "n_train >= 1"),
        (["--modality", "text", "rl.advantage=ppo"], "unknown advantage 'ppo'"),
        (["--modality", "text", "reward.w_deep=0.1"], "w_deep > w_stream"),
        (["--modality", "text", "--config", "/no/such.yaml"], "does not exist"),
        (["--modality", "text", "train.data=/no/such.jsonl"], "no/such.jsonl"),
    ],
)
def test_bad_train_inputs_are_clear(args, message):
    assert_clean_error(cli("train", *args), message)


def test_empty_dataset_and_mismatched_modality(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_clean_error(cli("train", "--modality", "text", f"train.data={empty}"), "no samples")
    wrong = tmp_path / "audio.jsonl"
    wrong.write_text(json.dumps({"question": "Q?", "answer": "1", "audio": "x.wav"}) + "\n")
    assert_clean_error(cli("train", "--modality", "text", f"train.data={wrong}"), "modality")
