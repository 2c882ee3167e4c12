"""Built-in fact-recall streams: a question about one fact stated in the stream, answered with a word from it.

Why: the word problems teach the policy to keep a running number, and nothing else. A user also asks "Where does
Anna live?" or "Who is Tom's best friend?" about a recording, and a policy trained on numbers alone answers those
with a number. A recall stream states facts about two or three people; the asked fact may change later in the
stream ("Later, Anna moves to Oslo."), so the policy has to bind each fact to its person and keep the latest
value. The same attribute of another person, other facts about the asked person and the word problems' filler
sentences are distractors that an ideal policy skips; ``teacher`` notes each relevant fact as it arrives.
``builtin:recall`` asks of the person ("Where does Anna live?"). ``builtin:recall-wide`` asks a fact three
ways, as users ask about a recording: also for the person ("Who lives in Oslo?") and for the one value a stream
names ("Which city is mentioned?"). Besides standing facts (city, job, pet, ...) it states things people did
once ("Anna found a key in the park."): asked "What did Anna find?", they teach reading an answer off a
sentence whose verb the question changes.

Everything is a pure function of an integer seed, with the word problems' disjoint train / test seed ranges.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from adasr_mm.adapters.text import chunks_from_text
from adasr_mm.training.sample import Sample

from .tasks import COLOURS, DISTRACTORS, NAMES, OBJECTS, seed_range


@dataclass(frozen=True)
class Attribute:
    """One kind of fact about a person: how it is stated, how it changes, how it is asked, how it is noted."""

    key: str
    values: tuple[str, ...]
    facts: tuple[str, ...]  # "{p} lives in {v}."
    changes: tuple[str, ...]  # "Later, {p} moves to {v}."
    questions: tuple[str, ...]  # "Where does {p} live?"
    note: str  # the reference thought: "{p} lives in {v}."
    inverse: tuple[str, ...] = ()  # "Who lives in {v}?": the answer is the person
    mention: tuple[str, ...] = ()  # "Which city is mentioned?": asked only of a stream that names one city


PEOPLE = tuple(n for n, _ in NAMES)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

STANDING = (
    Attribute("city", ("Paris", "London", "Madrid", "Tokyo", "Cairo", "Lima", "Oslo", "Dublin", "Vienna", "Boston",
                       "Sydney", "Berlin"),
              ("{p} lives in {v}.", "{p} has a small flat in {v}."),
              ("Later, {p} moves to {v}.", "Then {p} moves to {v} for a new job."),
              ("Where does {p} live?", "In which city does {p} live?", "Which city does {p} live in now?"),
              "{p} lives in {v}.",
              ("Who lives in {v}?", "Who lives in {v} now?"),
              ("Which city is mentioned?", "What city does the story name?")),
    Attribute("bike", (*COLOURS, "black", "white", "brown"),
              ("{p}'s bike is {v}.", "{p} rides a {v} bike."),
              ("Then {p} paints the bike {v}.", "Later, {p} buys a new {v} bike."),
              ("What colour is {p}'s bike?", "What colour is {p}'s bike now?"),
              "{p}'s bike is {v}.",
              ("Whose bike is {v}?", "Who rides a {v} bike?"),
              ("What colour is mentioned?", "Which colour is mentioned?")),
    Attribute("job", ("nurse", "pilot", "baker", "farmer", "lawyer", "chef", "teacher", "dentist", "plumber",
                      "painter", "driver", "singer"),
              ("{p} works as a {v}.", "{p} is a {v} in the town."),
              ("Later, {p} becomes a {v}.", "Then {p} starts a new job as a {v}."),
              ("What is {p}'s job?", "What does {p} work as?", "What is {p}'s job now?"),
              "{p} is a {v}.",
              ("Who works as a {v}?", "Who is the {v}?"),
              ("Which job is mentioned?",)),
    Attribute("pet", ("dog", "cat", "rabbit", "parrot", "turtle", "hamster", "goldfish", "pony"),
              ("{p} has a pet {v}.", "{p} looks after a small {v} at home."),
              ("Then {p} gives the pet away and gets a {v}.",),
              ("What pet does {p} have?", "What animal does {p} have now?"),
              "{p} has a {v}.",
              ("Who has a {v}?", "Who looks after the {v}?"),
              ("What animal is mentioned?", "Which animal is mentioned?")),
    Attribute("food", ("pizza", "soup", "rice", "pasta", "curry", "noodles", "salad", "pancakes", "tacos",
                       "dumplings"),
              ("{p}'s favourite food is {v}.", "{p} loves to eat {v}."),
              ("These days {p} likes {v} best.",),
              ("What is {p}'s favourite food?", "Which food does {p} like best?"),
              "{p} likes {v} best.",
              ("Who likes {v} best?", "Whose favourite food is {v}?"),
              ("What food is mentioned?",)),
    Attribute("instrument", ("piano", "guitar", "violin", "drums", "flute", "cello", "trumpet", "harp"),
              ("{p} plays the {v}.", "{p} takes {v} lessons every week."),
              ("Later, {p} switches to the {v}.",),
              ("Which instrument does {p} play?", "What instrument does {p} play now?"),
              "{p} plays the {v}.",
              ("Who plays the {v}?",),
              ("Which instrument is mentioned?",)),
    Attribute("day", DAYS,
              ("{p}'s birthday party is on {v}.", "{p} plans a party for {v}."),
              ("{p}'s party then moves to {v}.",),
              ("On which day is {p}'s party?", "What day is {p}'s party?"),
              "{p}'s party is on {v}.",
              ("Whose party is on {v}?",),
              ("Which day is mentioned?",)),
    Attribute("friend", PEOPLE,
              ("{p}'s best friend is {v}.", "{v} is {p}'s best friend."),
              ("Later, {p} becomes best friends with {v}.",),
              ("Who is {p}'s best friend?", "Who is {p}'s best friend now?"),
              "{p}'s best friend is {v}."),
    Attribute("game", ("tennis", "football", "chess", "basketball", "golf", "hockey", "cricket", "volleyball"),
              ("{p} plays {v} every weekend.", "{p}'s favourite game is {v}."),
              ("Then {p} takes up {v} instead.",),
              ("Which game does {p} play?", "What game does {p} play now?"),
              "{p} plays {v}.",
              ("Who plays {v}?",),
              ("Which game is mentioned?", "What sport is mentioned?")),
)
# things people did: stated once (no change), asked "What did {p} ...?" or "Who ...?" (``wide`` streams only)
DEEDS = (
    Attribute("found", ("key", "wallet", "ring", "map", "umbrella", "compass", "glove", "torch"),
              ("{p} found a {v} in the park.", "Under a bench, {p} finds an old {v}."),
              (),
              ("What did {p} find?", "What did {p} find in the park?"),
              "{p} found a {v}.",
              ("Who found the {v}?",)),
    Attribute("visited", ("museum", "zoo", "castle", "library", "beach", "harbour", "lake", "market"),
              ("{p} visited the {v} at the weekend.", "Last week {p} went to the {v}."),
              (),
              ("Where did {p} go?", "What did {p} visit?"),
              "{p} went to the {v}.",
              ("Who went to the {v}?", "Who visited the {v}?")),
    Attribute("wrote", ("poem", "song", "story", "letter", "report", "speech", "recipe", "diary"),
              ("{p} wrote a {v} for the school.", "In the evening {p} writes a short {v}."),
              (),
              ("What did {p} write?",),
              "{p} wrote a {v}.",
              ("Who wrote a {v}?",)),
    Attribute("fear", ("thunder", "heights", "storms", "ghosts", "needles", "darkness", "crowds", "lightning"),
              ("{p} is afraid of {v}.", "{p} has always been scared of {v}."),
              (),
              ("What is {p} afraid of?", "What scares {p}?"),
              "{p} is afraid of {v}.",
              ("Who is afraid of {v}?",)),
)
ATTRIBUTES = STANDING + DEEDS


def _value(rng: random.Random, attr: Attribute, avoid: set[str]) -> str:
    return rng.choice([v for v in attr.values if v not in avoid])


def _filler(rng: random.Random, people: list[str], attr: Attribute) -> str:
    """One of the word problems' distractor sentences (weather, buses, ages, ...), with numbers, that names no
    value of the asked attribute ("Tom's teacher loves to sing" would blur "What is Tom's job?")."""
    while True:
        tpl, rr = rng.choice(DISTRACTORS)
        obj, obj2 = rng.sample(OBJECTS, 2)
        r = rng.randint(*rr) if rr else 0
        text = tpl.format(name=people[0], other=people[1], obj=obj, obj2=obj2, r=r,
                          r2=rng.randint(*rr) if rr else 0, colour=rng.choice(COLOURS))
        if not set(re.findall(r"[A-Za-z]+", text)) & set(attr.values):
            return text


def _form(rng: random.Random, attr: Attribute) -> str:
    """How the fact is asked: of the person (1/2 or more), for the person ("Who ...?", 3/10) or, of a stream that
    names one value of the attribute, for that value ("Which city is mentioned?", 1/5)."""
    r = rng.random()
    return "mention" if r < 0.2 and attr.mention else "inverse" if r < 0.5 and attr.inverse else "direct"


def _noise(rng: random.Random, attr: Attribute, others: list[Attribute], people: tuple[str, str, str],
           avoid: set[str], form: str) -> list[tuple[str, None]]:
    """Sentences an ideal policy skips: the asked attribute of someone else, other facts, filler. A "mention"
    stream has only other facts: filler names colours, animals and places of its own."""
    target, other, third = people
    noise: list[tuple[str, None]] = []
    if form != "mention" and rng.random() < 0.7:  # the same attribute of someone else: bind fact to person
        noise.append((rng.choice(attr.facts).format(p=other, v=_value(rng, attr, avoid)), None))
    for b in others[: rng.randint(1, 2)]:
        who = target if rng.random() < 0.6 else rng.choice([other, third])
        noise.append((rng.choice(b.facts).format(p=who, v=_value(rng, b, {*people, who})), None))
    if form != "mention":
        noise += [(_filler(rng, [target, third], attr), None) for _ in range(rng.randint(0, 2))]
    rng.shuffle(noise)
    return noise


def make_recall_problem(seed: int, wide: bool = False) -> Sample:
    """A 2-7 sentence stream of facts and one question about one fact, answered with a word of the stream. With
    probability 1/2 a fact that can change does, later in the stream, and the answer follows the new value.

    ``builtin:recall`` (``wide=False``, what the shipped default trained on): standing facts, asked of the person
    ("Where does Omar live?"). ``builtin:recall-wide``: also deeds, and also asked for the person ("Who lives in
    Tokyo?") or for the one value the stream names ("Which city is mentioned?")."""
    task = "recall-wide" if wide else "recall"
    rng = random.Random(f"{task}:{seed}")
    people = tuple(rng.sample(PEOPLE, 3))
    target = people[0]
    attr, *others = rng.sample(ATTRIBUTES if wide else STANDING, 3)
    form = _form(rng, attr) if wide else "direct"
    avoid = set(people)
    value = _value(rng, attr, avoid)
    avoid.add(value)
    # (sentence, reference thought or None); relevant facts keep their order, the rest is shuffled around them
    relevant = [(rng.choice(attr.facts).format(p=target, v=value), attr.note.format(p=target, v=value))]
    if form != "mention" and attr.changes and rng.random() < 0.5:
        value = _value(rng, attr, avoid)
        avoid.add(value)
        relevant.append((rng.choice(attr.changes).format(p=target, v=value), attr.note.format(p=target, v=value)))
    noise = _noise(rng, attr, others, people, avoid, form)
    total = len(relevant) + len(noise)
    slots = set(rng.sample(range(total), len(relevant)))
    rel, nz = iter(relevant), iter(noise)
    items: list[tuple[str, str | None]] = [next(rel) if pos in slots else next(nz) for pos in range(total)]
    sentences = [s for s, _ in items]
    text = " ".join(sentences)
    chunks = list(chunks_from_text(text, source=f"{task}-{seed}"))
    if [c.text for c in chunks] != sentences:
        raise RuntimeError(f"recall problem {seed}: sentences did not map one-to-one onto chunks")
    notes = [t for _, t in items if t]
    asked = {"direct": attr.questions, "inverse": attr.inverse, "mention": attr.mention}[form]
    return Sample(id=f"{task}-{seed}", question=rng.choice(asked).format(p=target, v=value),
                  answer=target if form == "inverse" else value,
                  modality="text", chunks=chunks, context=text, duration=chunks[-1].end,
                  teacher=[t for _, t in items], teacher_deep=notes[-1], teacher_rtt=" ".join(notes),
                  meta={"seed": seed, "task": task, "attribute": attr.key, "form": form,
                        "changed": len(notes) > 1, "relevant": [t is not None for _, t in items],
                        "deep_is_recap": True})


def recall_problems(split: str, n: int, offset: int = 0, wide: bool = False) -> list[Sample]:
    """``n`` recall problems of ``split`` (the word problems' seed ranges: train and test never share a seed)."""
    return [make_recall_problem(s, wide) for s in seed_range(split, n, offset)]


__all__ = ["ATTRIBUTES", "DEEDS", "STANDING", "Attribute", "make_recall_problem", "recall_problems"]
