"""Training data: seeded built-in tasks, user data loaders, StreamingThinker traces, answer checking, chunk caching."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from adasr_mm.adapters.text import segment_text
from adasr_mm.config import load_config
from adasr_mm.errors import ConfigError, InputError
from adasr_mm.training import tasks
from adasr_mm.training.data import check_answer, load_samples, load_streamingthinker_traces
from adasr_mm.training.prepare import BUILTIN_PREPARE_N, add_prepare_args, prepare, run_prepare
from adasr_mm.training.sample import Sample
from adasr_mm.training.tasks import (
    bundled_spoken_samples,
    bundled_video_samples,
    make_word_problem,
    spoken_word_problems,
    video_problems,
    word_problems,
)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
THOUGHT = re.compile(r"(\d+) ([+\-*/]) (\d+) = (\d+) (.+)\.")

#: sha256 of (question, context, answer) of word_problems("train", 5), standard level, as generated since issue 2
STANDARD_TRAIN_5_SHA256 = "dd4663b6e48bb346ef15cb1c6a4482a8f89064cc06bc502b80ab950e8295574b"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADASR_MM_CACHE", str(tmp_path / "cache"))


# -- word problems ---------------------------------------------------------------------------------------------
def test_word_problems_are_a_pure_function_of_the_seed():
    for seed in (0, 7, 123, 1_000_003):
        assert make_word_problem(seed).to_dict() == make_word_problem(seed).to_dict()
    texts = {make_word_problem(s).context for s in range(50)}
    assert len(texts) == 50


def _replay_teacher(s: Sample) -> int:
    """Recompute the answer from the reference thoughts alone (no generator code)."""
    thoughts = [t for t in s.teacher if t is not None]
    m = re.fullmatch(r"Starts with (\d+) (.+)\.", thoughts[0])
    assert m, thoughts[0]
    value, obj = int(m.group(1)), m.group(2)
    for t in thoughts[1:]:
        m = THOUGHT.fullmatch(t)
        assert m, t
        before, op, k, claimed = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        assert before == value, f"{s.id}: {t} does not continue from {value}"
        if op == "/":
            assert value % k == 0, f"{s.id}: {value} / {k} is not whole"
        value = {"+": value + k, "-": value - k, "*": value * k, "/": value // k}[op]
        assert value == claimed and m.group(5) == obj, f"{s.id}: {t}"
    return value


@pytest.mark.parametrize("split", ["train", "test"])
def test_answers_follow_from_teacher_thoughts_meta_and_deep_steps(split):
    for s in word_problems(split, 150):
        answer = int(s.answer)
        assert 0 < answer < 1000
        assert _replay_teacher(s) == answer
        value = s.meta["start"]  # second, independent route: the recorded operations
        for op, k in s.meta["ops"]:
            value = {"+": value + k, "-": value - k, "*": value * k, "/": value // k}[op]
            assert 0 < value < 1000
        assert value == answer
        assert s.teacher_rtt.endswith(f"= {answer}.") and s.teacher_rtt.startswith(f"Starts with {s.meta['start']} ")
        assert f" {answer} " in s.teacher_deep  # the deep phase reads the total off the stream's last thought
        assert check_answer(s.answer, str(answer))


def test_easy_level_is_a_smaller_task_with_its_own_ids():
    easy = word_problems("train", 200, level="easy")
    assert all(s.id == f"wp-easy-{s.meta['seed']}" and s.meta["level"] == "easy" for s in easy)
    for s in easy:
        assert 3 <= len(s.chunks) <= 5 and 1 <= len(s.meta["ops"]) <= 2
        assert 3 <= s.meta["start"] <= 20 and all(op in "+-" and 2 <= k <= 9 for op, k in s.meta["ops"])
        assert _replay_teacher(s) == int(s.answer)
    assert {op for s in easy for op, _ in s.meta["ops"]} == {"+", "-"}
    # the standard task is unchanged by the level knob: the same problems as before levels existed (pinned text),
    # all four operations and up to 4 updates
    std = word_problems("train", 5)
    assert std[0].context.startswith("Diego has 54 eggs. Diego splits his eggs equally into 3 boxes")
    blob = json.dumps([[s.question, s.context, s.answer] for s in std]).encode()
    assert hashlib.sha256(blob).hexdigest() == STANDARD_TRAIN_5_SHA256
    std200 = word_problems("train", 200)
    assert {op for s in std200 for op, _ in s.meta["ops"]} == {"+", "-", "*", "/"}
    assert max(len(s.meta["ops"]) for s in std200) == 4
    with pytest.raises(ConfigError, match="unknown word-problem level 'hard'"):
        word_problems("train", 1, level="hard")
    assert [s.id for s in load_samples("builtin:easy", "test", "text", limit=2)] == ["wp-easy-1000000",
                                                                                      "wp-easy-1000001"]


def test_novel_level_is_written_only_in_the_held_out_phrasings():
    """``builtin:novel`` measures reading past the trained templates: every sentence and question comes from the
    held-out phrasings, its arithmetic is right, and no training template (word problems, recall) shares the
    held-out verbs, so a training mix cannot teach them by accident."""
    from adasr_mm.training import recall

    novel = load_samples("builtin:novel", "test", "text", limit=150)
    masked = "|".join([*(n for n, _ in tasks.NAMES), *tasks.OBJECTS, r"\d+", "he", "she", "his", "her"])

    def shape(t: str) -> str:  # a template or a sentence with its slots, names, numbers and objects masked
        t = re.sub(r"\{[^}]+\}", "X", t)
        t = re.sub(r"\b(" + masked + r")\b", "X", t, flags=re.IGNORECASE)
        return re.sub(r"X('s)?( X('s)?)*", "X", t)

    held = {shape(t) for t in (*tasks.HELDOUT_STARTS, *tasks.HELDOUT_QUESTIONS,
                               *(d for d, _ in tasks.HELDOUT_DISTRACTORS), *(u.text for u in tasks.HELDOUT_UPDATES))}
    for s in novel:
        assert s.id == f"wp-novel-{s.meta['seed']}" and _replay_teacher(s) == int(s.answer)
        assert all(shape(c.text) in held for c in s.chunks) and shape(s.question) in held, s.context
    assert {op for s in novel for op, _ in s.meta["ops"]} == {"+", "-", "*", "/"}
    verbs = {"picks", "brings", "earns", "orders", "hands", "drops", "leaves", "misplaces", "break", "thrown",
             "grows", "winds", "puts", "holds", "carrying", "brought", "drawer", "left", "finish"}
    varied = tasks.PHRASINGS["varied"]
    training = [*varied.starts, *varied.questions, *(d for d, _ in varied.distractors),
                *(u.text for u in varied.updates),
                *(t for a in recall.ATTRIBUTES for t in (*a.facts, *a.changes, *a.questions, *a.inverse,
                                                         *a.mention, a.note))]
    assert held & {shape(t) for t in training} == set()  # no held-out sentence is a training sentence
    words = {w for t in training for w in re.findall(r"[a-z]+", t.lower())}
    assert words & verbs == set()
    problem_words = {w for u in varied.updates for w in re.findall(r"[a-z]+", u.text.lower())}
    assert {"eats", "eat", "ate"} & problem_words == set()  # make demo's update verb stays untrained


def test_each_sentence_is_one_chunk_with_aligned_teacher():
    with_distractor = 0
    ops, firsts, questions, distractor_numbers = set(), set(), set(), 0
    for s in word_problems("train", 300):
        assert 3 <= len(s.chunks) <= 8
        assert [c.text for c in s.chunks] == segment_text(s.context)
        assert all(len(c.text.split()) >= 4 for c in s.chunks)
        assert len(s.teacher) == len(s.chunks) == len(s.meta["relevant"])
        assert s.meta["relevant"] == [t is not None for t in s.teacher]
        assert s.meta["relevant"][0] and s.meta["task"] == "word_problem" and s.id == f"wp-{s.meta['seed']}"
        assert s.question.endswith("?") and s.modality == "text"
        for a, b in zip(s.chunks, s.chunks[1:], strict=False):  # contiguous, timed at 150 words/min
            assert a.end == pytest.approx(b.start)
        assert s.chunks[0].duration == pytest.approx(len(s.chunks[0].text.split()) * 0.4)
        with_distractor += None in s.teacher
        distractor_numbers += any(re.search(r"\d", c.text) for c, t in zip(s.chunks, s.teacher, strict=True)
                                  if t is None)
        ops.update(op for op, _ in s.meta["ops"])
        firsts.add(re.sub(r"\d+", "N", s.chunks[0].text.split()[1]))
        questions.add(s.question.split(" how")[0][:12])
    assert with_distractor >= 0.9 * 300
    assert distractor_numbers >= 100  # distractors carry numbers too
    assert ops == {"+", "-", "*", "/"}
    assert len(tasks.UPDATES) >= 15 and len(tasks.DISTRACTORS) >= 15


def test_padding_a_problem_to_a_stream_length_keeps_its_updates_and_answer():
    """The latency benchmark's 4-32 sentence streams: the same updates and answer, only distractors added."""
    base = tasks.make_word_problem(1_000_003)
    n_ops = len(base.meta["ops"])
    for n in (n_ops + 1, 8, 16, 32):
        s = tasks.make_word_problem(1_000_003, n_sentences=n)
        assert len(s.chunks) == n and s.id == f"wp-1000003-len{n}"
        assert (s.answer, s.meta["ops"], s.meta["start"]) == (base.answer, base.meta["ops"], base.meta["start"])
        assert sum(s.meta["relevant"]) == n_ops + 1
        assert [c.text for c in s.chunks] == segment_text(s.context)
    short = tasks.make_word_problem(1_000_003, n_sentences=2)  # fewer sentences than updates: trimmed
    assert len(short.chunks) == 2 and len(short.meta["ops"]) == 1
    assert tasks.make_word_problem(1_000_003).context == base.context  # the default stream is unchanged
    with pytest.raises(ConfigError, match="at least 2 sentences"):
        tasks.make_word_problem(1, n_sentences=1)


