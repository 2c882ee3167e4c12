"""Built-in training/eval tasks: seeded streaming word problems (text, spoken) and synthetic shape videos.

Why built in: RL needs an endless supply of streams with exact answers and no downloads. A word problem mixes
sentences that change the answer with distractors that carry numbers too (GSM-Symbolic / GSM-NoOp style), so an
ideal policy thinks on the former and skips the latter; ``teacher`` records exactly that, chunk by chunk.

Everything is a pure function of an integer seed (``random.Random(seed)``, never global state). Splits are
disjoint seed ranges: ``train`` uses seeds ``0 .. 999_999``, ``test`` ``1_000_000 .. 1_999_999`` and
``validation`` (for choosing among runs, so that ``test`` is not a selection score) from ``2_000_000`` on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adasr_mm.adapters.text import chunks_from_text
from adasr_mm.errors import ConfigError, InputError
from adasr_mm.training.sample import Sample

log = logging.getLogger(__name__)

#: First seed of each split; each split's seeds stay below the next split's first seed, so no two overlap.
#: ``validation`` is for choosing among runs (seeds, recipes), so ``test`` stays a number nothing was picked on.
SPLIT_SEED_OFFSET = {"train": 0, "test": 1_000_000, "validation": 2_000_000}
SPLITS = tuple(SPLIT_SEED_OFFSET)
MAX_VALUE = 1000  # answers and every intermediate value stay positive integers below this

NAMES = (("Tom", "he"), ("Anna", "she"), ("Liam", "he"), ("Maria", "she"), ("Noah", "he"), ("Emma", "she"),
         ("Omar", "he"), ("Sofia", "she"), ("Ravi", "he"), ("Mei", "she"), ("Lucas", "he"), ("Chloe", "she"),
         ("Diego", "he"), ("Aisha", "she"), ("Ben", "he"), ("Priya", "she"), ("Jack", "he"), ("Yuki", "she"),
         ("Ethan", "he"), ("Zara", "she"))
OBJECTS = ("apples", "marbles", "stickers", "pencils", "cookies", "stamps", "books", "coins", "cards", "seashells",
           "balloons", "candies", "crayons", "eggs", "oranges", "beads", "buttons", "toy cars", "postcards",
           "feathers", "muffins", "comics")
COLOURS = ("green", "purple", "yellow", "orange", "blue", "red", "pink", "silver")

START_TEMPLATES = (
    "{name} has {n} {obj}.",
    "{name} starts the day with {n} {obj}.",
    "There are {n} {obj} in {name}'s bag.",
    "At first, {name} owns {n} {obj}.",
    "{name} keeps {n} {obj} in a wooden box.",
    "{name} collected {n} {obj} last summer.",
)


@dataclass(frozen=True)
class _Update:
    """A relevant sentence: ``op`` in + - * / applied to the running total."""

    op: str
    text: str
    factor: int = 0  # fixed multiplier/divisor of the template (0: drawn from 2-5 when it divides)


# {Subj}/{SubjPoss} open a sentence: a pronoun after a sentence about the same person, else the name (so a
# distractor about someone else never makes "he"/"her" ambiguous). {poss} refers to {name} in the same sentence.
UPDATES = (
    _Update("+", "{name} buys {k} more {obj} at the market."),
    _Update("+", "Then {name} finds {k} {obj} under an old bench."),
    _Update("+", "{Subj} receives {k} {obj} from a friend as a gift."),
    _Update("+", "Later, {name} wins {k} {obj} in a school contest."),
    _Update("+", "A kind neighbour gives {name} another {k} {obj}."),
    _Update("+", "On the way home, {subj} collects {k} more {obj}."),
    _Update("+", "{SubjPoss} grandmother sends {name} {k} {obj} by mail."),
    _Update("+", "At the fair, {name} gets {k} extra {obj}."),
    _Update("-", "{name} gives {k} {obj} to a classmate."),
    _Update("-", "Sadly, {subj} loses {k} {obj} on the bus."),
    _Update("-", "{name} trades away {k} of {poss} {obj}."),
    _Update("-", "{SubjPoss} little brother takes {k} {obj} without asking."),
    _Update("-", "{name} uses {k} {obj} for an art project."),
    _Update("-", "{name} sells {k} {obj} at the yard sale."),
    _Update("-", "After lunch, {subj} gives {k} {obj} to {poss} teacher."),
    _Update("*", "{name} doubles the number of {obj} {poss_subj} has.", 2),
    _Update("*", "By the weekend, {name} has twice as many {obj} as before.", 2),
    _Update("*", "A month later, {name} has three times as many {obj} as before.", 3),
    _Update("*", "{name} triples {poss} pile of {obj}.", 3),
    _Update("/", "{name} gives away half of {poss} {obj}.", 2),
    _Update("/", "{name} loses half of {poss} {obj} in a storm.", 2),
    _Update("/", "{name} keeps only a third of {poss} {obj} and donates the rest.", 3),
    _Update("/", "{name} splits {poss} {obj} equally into {d} boxes and keeps one box."),
    _Update("/", "{name} shares {poss} {obj} equally with {friends} and keeps one share."),
)

#: (template, range of {r}) — irrelevant sentences, many with numbers, none changing the count.
DISTRACTORS: tuple[tuple[str, tuple[int, int] | None], ...] = (
    ("The sky is bright and blue today.", None),
    ("The weather is cold and windy this morning.", None),
    ("It rained for {r} hours yesterday.", (2, 9)),
    ("The school bus has {r} windows on each side.", (4, 12)),
    ("{other}'s favourite colour is {colour}.", None),
    ("A dog barks loudly across the street.", None),
    ("There are {r} tall trees along the road.", (5, 40)),
    ("The library closes at {r} o'clock in the evening.", (5, 9)),
    ("{other} is {r} years old.", (6, 15)),
    ("The cat sleeps on the sofa all afternoon.", None),
    ("The train to the city takes {r} minutes.", (15, 55)),
    ("Some of the {obj} are a little smaller than the others.", None),
    ("The {obj} are kept in a {colour} basket.", None),
    ("The park has {r} benches near the pond.", (3, 20)),
    ("{name}'s teacher loves to sing in the morning.", None),
    ("The football match ends with a score of {r} to {r2}.", (0, 6)),
    ("{name}'s house has {r} windows and a red door.", (4, 16)),
    ("A bakery nearby sells {r} kinds of bread.", (3, 12)),
    ("{other} has {r} {obj2} at home.", (3, 30)),
    ("The shop is {r} kilometres away from the school.", (2, 9)),
)

QUESTIONS = (
    "How many {obj} does {name} have now?",
    "How many {obj} does {name} have at the end?",
    "In the end, how many {obj} does {name} have?",
    "How many {obj} does {name} have after all of this?",
)


# -- held-out phrasings ----------------------------------------------------------------------------------------
# Sentences no training stream uses: other verbs, tenses and question forms, as a user writes a problem of their
# own. ``builtin:novel`` draws every relevant sentence, distractor and question from these, so its accuracy is
# how far the policy's reading carries past the templates it was trained on. Written 2026-12-07 before any policy
# was evaluated on them (one distractor replaced after the first evaluation: it was a training sentence);
# ``tests/test_training_data.py`` checks that no training template is one of them or shares their verbs.
HELDOUT_STARTS = (
    "{name} had {n} {obj} this morning.",
    "In {name}'s drawer there are {n} {obj}.",
    "{name} is carrying {n} {obj}.",
    "{name} brought {n} {obj} to school today.",
)
HELDOUT_UPDATES = (
    _Update("+", "{Subj} picks up {k} more {obj} on the way to school."),
    _Update("+", "{SubjPoss} uncle brings {name} {k} {obj}."),
    _Update("+", "Then {subj} earns {k} {obj} for helping at home."),
    _Update("+", "{name} orders {k} more {obj} online."),
    _Update("+", "A friend hands {name} {k} {obj}."),
    _Update("-", "{Subj} drops {k} {obj} in the river."),
    _Update("-", "{name} leaves {k} {obj} behind at the park."),
    _Update("-", "{name} misplaces {k} {obj} at the library."),
    _Update("-", "Then {subj} hands {k} {obj} to a cousin."),
    _Update("-", "Then {k} of {name}'s {obj} break and are thrown out."),
    _Update("*", "Over the summer, {name}'s collection of {obj} grows to twice its size.", 2),
    _Update("*", "{name} winds up with three times as many {obj} as {poss_subj} had.", 3),
    _Update("/", "{name} hands over half of {poss} {obj} to a cousin.", 2),
    _Update("/", "{name} puts {poss} {obj} into {d} equal piles and holds on to just one pile."),
)
HELDOUT_DISTRACTORS: tuple[tuple[str, tuple[int, int] | None], ...] = (
    ("{other} lives {r} streets away.", (2, 9)),
    ("{other} sings in a choir of {r} people.", (8, 40)),
    ("{name} is in grade {r} at school.", (2, 6)),
    ("It is {r} degrees outside today.", (10, 30)),
    ("{other} reads {r} pages of a book every night.", (5, 40)),
    ("The shop opens at {r} in the morning.", (7, 10)),
    ("Nobody knows how many {obj2} {other} has.", None),
)
HELDOUT_QUESTIONS = (
    "How many {obj} does {name} have left?",
    "How many {obj} does {name} finish with?",
    "What is the number of {obj} that {name} has now?",
)


# More training phrasings (``builtin:varied``): the standard templates plus these, so a policy meets more than one
# sentence per kind of update. Their words stay out of the held-out phrasings above (the test checks), and no
# template says "eats", the verb of ``make demo``'s problem, so the demo replay stays a test of reading a verb the
# policy was not trained on.
VARIED_STARTS = (
    "{name} has a box with {n} {obj} in it.",
    "On Monday, {name} counts {n} {obj}.",
    "{name} was given {n} {obj} as a birthday gift.",
    "{name} has saved up {n} {obj}.",
)
VARIED_UPDATES = (
    _Update("+", "{name} adds {k} {obj} to the collection."),
    _Update("+", "{Subj} is given {k} more {obj} by a cousin."),
    _Update("+", "Next, {name} gathers {k} {obj} from the garden."),
    _Update("+", "{name} makes {k} more {obj} in the afternoon."),
    _Update("+", "{SubjPoss} aunt buys {name} {k} {obj}."),
    _Update("+", "After school, {subj} trades a toy for {k} more {obj}."),
    _Update("-", "{Subj} forgets {k} {obj} on the train."),
    _Update("-", "{name} hides {k} {obj} and never finds them again."),
    _Update("-", "Later, {k} of {name}'s {obj} are stolen."),
    _Update("-", "{name} mails {k} {obj} to a pen pal."),
    _Update("-", "{name} spends {k} {obj} at the shop."),
    _Update("-", "{SubjPoss} sister borrows {k} {obj} and keeps them."),
    _Update("*", "{name} now has double the {obj} {poss_subj} had before.", 2),
    _Update("*", "Over the year, the number of {obj} {name} owns triples.", 3),
    _Update("/", "Only half of {name}'s {obj} survive the trip.", 2),
    _Update("/", "{name} keeps a quarter of {poss} {obj} and gives the rest away.", 4),
)
VARIED_DISTRACTORS: tuple[tuple[str, tuple[int, int] | None], ...] = (
    ("{other} has {r} cousins in another town.", (2, 9)),
    ("The movie lasts {r} minutes.", (80, 150)),
    ("{name}'s school has {r} classrooms.", (8, 30)),
    ("A glass of juice costs {r} dollars.", (2, 6)),
)
VARIED_QUESTIONS = (
    "How many {obj} remain with {name}?",
    "What is the total number of {obj} {name} has now?",
    "How many {obj} does {name} own now?",
)


@dataclass(frozen=True)
class Phrasing:
    """The sentence templates a word problem is written with."""

    starts: tuple[str, ...]
    updates: tuple[_Update, ...]
    distractors: tuple[tuple[str, tuple[int, int] | None], ...]
    questions: tuple[str, ...]


PHRASINGS = {"train": Phrasing(START_TEMPLATES, UPDATES, DISTRACTORS, QUESTIONS),
             "varied": Phrasing((*START_TEMPLATES, *VARIED_STARTS), (*UPDATES, *VARIED_UPDATES),
                                (*DISTRACTORS, *VARIED_DISTRACTORS), (*QUESTIONS, *VARIED_QUESTIONS)),
             "heldout": Phrasing(HELDOUT_STARTS, HELDOUT_UPDATES, HELDOUT_DISTRACTORS, HELDOUT_QUESTIONS)}


def seed_range(split: str, n: int, offset: int) -> range:
    """The seeds of ``n`` built-in samples of ``split`` from ``offset`` on (every built-in task shares them)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; built-in tasks have: {', '.join(SPLITS)}")
    if n < 0 or offset < 0:
        raise ConfigError(f"n and offset must be >= 0, got n={n}, offset={offset}")
    base = SPLIT_SEED_OFFSET[split]
    nxt, after = min(((o, k) for k, o in SPLIT_SEED_OFFSET.items() if o > base), default=(None, None))
    if nxt is not None and base + offset + n > nxt:
        raise ConfigError(f"{split} seeds must stay below {nxt} (the {after} split starts there); "
                          f"got offset={offset}, n={n}")
    return range(base + offset, base + offset + n)


