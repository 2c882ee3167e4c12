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


# -- on-policy distillation stage --------------------------------------------------------------------------------
def save_tiny(d: Path, embedded_dir, **kw) -> Path:
    from test_opd import tiny_lm

    model, tok = tiny_lm(embedded_dir, **kw)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_teacher_dir(tmp_path_factory, embedded_dir):
    return save_tiny(tmp_path_factory.mktemp("tiny-teacher"), embedded_dir, hidden=48, layers=3, seed=1)


TINY_OPD = ["opd.max_steps=3", "opd.save_steps=1", "opd.max_thought_tokens=4", "opd.max_deep_tokens=6",
            "opd.max_answer_tokens=3", "opd.learning_rate=1e-3", "train.n_train=4", "train.n_eval=0"]


def test_opd_stage_distils_with_checkpoints_metrics_plots_and_resumes(tiny_dir, tiny_teacher_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "adasr_mm", "train", "--modality", "text", "--stage", "opd", "--policy",
           str(tiny_dir), "--teacher", str(tiny_teacher_dir), "--opd-reward", "power", "--alpha", "0.05",
           "--output-dir", str(out), *TINY_OPD]
    one_thread = {**env(), "OMP_NUM_THREADS": "1"}  # tiny models: threads only add contention on a shared CPU
    r = subprocess.run(cmd, capture_output=True, text=True, env=one_thread, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    cks = sorted((out / "opd-checkpoints").glob("checkpoint-*"))
    assert [c.name for c in cks] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert (cks[-1] / "optimizer.pt").is_file() and (cks[-1] / "rng_state.pth").is_file()
    assert (out / "final" / "model.safetensors").is_file() and (out / "opd" / "tokenizer.json").is_file()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in rows if "opd/reward_mean" in x]
    assert [x["step"] for x in steps] == [1, 2, 3] and all(x["stage"] == "opd" for x in steps)
    assert all("grad_norm" in x and "opd/agreement" in x and "opd/deep_tokens" in x for x in steps)
    for png in ("opd.png", "grad_norm.png", "tokens.png", "accuracy.png"):
        assert (out / "plots" / png).stat().st_size > 5000, png
    opd = json.loads((out / "config.json").read_text())["opd"]
    assert (opd["reward"], opd["alpha"], opd["teacher"]) == ("power", 0.05, str(tiny_teacher_dir))

    # resume: lose the last checkpoint and the outputs, continue from checkpoint-2, land on the same weights
    done = weights(out / "final")
    import shutil

    for d in (cks[-1], out / "opd", out / "final"):
        shutil.rmtree(d)
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=one_thread, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    again = weights(out / "final")
    assert done.keys() == again.keys() and any(not torch.equal(done[k], weights(tiny_dir)[k]) for k in done)
    for k in done:
        assert torch.allclose(done[k], again[k], atol=1e-6), k


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stage", "opd"], "opd.teacher is required when the opd stage runs"),
        (["--stage", "opd", "--teacher", "x", "--opd-reward", "kl"], "unknown opd reward 'kl'; registered"),
        (["--stage", "opd", "--teacher", "x", "--alpha", "0"], "alpha must be > 0"),
        (["train.stages=rl,sft"], "sft, opd, rl in this order"),
        (["--stage", "opd", "--teacher", "/no/such/teacher", "train.n_train=2"], "teacher: policy directory"),
    ],
)
def test_bad_opd_inputs_are_clear(args, message):
    assert_clean_error(cli("train", "--modality", "text", *args), message)


def test_teacher_with_another_tokenizer_is_a_clean_error(tiny_dir, embedded_dir, tmp_path):
    other = save_tiny(tmp_path / "other", embedded_dir, seed=2, extra_tokens=("<|other|>",))
    r = cli("train", "--modality", "text", "--stage", "opd", "--policy", tiny_dir, "--teacher", other,
            "--output-dir", tmp_path / "run", *TINY_OPD)
    assert_clean_error(r, "does not share the student's tokenizer")
    assert "student vocabulary" in r.stderr and "teacher vocabulary" in r.stderr and "<|other|>" in r.stderr


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "configs" / "train").glob("*.yaml")))
def test_every_train_preset_loads_and_validates(preset):
    """The shipped presets are real configs: every key exists and every value passes its stage's checks."""
    from adasr_mm.training.config import load_train_config

    cfg = load_train_config(str(ROOT / "configs" / "train" / preset), [])
    assert cfg.train.stages and cfg.train.n_train >= 1
    if "opd" in cfg.train.stages:  # OPD presets keep the evaluation caps equal to the rollout caps
        assert (cfg.opd.max_thought_tokens, cfg.opd.max_deep_tokens) == (cfg.rl.max_thought_tokens,
                                                                          cfg.rl.max_deep_tokens)


EVAL_CAPS = ["rl.max_thought_tokens=6", "rl.max_deep_tokens=10", "rl.max_answer_tokens=6"]


@pytest.mark.slow
def test_eval_reports_the_library_numbers_on_the_held_out_split(embedded_dir, tmp_path):
    """`adasr-mm eval` on the real bundled model: its table/JSON are evaluate() on the test split, caps from the
    config; greedy decoding makes both runs identical (delay is wall-clock dependent and left out)."""
    from adasr_mm.training.config import load_train_config
    from adasr_mm.training.evaluate import evaluate
    from adasr_mm.training.pipeline import load_run_samples

    out = tmp_path / "eval.json"
    r = cli("eval", "--checkpoint", embedded_dir, "--n", "2", "--mode", "stream", "--baseline", "",
            "--output", out, *EVAL_CAPS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "eval on 2 held-out text streams" in r.stdout and "| trained/stream |" in r.stdout
    got = json.loads(out.read_text())
    assert [k for k in got if "/" in k] == ["trained/stream"]
    assert [r["id"] for r in got["per_sample"]["trained/stream"]] == ["wp-1000000", "wp-1000001"]
    cfg = load_train_config(None, EVAL_CAPS)
    test = load_run_samples(cfg, "test", 2)
    assert [s.id for s in test] == ["wp-1000000", "wp-1000001"]
    want = evaluate(str(embedded_dir), test, cfg, "stream")
    for k in ("accuracy", "format", "format_violations", "stream_tokens", "deep_tokens", "skip_rate", "n"):
        assert got["trained/stream"][k] == pytest.approx(want[k]), k
    assert 0 < got["trained/stream"]["total_tokens"] <= 2 * 6 * 8 + 10 + 6
    assert got["meta"]["split"] == "test"
    val = tmp_path / "val.json"  # the validation split: other streams, named as such in table and JSON
    r = cli("eval", "--checkpoint", embedded_dir, "--n", "1", "--mode", "stream", "--baseline", "",
            "--split", "validation", "--output", val, *EVAL_CAPS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "eval on 1 held-out text streams (validation split)" in r.stdout
    got = json.loads(val.read_text())
    assert [r["id"] for r in got["per_sample"]["trained/stream"]] == ["wp-2000000"]
    assert got["meta"]["split"] == "validation"


def test_eval_bad_inputs_are_clean_errors(tmp_path):
    assert_clean_error(cli("eval", "--checkpoint", tmp_path / "nope"), "is not a directory")
    assert_clean_error(cli("eval", "--checkpoint", tmp_path, "--n", "0"), "--n must be >= 1")
    assert_clean_error(cli("eval", "--checkpoint", tmp_path, "--n", "1", "--baseline", ""),
                       "neither a model directory (config.json) nor a PEFT adapter directory")