def test_train_test_and_validation_seeds_are_disjoint():
    train = {s.id for s in word_problems("train", 20)} | {s.id for s in word_problems("train", 20, offset=20)}
    test = {s.id for s in word_problems("test", 20)}
    val = {s.id for s in word_problems("validation", 20)}
    assert len(train) == 40 and len(test) == 20 and len(val) == 20 and not train & test and not val & (train | test)
    assert min(int(i.split("-")[1]) for i in test) == tasks.SPLIT_SEED_OFFSET["test"]
    assert min(int(i.split("-")[1]) for i in val) == tasks.SPLIT_SEED_OFFSET["validation"]
    contexts = {s.context for s in word_problems("test", 20)}
    assert not contexts & {s.context for s in word_problems("validation", 20)}  # different streams, not just ids
    with pytest.raises(ConfigError, match="test seeds must stay below 2000000"):
        word_problems("test", 10, offset=999_995)
    assert word_problems("train", 3, offset=2)[0].id == "wp-2"
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        word_problems("dev", 3)
    with pytest.raises(ConfigError, match="must stay below 1000000"):
        word_problems("train", 10, offset=999_995)


# -- spoken / video / bundled ----------------------------------------------------------------------------------
def test_bundled_samples_point_at_committed_media():
    audio, video = bundled_spoken_samples(), bundled_video_samples()
    assert len(audio) == 4 and len(video) == 2
    for s in audio + video:
        assert Path(s.media).is_absolute() and Path(s.media).is_file() and s.teacher is None
    apples = next(s for s in audio if s.id == "bundled-audio-apples")
    assert apples.answer == "10" and "Tom has 5 apples" in apples.context and apples.modality == "audio"
    assert {s.answer for s in video} == {"2", "3"} and all(s.modality == "video" for s in video)