@dataclass(frozen=True)
class Level:
    """How hard the built-in word problems are: a curriculum knob for models too small for the full task."""

    n_ops: tuple[int, int]  # relevant updates per problem (inclusive range)
    n_dist: tuple[int, int]  # distractor sentences
    start: tuple[int, int]  # starting count
    max_operand: int  # largest amount added or removed
    op_weights: tuple[tuple[str, float], ...]
    phrasing: str = "train"  # a key of PHRASINGS


# GSM-style: all four operations, 2-digit values, up to 4 updates and 3 distractors
_STANDARD = Level((1, 4), (1, 3), (4, 60), 30, (("+", 0.35), ("-", 0.3), ("*", 0.15), ("/", 0.2)))
LEVELS = {
    "standard": _STANDARD,
    # what a 135M model can learn on a CPU in minutes: one or two additions/removals of small amounts
    "easy": Level((1, 2), (1, 2), (3, 20), 9, (("+", 0.5), ("-", 0.5))),
    # the standard level in more training phrasings (the standard templates and VARIED_*)
    "varied": dataclasses.replace(_STANDARD, phrasing="varied"),
    # evaluation only: the standard level written in the held-out phrasings (never in a training mix)
    "novel": dataclasses.replace(_STANDARD, phrasing="heldout"),
}


