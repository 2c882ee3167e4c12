"""The CLI as a user runs it: a subprocess, its exit code, stdout/stderr."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "text" / "apples.txt"


def cli(*args, cwd=None, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "adasr_mm", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def assert_clean_error(r, message):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("adasr-mm: error:"), r.stderr
    assert message in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.txt").write_text("")
    (d / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (d / "song.xyz").write_text("la la la")
    (d / "bad.yaml").write_text("policy:\n  max_thought_tokenz: 3\n")
    (d / "badval.yaml").write_text("policy:\n  temperature: hot\n")
    return d


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.txt"], "input file 'missing.txt' does not exist"),
        (["{d}/empty.txt"], "is empty: there is no text to stream"),
        (["{d}/binary.txt"], "is a binary file, not UTF-8 text"),
        (["{d}/song.xyz"], "cannot tell the modality of"),
        ([str(SAMPLE), "--modality", "smell"], "unknown modality 'smell'; available: auto, text"),
        ([str(SAMPLE), "--config", "{d}/bad.yaml"], "unknown config key policy.max_thought_tokenz"),
        ([str(SAMPLE), "--config", "{d}/badval.yaml"], "policy.temperature: expected a number, got 'hot'"),
        ([str(SAMPLE), "--max-thought-tokens", "-3"], "max_thought_tokens must be >= 1"),
        ([str(SAMPLE), "policy.bogus=1"], "unknown config key policy.bogus"),
        ([str(SAMPLE), "--policy", "no-such-org/no-such-model-xyz"], "cannot load policy 'no-such-org/no-such-model"),
        ([str(SAMPLE), "--policy", "/no/such/dir"], "policy directory '/no/such/dir' does not exist"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(bad_inputs, args, message):
    args = [a.replace("{d}", str(bad_inputs)) for a in args]
    r = cli("run", *args, "--question", "How many?")
    assert_clean_error(r, message)


def test_overrides_also_follow_the_flags():
    """``run IN -q Q section.key=value``: the override is read (here rejected for its value), not refused as an
    unknown argument; a stray word or flag still is."""
    assert_clean_error(cli("run", SAMPLE, "-q", "Q?", "asr.min_chunk_s=-1"), "min_chunk_s must be > 0, got -1.0")
    for stray in ("extra", "--bogus"):
        r = cli("run", SAMPLE, "-q", "Q?", stray)
        assert r.returncode == 2 and f"unrecognized arguments: {stray}" in r.stderr


def test_supported_types_are_named_for_unknown_files(bad_inputs):
    r = cli("run", bad_inputs / "song.xyz", "-q", "Q?")
    assert "supported: text (.txt, .text, .md)" in r.stderr


def test_debug_shows_the_traceback(bad_inputs):
    r = cli("--debug", "run", bad_inputs / "empty.txt", "-q", "Q?")
    assert r.returncode != 0 and "Traceback" in r.stderr and "InputError" in r.stderr


def test_missing_question_is_a_usage_error():
    r = cli("run", SAMPLE)
    assert r.returncode == 2 and "--question" in r.stderr


@pytest.mark.slow
def test_run_prints_a_live_trace_and_writes_jsonl(tmp_path):
    out = tmp_path / "sub" / "events.jsonl"
    r = cli("run", SAMPLE, "--question", "How many apples does Tom have now?", "--output", out,
            "--max-thought-tokens", "12", "--max-deep-tokens", "40", "--max-answer-tokens", "12")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    types = [x["type"] for x in lines]
    assert types[-1] == "summary" and types[-2] == "answer" and types[-3] == "deep"
    n_chunks = types.count("chunk")
    # every chunk is answered by a thought/skip (one may cover several chunks read together when the policy fell
    # behind) or read with the end-of-stream marker right before the deep phase
    covered = sum(x.get("group", 1) for x in lines if x["type"] in ("thought", "skip"))
    last_response = max((i for i, t in enumerate(types) if t in ("thought", "skip")), default=-1)
    assert n_chunks == 6 and covered + types[last_response + 1 :].count("chunk") == n_chunks
    s = lines[-1]
    for key in ("answer", "mode", "chunks", "skips", "stream_tokens", "deep_tokens", "input_tokens",
                "prefill_tokens", "delay_s", "lag_s"):
        assert key in s, key
    assert s["prefill_tokens"] == s["input_tokens"] and s["mode"] == "stream" and s["clock"] == "simulated"
    # the human trace shows every chunk text with its time span, and the answer
    assert "Tom has 5 apples in his basket." in r.stdout and "[   0.0–   2.8s]" in r.stdout
    assert "answer:" in r.stdout and "summary:" in r.stdout