def test_spoken_word_problems_need_espeak_and_name_the_fixtures(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="espeak-ng.*samples/audio"):
        spoken_word_problems(1, "train", tmp_path)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_spoken_word_problems_render_once(tmp_path):
    (s,) = spoken_word_problems(1, "test", tmp_path)
    wav = Path(s.media)
    assert s.modality == "audio" and wav.is_file() and wav.parent == tmp_path.resolve()
    info = sf.info(wav)
    assert 3 < info.duration < 30
    ref = make_word_problem(1_000_000)
    assert (s.question, s.answer, s.context) == (ref.question, ref.answer, ref.context)
    assert s.teacher is None and s.meta["text_teacher"] == ref.teacher
    mtime = wav.stat().st_mtime_ns
    spoken_word_problems(1, "test", tmp_path)
    assert wav.stat().st_mtime_ns == mtime  # reused, not re-rendered


def test_video_problems_ask_the_scenes_counting_question(tmp_path):
    from adasr_mm.adapters.synthetic import random_scene

    (s,) = video_problems(1, "train", tmp_path)
    scene = random_scene(0)
    assert (s.question, s.answer) == scene.qa[0] and s.question.startswith("How many")
    assert Path(s.media).is_file() and s.modality == "video" and s.duration == scene.duration
    assert int(s.answer) == len(scene.events)