def get_level(name: str) -> Level:
    if name not in LEVELS:
        raise ConfigError(f"unknown word-problem level {name!r}; choose one of {', '.join(LEVELS)}")
    return LEVELS[name]


def _pick_update(rng: random.Random, cur: int, used: set[int], level: Level = LEVELS["standard"]
                 ) -> tuple[int, int] | None:
    """(template index, operand) of a feasible update that keeps every value a positive integer < MAX_VALUE."""
    ops = [o for o, _ in level.op_weights]
    weights = [w for _, w in level.op_weights]
    hi = level.max_operand
    updates = PHRASINGS[level.phrasing].updates
    for _ in range(20):
        op = rng.choices(ops, weights)[0]
        cands = [i for i, u in enumerate(updates) if u.op == op and i not in used]
        if not cands:
            continue
        i = rng.choice(cands)
        u = updates[i]
        if op == "+" and cur + 2 < MAX_VALUE:
            return i, rng.randint(2, min(hi, MAX_VALUE - 1 - cur))
        if op == "-" and cur >= 4:
            return i, rng.randint(2, min(hi, cur - 2))
        if op == "*" and cur * u.factor < MAX_VALUE and cur <= 150:
            return i, u.factor
        if op == "/":
            divisors = [u.factor] if u.factor else [2, 3, 4, 5]
            ok = [d for d in divisors if cur % d == 0 and cur // d >= 2]
            if ok:
                return i, rng.choice(ok)
    return None


def make_word_problem(seed: int, level: str = "standard", n_sentences: int | None = None) -> Sample:
    """A streaming word problem (3-8 sentences at ``standard``) with an integer answer; one chunk per sentence at
    150 words/min. ``n_sentences`` pads the same problem with distractors to that length (stream-length
    benchmarks: 4 to 32 sentences; distractor templates repeat once the 20 are used).

    Teacher texts: a running total per relevant sentence (``teacher``), a one-line deep phase that reads the
    total off the last thought (``teacher_deep``: the stream already did the work), and the full step-by-step
    reasoning a read-then-think policy needs after reading everything (``teacher_rtt``)."""
    lv = get_level(level)
    ph = PHRASINGS[lv.phrasing]
    rng = random.Random(seed)
    name, pron = rng.choice(NAMES)
    poss = "his" if pron == "he" else "her"
    obj = rng.choice(OBJECTS)
    other = rng.choice([n for n, _ in NAMES if n != name])
    obj2 = rng.choice([o for o in OBJECTS if o != obj])
    n_ops, n_dist = rng.randint(*lv.n_ops), rng.randint(*lv.n_dist)
    if n_sentences is not None:
        if n_sentences < 2:
            raise ConfigError(f"a word problem needs at least 2 sentences, got {n_sentences}")
        n_ops = min(n_ops, n_sentences - 1)
        n_dist = n_sentences - 1 - n_ops

    start = rng.randint(*lv.start)
    cur = start
    steps: list[tuple[str, int, int, int]] = []  # (op, operand, before, after)
    used: set[int] = set()
    picks: list[int] = []
    while len(steps) < n_ops:
        got = _pick_update(rng, cur, used, lv)
        if got is None:  # nothing else fits (rare): a small gain always does
            got = next(i for i, u in enumerate(ph.updates) if u.op == "+" and i not in used), 2
        i, arg = got
        used.add(i)
        picks.append(i)
        op = ph.updates[i].op
        after = {"+": cur + arg, "-": cur - arg, "*": cur * arg, "/": cur // arg}[op]
        steps.append((op, arg, cur, after))
        cur = after

    total = 1 + n_ops + n_dist
    dist_slots = set(rng.sample(range(1, total), n_dist))
    n_tpl = len(ph.distractors)
    dist_templates = [i for _ in range(n_dist // n_tpl + 1) for i in rng.sample(range(n_tpl), n_tpl)][:n_dist] \
        if n_dist > n_tpl else rng.sample(range(n_tpl), n_dist)
    sentences: list[str] = []
    teacher: list[str | None] = []
    relevant: list[bool] = []
    upd = iter(zip(picks, steps, strict=True))
    dist = iter(dist_templates)
    for pos in range(total):
        if pos == 0:
            sentences.append(rng.choice(ph.starts).format(name=name, n=start, obj=obj))
            teacher.append(f"Starts with {start} {obj}.")
            relevant.append(True)
        elif pos in dist_slots:
            tpl, rr = ph.distractors[next(dist)]
            r = rng.randint(*rr) if rr else 0
            sentences.append(tpl.format(name=name, other=other, obj=obj, obj2=obj2, r=r,
                                        r2=rng.randint(*rr) if rr else 0, colour=rng.choice(COLOURS)))
            teacher.append(None)
            relevant.append(False)
        else:
            i, (op, arg, before, after) = next(upd)
            same_person = relevant[-1]
            subj = pron if same_person else name
            text = ph.updates[i].text.format(
                name=name, subj=subj, Subj=subj[:1].upper() + subj[1:], poss=poss, poss_subj=pron,
                SubjPoss=poss.capitalize() if same_person else f"{name}'s", obj=obj, k=arg, d=arg,
                friends="a friend" if arg == 2 else f"{arg - 1} friends")
            sentences.append(text[:1].upper() + text[1:])
            # the running total written out as an equation right next to its operand: a small model copies the
            # previous total and does one local sum, the form its pretraining saw most
            teacher.append(f"{before} {op} {arg} = {after} {obj}.")
            relevant.append(True)

    text = " ".join(sentences)
    chunks = list(chunks_from_text(text, source=f"wp-{seed}"))
    if [c.text for c in chunks] != sentences:  # a template broke the one-sentence-one-chunk rule
        raise RuntimeError(f"word problem {seed}: sentences did not map one-to-one onto chunks")
    if not 0 < cur < MAX_VALUE:
        raise RuntimeError(f"word problem {seed}: answer {cur} out of range")
    rtt = f"Starts with {start} {obj}. " + "; ".join(f"{b} {op} {a} = {c}" for op, a, b, c in steps) + "."
    question = rng.choice(ph.questions).format(obj=obj, name=name)
    question = question[:1].upper() + question[1:]
    sid = f"wp-{seed}" if level == "standard" else f"wp-{level}-{seed}"
    if n_sentences is not None:
        sid += f"-len{n_sentences}"
    return Sample(id=sid, question=question, answer=str(cur), modality="text", chunks=chunks,
                  context=text, duration=chunks[-1].end, teacher=teacher,
                  teacher_deep=f"The running total is {cur} {obj}.", teacher_rtt=rtt,
                  meta={"seed": seed, "relevant": relevant, "task": "word_problem", "level": level,
                        "deep_is_recap": True,
                        "start": start, "ops": [[op, a] for op, a, _, _ in steps]})


def word_problems(split: str, n: int, offset: int = 0, level: str = "standard") -> list[Sample]:
    """``n`` word problems of ``split`` (seeds ``SPLIT_SEED_OFFSET[split] + offset ..``)."""
    get_level(level)
    return [make_word_problem(s, level) for s in seed_range(split, n, offset)]


# -- spoken and video forms -----------------------------------------------------------------------------------
def samples_dir() -> Path:
    """The repo's ``samples/`` (the install is editable; ``training/`` sits at the repo root)."""
    d = Path(__file__).resolve().parents[1] / "samples"
    if not d.is_dir():
        raise InputError(f"the bundled samples directory {d} is missing: it ships with the source checkout "
                         "(git clone), not with a wheel install")
    return d


def _atomic_render(path: Path, render: Callable[[Path], None]) -> None:
    """Render to a temporary name, then rename: an interrupted run never leaves a half-written file behind."""
    if path.is_file() and path.stat().st_size > 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        render(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise InputError("spoken word problems need the 'espeak-ng' binary (apt-get install espeak-ng); without "
                         "it use the pre-rendered fixtures in samples/audio (bundled_spoken_samples())")
    return exe


def speak(text: str, path: Path) -> None:
    """``espeak-ng -v en-us -s 150`` (the papers' 150 words/min) of ``text`` into a wav file."""
    r = subprocess.run([_espeak(), "-v", "en-us", "-s", "150", "-w", str(path), text], capture_output=True, text=True)
    if r.returncode != 0 or not path.is_file():
        raise InputError(f"espeak-ng failed ({r.returncode}): {r.stderr.strip() or 'no output file'}")


def spoken_word_problems(n: int, split: str, out_dir: Path, level: str = "standard") -> list[Sample]:
    """Word problems read aloud by espeak-ng into ``out_dir`` (existing renders are reused).

    ASR decides the audio chunks, so the per-sentence reference thoughts move to ``meta["text_teacher"]``
    (``prepare`` restores ``teacher`` when the ASR yields one chunk per sentence)."""
    _espeak()  # fail before generating anything
    out: list[Sample] = []
    for s in word_problems(split, n, level=level):
        wav = Path(out_dir) / f"{s.id}.wav"
        _atomic_render(wav, lambda p, text=s.context: speak(text or "", p))
        meta = {"seed": s.meta["seed"], "task": "spoken_word_problem", "text_teacher": s.teacher,
                "text_relevant": s.meta["relevant"], "deep_is_recap": True}
        out.append(Sample(id=f"{s.id}-audio", question=s.question, answer=s.answer, modality="audio",
                          media=str(wav.resolve()), context=s.context, teacher_deep=s.teacher_deep,
                          teacher_rtt=s.teacher_rtt, meta=meta))
    return out


def video_problems(n: int, split: str, out_dir: Path) -> list[Sample]:
    """Synthetic shape videos (``random_scene(seed)``) rendered to mp4, asking the scene's counting question."""
    from adasr_mm.adapters.synthetic import random_scene, render_scene

    out: list[Sample] = []
    for seed in seed_range(split, n, 0):
        scene = random_scene(seed)
        mp4 = Path(out_dir) / f"scene-{seed}.mp4"
        _atomic_render(mp4, lambda p, sc=scene: render_scene(sc, p))
        question, answer = scene.qa[0]
        out.append(Sample(id=f"video-{seed}", question=question, answer=answer, modality="video",
                          media=str(mp4.resolve()), duration=scene.duration,
                          meta={"seed": seed, "task": "video_count", "scene": scene.to_dict()}))
    return out


def _bundled(sub: str) -> tuple[Path, dict[str, dict]]:
    d = samples_dir() / sub
    index = d / "samples.json"
    if not index.is_file():
        raise InputError(f"bundled sample index {index} is missing")
    return d, json.loads(index.read_text(encoding="utf-8"))


def bundled_spoken_samples() -> list[Sample]:
    """The committed spoken fixtures (``samples/audio``), usable without espeak-ng."""
    d, index = _bundled("audio")
    return [Sample(id=f"bundled-audio-{Path(name).stem}", question=rec["question"], answer=str(rec["answer"]),
                   modality="audio", media=str((d / name).resolve()), context=rec.get("text"),
                   meta={"task": "bundled_audio", **({"pauses": rec["pauses"]} if "pauses" in rec else {})})
            for name, rec in index.items()]


def bundled_video_samples() -> list[Sample]:
    """The committed synthetic videos (``samples/video``) with their exact event lists."""
    d, index = _bundled("video")
    return [Sample(id=f"bundled-video-{Path(name).stem}", question=rec["question"], answer=str(rec["answer"]),
                   modality="video", media=str((d / name).resolve()), duration=rec.get("duration"),
                   meta={"task": "bundled_video", "events": rec.get("events", [])})
            for name, rec in index.items()]


#: Without espeak-ng the built-in audio task falls back to the committed recordings in ``samples/audio``, split
#: once and for all so that no recording is ever both trained on and evaluated on. ``apples.opus`` is ``make
#: demo``'s input, so it is held out: the shipped default must not have seen the demo.
BUNDLED_AUDIO_SPLITS = {"train": ("train.opus", "bakery.opus", "pauses.flac"), "test": ("apples.opus",)}


def bundled_spoken_split(split: str, n: int) -> list[Sample]:
    """The fixed, disjoint split of the bundled spoken samples (at most 3 train, 1 test), with a warning that
    says how small it is; any other split is an error."""
    if split not in BUNDLED_AUDIO_SPLITS:
        raise ConfigError(f"unknown split {split!r}; the bundled spoken samples have: {', '.join(BUNDLED_AUDIO_SPLITS)}")
    names = BUNDLED_AUDIO_SPLITS[split]
    by_id = {s.id: s for s in bundled_spoken_samples()}
    out = [by_id[f"bundled-audio-{Path(name).stem}"] for name in names][:n]
    log.warning("espeak-ng not found: the built-in audio task uses the fixed %s split of the bundled recordings "
                "(%d of %d requested: %s); install espeak-ng for spoken word problems of any size",
                split, len(out), n, ", ".join(names[: len(out)]))
    return out


#: The text-only fact-recall tasks of :mod:`.recall` (name -> ``wide``), selected like a level: ``builtin:recall``.
RECALL_TASKS = {"recall": False, "recall-wide": True}
#: Every name ``builtin:NAME`` accepts ("builtin" alone is ``standard``); the CLI help and errors list these.
BUILTIN_TASKS = (*LEVELS, *RECALL_TASKS)
BUILTIN_SOURCES = "builtin[:" + "|".join(t for t in BUILTIN_TASKS if t != "standard") + "]"


def builtin_task(modality: str, split: str, n: int, out_dir: Path, level: str = "standard") -> list[Sample]:
    """``n`` built-in samples of ``modality`` (text | audio | video); media are rendered under ``out_dir``.

    ``level`` (word problems: ``standard`` or ``easy``) selects the difficulty of the text and spoken tasks;
    ``novel`` is the standard level in the held-out phrasings (text, evaluation splits only); a name in
    :data:`RECALL_TASKS` selects the text-only fact-recall streams instead."""
    if level not in BUILTIN_TASKS:
        raise ConfigError(f"unknown built-in task builtin:{level}; choose one of {', '.join(BUILTIN_TASKS)}")
    if level in LEVELS and LEVELS[level].phrasing == "heldout":
        if modality != "text":
            raise ConfigError(f"builtin:{level} is a text task; got modality {modality!r}")
        if split == "train":
            raise ConfigError(f"builtin:{level} is for evaluation only (its phrasings measure reading past the "
                              "trained templates); use --split test or validation")
    if level in RECALL_TASKS:
        if modality != "text":
            raise ConfigError(f"builtin:{level} is a text task; got modality {modality!r}")
        from .recall import recall_problems

        return recall_problems(split, n, wide=RECALL_TASKS[level])
    if modality == "text":
        return word_problems(split, n, level=level)
    if modality == "audio":
        if shutil.which("espeak-ng") is None:  # a fresh machine: the committed spoken fixtures stand in
            return bundled_spoken_split(split, n)
        return spoken_word_problems(n, split, Path(out_dir) / "audio", level)
    if modality == "video":
        return video_problems(n, split, Path(out_dir) / "video")
    raise ConfigError(f"no built-in task for modality {modality!r}; choose text, audio or video")


__all__ = ["BUILTIN_SOURCES", "BUILTIN_TASKS", "BUNDLED_AUDIO_SPLITS", "DISTRACTORS", "LEVELS", "RECALL_TASKS",
           "SPLITS", "SPLIT_SEED_OFFSET", "UPDATES", "builtin_task", "bundled_spoken_samples", "bundled_spoken_split",
           "bundled_video_samples", "make_word_problem", "samples_dir", "seed_range", "spoken_word_problems",
           "video_problems", "word_problems"]