def test_builtin_task_dispatch(tmp_path):
    assert [s.id for s in tasks.builtin_task("text", "test", 2, tmp_path)] == ["wp-1000000", "wp-1000001"]
    with pytest.raises(ConfigError, match="no built-in task for modality 'smell'"):
        tasks.builtin_task("smell", "train", 1, tmp_path)
    with pytest.raises(ConfigError, match="unknown built-in task builtin:hard; choose one of standard, easy, varied, "
                                          "novel, recall, recall-wide"):
        load_samples("builtin:hard", "test", "text", limit=1)
    assert [s.id for s in load_samples("builtin:varied", "train", "text", limit=1)] == ["wp-varied-0"]
    with pytest.raises(ConfigError, match="builtin:novel is for evaluation only"):
        load_samples("builtin:novel", "train", "text", limit=1)
    with pytest.raises(ConfigError, match="builtin:novel is a text task"):
        load_samples("builtin:novel", "test", "audio", limit=1)
    with pytest.raises(ConfigError, match="builtin:recall-wide is a text task; got modality 'audio'"):
        load_samples("builtin:recall-wide", "test", "audio", limit=1)
    assert len(load_samples("builtin", modality="text", limit=3)) == 3


# -- answer checking -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pred, gold, ok", [
    ("8", "8", True), ("10.0", "10", True), ("10.", "10", True), ("$1,000", "1000", True),
    ("1,000 apples.", "1000", True), ("The answer is 8.", "8", True), ("\\boxed{8}", "8", True),
    ("Tom has 8 apples now.", "8", True), ("5 + 3 = 8", "8", True), ("5 + 3 = 9", "8", False),
    ("8 apples and 3 pears", "8", False), ("three", "3", True), ("9", "8", False), ("", "8", False),
    ("(B)", "B", True), ("B.", "(b)", True), ("b) 42 apples", "B", True), ("C", "B", False),
    ("A red circle.", "a red circle", True), ("RED   circle", "a red circle", True),
    ("blue circle", "a red circle", False), ("Yellow!", "yellow", True), ("0.75", "3/4", True),
])
def test_check_answer(pred, gold, ok):
    assert check_answer(pred, gold) is ok


# -- JSONL / dataset loading -----------------------------------------------------------------------------------
def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_jsonl_loader_happy_path(tmp_path):
    (tmp_path / "media").mkdir()
    recs = [
        {"id": "t1", "question": "How many apples?", "answer": 8,
         "context": "Tom has 5 apples in his bag. The sky is blue today. He buys 3 more apples."},
        {"question": "Q?", "answer": "yes", "chunks": [{"start": 0, "end": 1.5, "text": "Hello there friend."},
                                                       {"start": 1.5, "end": 3, "text": "Bye now."}]},
        {"question": "Q?", "answer": "2", "audio": "media/clip.wav"},
        {"question": "Q?", "answer": "2", "video": str(tmp_path / "abs.mp4")},
    ]
    samples = load_samples(str(_write_jsonl(tmp_path / "data.jsonl", recs)))
    assert [s.modality for s in samples] == ["text", "text", "audio", "video"]
    assert samples[0].id == "t1" and samples[0].answer == "8" and len(samples[0].chunks) == 3
    assert samples[1].id == "data-1" and samples[1].chunks[1].text == "Bye now."
    assert samples[2].media == str((tmp_path / "media" / "clip.wav").resolve()) and samples[2].chunks is None
    assert samples[3].media == str(tmp_path / "abs.mp4")
    assert len(load_samples(str(tmp_path / "data.jsonl"), limit=2)) == 2


@pytest.mark.parametrize("records, message", [
    ([], "no samples in"),
    (["", "   "], "no samples in"),
    ([{"question": "Q?", "answer": "1", "context": "Tom has five apples."}, {"answer": "1", "context": "x y z"}],
     r"line 2: missing key 'question'"),
    ([{"question": "Q?", "context": "Tom has five apples."}], r"line 1: missing key 'answer'"),
    ([{"question": "Q?", "answer": "1"}], "exactly one of context, audio, video or chunks; found none"),
    ([{"question": "Q?", "answer": "1", "context": "Some text here.", "audio": "a.wav"}], "found context, audio"),
    (["{not json"], r"line 1: not valid JSON"),
    ([{"question": "Q?", "answer": "1", "chunks": [{"start": 0, "text": "no end"}]}], "chunk 0 must be an object"),
    ([{"question": "Q?", "answer": "1", "context": "Tom has five apples.", "teacher": ["a", "b"]}],
     "2 teacher thoughts for 1 chunks"),
    ([{"question": "Q?", "answer": "1", "audio": "a.wav", "modality": "video"}], "mismatched modality"),
])
def test_jsonl_loader_errors(tmp_path, records, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", records) if records else tmp_path / "bad.jsonl"
    if not records:
        path.write_text("")
    with pytest.raises(InputError, match=message):
        load_samples(str(path))


def test_loader_rejects_missing_files_and_mismatched_modality(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_samples(str(tmp_path / "nope.jsonl"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="must be .jsonl"):
        load_samples(str(tmp_path / "notes.txt"))
    path = _write_jsonl(tmp_path / "d.jsonl", [{"question": "Q?", "answer": "1", "context": "Tom has five apples."}])
    with pytest.raises(InputError, match=r"line 1: mismatched modality: the record is 'text' but 'audio'"):
        load_samples(str(path), modality="audio")
    with pytest.raises(ConfigError, match="unknown modality"):
        load_samples(str(path), modality="smell")


def test_huggingface_dataset_directory_offline(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"question": "How many?", "answer": "3", "context": "Tom has three apples. The sky is very blue."}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "ds"))
    (s,) = load_samples(str(tmp_path / "ds"), split="train")
    assert s.answer == "3" and [c.text for c in s.chunks] == ["Tom has three apples.", "The sky is very blue."]
    with pytest.raises(InputError, match="has no split 'test'; splits: train"):
        load_samples(str(tmp_path / "ds"), split="test")
    with pytest.raises(InputError, match="never downloads"):
        load_samples("no-such-user/no-such-dataset-adasr")


# -- StreamingThinker traces -----------------------------------------------------------------------------------
TRACES = [
    {"Instruct_Context": {"context": "Tom has 5 apples.<EOS> The sky is blue.<EOS> He buys 3 more apples.<EOS>",
                          "instruct": "How many apples does Tom have?"},
     "streaming_reasoning": "Okay, the question asks for Tom's apples.<EOQ>  \nTom starts with 5.<EOT>  \n"
                            "Irrelevant.<EOT>  \n5 + 3 = 8.<EOT>",
     "deep_reasoning": "He had 5 and bought 3, so 8.  \n<EOR> Therefore, the answer is \\box{8}.<EOA>\n",
     "answer": "\\boxed{8}"},
    {"id": "flat", "instruction": "What is left?", "sentences": ["Ann has 4 pens.", "She loses one pen."],
     "thoughts": ["4 pens.", None], "output": "3"},
]


def test_streamingthinker_traces_released_and_alias_formats(tmp_path):
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(TRACES))
    a, b = load_streamingthinker_traces(path)
    assert a.question == "How many apples does Tom have?" and a.answer == "8" and a.id == "traces-0"
    assert [c.text for c in a.chunks] == ["Tom has 5 apples.", "The sky is blue.", "He buys 3 more apples."]
    assert a.teacher == ["Tom starts with 5.", "Irrelevant.", "5 + 3 = 8."]
    assert a.teacher_deep == "He had 5 and bought 3, so 8." and "question asks" in a.meta["question_thought"]
    assert b.id == "flat" and b.answer == "3" and b.teacher == ["4 pens.", None] and len(b.chunks) == 2
    jsonl = tmp_path / "traces.jsonl"
    jsonl.write_text("\n".join(json.dumps(t) for t in TRACES))
    assert [s.teacher for s in load_streamingthinker_traces(jsonl)] == [a.teacher, b.teacher]
    assert [s.id for s in load_samples(str(path))] == ["traces-0", "flat"]  # recognised by load_samples too


def test_streamingthinker_misaligned_thoughts_are_an_error(tmp_path):
    bad = dict(TRACES[1], thoughts=["only one"], sentences=["Ann has 4 pens.", "She loses one pen."])
    path = tmp_path / "t.json"
    path.write_text(json.dumps([bad]))
    with pytest.raises(InputError, match="1 streaming thoughts for 2 context segments"):
        load_streamingthinker_traces(path)
    path.write_text(json.dumps([{"instruction": "Q?", "sentences": ["A b c."]}]))
    with pytest.raises(InputError, match="missing key 'answer'"):
        load_streamingthinker_traces(path)


# -- prepare: chunk caching ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("prep")
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(200))
    sf.write(d / "silence.wav", np.zeros(16000 * 3, np.int16), 16000)
    spoken = next(s for s in bundled_spoken_samples() if s.id == "bundled-audio-pauses")
    (video,) = video_problems(1, "test", d)
    corrupt = Sample(id="corrupt", question="Q?", answer="1", modality="audio", media=str(d / "corrupt.wav"))
    silent = Sample(id="silent", question="Q?", answer="1", modality="audio", media=str(d / "silence.wav"))
    missing = Sample(id="missing", question="Q?", answer="1", modality="video", media=str(d / "none.mp4"))
    return {"dir": d, "cache": d / "chunks", "good": [spoken, video], "bad": [corrupt, silent, missing]}


@pytest.fixture(scope="module")
def first_run(media):
    cfg = load_config(None, ["asr.cpu_threads=2"])
    return prepare(media["good"] + media["bad"], cfg, media["cache"], progress=False)


def test_prepare_fills_chunks_and_reports_failures(first_run, media):
    r = first_run
    assert (r.computed, r.cached) == (2, 0)
    assert [s.id for s in r.samples] == ["bundled-audio-pauses", "video-1000000"]
    failed = dict(r.failed)
    assert set(failed) == {"corrupt", "silent", "missing"}
    assert "not a readable audio or video file" in failed["corrupt"]
    assert "produced no chunks" in failed["silent"] and "does not exist" in failed["missing"]
    spoken, video = r.samples
    assert "marbles" in " ".join(c.text for c in spoken.chunks).lower()
    assert all(c.modality == "audio" for c in spoken.chunks) and spoken.duration > 10
    assert all(c.modality == "video" and c.frames is None for c in video.chunks) and len(video.chunks) >= 3
    assert r.cache_file.is_file() and set(r.cache_files) == {"audio", "video"}
    lines = [json.loads(x) for x in r.cache_files["audio"].read_text().splitlines()]
    assert {e["id"] for e in lines} == {"bundled-audio-pauses", "silent"}  # silence is cached as empty
    assert {"media", "media_mtime", "media_size", "chunks"} <= lines[0].keys()
    assert "frames_shape" not in r.cache_files["video"].read_text()


def test_prepare_second_call_hits_the_cache(first_run, media):
    cfg = load_config(None, ["asr.cpu_threads=1"])  # thread count does not change the chunks: same cache
    r = prepare(media["good"] + media["bad"], cfg, media["cache"], progress=False)
    assert (r.computed, r.cached) == (0, 2) and r.cache_files == first_run.cache_files
    assert [s.to_dict() for s in r.samples] == [s.to_dict() for s in first_run.samples]
    assert {i for i, _ in r.failed} == {"corrupt", "silent", "missing"}


def test_prepare_cache_follows_config_and_media_changes(first_run, media, tmp_path):
    video = media["good"][1]
    other = prepare([video], load_config(None, ["video.window_s=2"]), media["cache"], progress=False)
    assert other.computed == 1 and other.cache_file != first_run.cache_files["video"]
    copy = tmp_path / "copy.mp4"
    shutil.copy(video.media, copy)
    moved = Sample(id="copy", question="Q?", answer="1", modality="video", media=str(copy))
    cfg = load_config()
    assert prepare([moved], cfg, media["cache"], progress=False).computed == 1
    assert prepare([moved], cfg, media["cache"], progress=False).cached == 1
    with copy.open("ab") as f:  # a changed file (size/mtime) is recomputed
        f.write(b"\0")
    assert prepare([moved], cfg, media["cache"], progress=False).computed == 1


def test_prepare_raises_model_errors_instead_of_failing_every_sample(media):
    from adasr_mm.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="/no/such/whisper"):
        prepare(media["good"][:1], load_config(None, ["asr.model=/no/such/whisper"]), media["cache"], progress=False)


def test_prepare_passes_text_through(tmp_path):
    (wp,) = word_problems("train", 1)
    ctx = Sample(id="ctx", question="Q?", answer="1", context="Tom has five apples. The sky is blue today.")
    r = prepare([wp, ctx], load_config(), tmp_path, progress=False)
    assert r.samples[0] is wp and [c.text for c in r.samples[1].chunks] == segment_text(ctx.context)
    assert r.cache_file is None and "nothing cached" in r.summary()


def test_prepare_restores_sentence_teacher_only_when_chunks_align(first_run, media):
    n = len(first_run.samples[0].chunks)
    spoken = media["good"][0]
    aligned = Sample(id="a", question="Q?", answer="1", modality="audio", media=spoken.media,
                     meta={"text_teacher": [f"t{i}" for i in range(n)], "text_relevant": [True] * n})
    off = Sample(id="b", question="Q?", answer="1", modality="audio", media=spoken.media,
                 meta={"text_teacher": ["t"] * (n + 1)}, teacher=["x"] * (n + 2))
    r = prepare([aligned, off], load_config(), media["cache"], progress=False)
    assert r.cached == 2 and r.samples[0].teacher == [f"t{i}" for i in range(n)]
    assert r.samples[0].meta["relevant"] == [True] * n and r.samples[1].teacher is None


def test_prepare_cli(first_run, media, tmp_path, capsys):
    spoken = media["good"][0]
    data = _write_jsonl(tmp_path / "d.jsonl", [
        {"id": "p", "question": spoken.question, "answer": spoken.answer, "audio": spoken.media},
        {"id": "c", "question": "Q?", "answer": "1", "audio": str(media["dir"] / "corrupt.wav")}])
    parser = argparse.ArgumentParser()
    add_prepare_args(parser)
    args = parser.parse_args(["--data", str(data), "--modality", "audio", "--cache-dir", str(media["cache"]),
                              "--quiet", "asr.cpu_threads=2"])
    assert run_prepare(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("failed: c: ") and "not a readable audio" in out[0]
    assert re.fullmatch(r"prepared 1 samples \(1 cached, 0 computed, 1 failed\) -> .*audio-\w+\.jsonl", out[-1])
    args = parser.parse_args(["--data", "builtin", "--modality", "text", "--n", "3", "--cache-dir", str(tmp_path)])
    assert run_prepare(args) == 0
    assert capsys.readouterr().out.startswith("prepared 3 samples (0 cached, 0 computed, 0 failed)")
    for data in ("builtin:easy", "builtin:recall"):  # every built-in level takes the built-in default n
        assert run_prepare(parser.parse_args(["--data", data, "--modality", "text", "--cache-dir", str(tmp_path)])) == 0
        assert capsys.readouterr().out.startswith(f"prepared {BUILTIN_PREPARE_N} samples (0 cached")
    with pytest.raises(ConfigError, match="unexpected argument 'oops'"):
        run_prepare(parser.parse_args(["--data", "builtin", "oops"]))


def test_builtin_audio_without_espeak_never_trains_on_its_eval_recordings(monkeypatch, caplog):
    monkeypatch.setattr(tasks.shutil, "which", lambda name: None)
    train = load_samples("builtin", "train", "audio", limit=100)
    test = load_samples("builtin", "test", "audio", limit=100)
    assert [s.id for s in train] == ["bundled-audio-train", "bundled-audio-bakery", "bundled-audio-pauses"]
    assert [s.id for s in test] == ["bundled-audio-apples"]  # make demo's input: the shipped default never saw it
    assert not {s.media for s in train} & {s.media for s in test}
    assert "fixed test split of the bundled recordings (1 of 100 requested" in caplog.text
    assert len(load_samples("builtin:easy", "train", "audio", limit=2)) == 2
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        tasks.builtin_task("audio", "dev", 1, Path("/nonexistent"))
