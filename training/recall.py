"""Built-in fact-recall streams: a question about one fact stated in the stream, answered with a word from it.

Why: the word problems teach the policy to keep a running number, and nothing else. A user also asks "Where does
Anna live?" or "Who is Tom's best friend?" about a recording, and a policy trained on numbers alone answers those
with a number. A recall stream states facts about two or three people; the asked fact may change later in the
stream ("Later, Anna moves to Oslo."), so the policy has to bind each fact to its person and keep the latest
value. The same attribute of another person, other facts about the asked person and the word problems' filler
sentences are distractors that an ideal policy skips; ``teacher`` notes each relevant fact as it arrives.

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


PEOPLE = tuple(n for n, _ in NAMES)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

ATTRIBUTES = (
    Attribute("city", ("Paris", "London", "Madrid", "Tokyo", "Cairo", "Lima", "Oslo", "Dublin", "Vienna", "Boston",
                       "Sydney", "Berlin"),
              ("{p} lives in {v}.", "{p} has a small flat in {v}."),
              ("Later, {p} moves to {v}.", "Then {p} moves to {v} for a new job."),
              ("Where does {p} live?", "In which city does {p} live?", "Which city does {p} live in now?"),
              "{p} lives in {v}."),
    Attribute("bike", (*COLOURS, "black", "white", "brown"),
              ("{p}'s bike is {v}.", "{p} rides a {v} bike."),
              ("Then {p} paints the bike {v}.", "Later, {p} buys a new {v} bike."),
              ("What colour is {p}'s bike?", "What colour is {p}'s bike now?"),
              "{p}'s bike is {v}."),
    Attribute("job", ("nurse", "pilot", "baker", "farmer", "lawyer", "chef", "teacher", "dentist", "plumber",
                      "painter", "driver", "singer"),
              ("{p} works as a {v}.", "{p} is a {v} in the town."),
              ("Later, {p} becomes a {v}.", "Then {p} starts a new job as a {v}."),
              ("What is {p}'s job?", "What does {p} work as?", "What is {p}'s job now?"),
              "{p} is a {v}."),
    Attribute("pet", ("dog", "cat", "rabbit", "parrot", "turtle", "hamster", "goldfish", "pony"),
              ("{p} has a pet {v}.", "{p} looks after a small {v} at home."),
              ("Then {p} gives the pet away and gets a {v}.",),
              ("What pet does {p} have?", "What animal does {p} have now?"),
              "{p} has a {v}."),
    Attribute("food", ("pizza", "soup", "rice", "pasta", "curry", "noodles", "salad", "pancakes", "tacos",
                       "dumplings"),
              ("{p}'s favourite food is {v}.", "{p} loves to eat {v}."),
              ("These days {p} likes {v} best.",),
              ("What is {p}'s favourite food?", "Which food does {p} like best?"),
              "{p} likes {v} best."),
    Attribute("instrument", ("piano", "guitar", "violin", "drums", "flute", "cello", "trumpet", "harp"),
              ("{p} plays the {v}.", "{p} takes {v} lessons every week."),
              ("Later, {p} switches to the {v}.",),
              ("Which instrument does {p} play?", "What instrument does {p} play now?"),
              "{p} plays the {v}."),
    Attribute("day", DAYS,
              ("{p}'s birthday party is on {v}.", "{p} plans a party for {v}."),
              ("{p}'s party then moves to {v}.",),
              ("On which day is {p}'s party?", "What day is {p}'s party?"),
              "{p}'s party is on {v}."),
    Attribute("friend", PEOPLE,
              ("{p}'s best friend is {v}.", "{v} is {p}'s best friend."),
              ("Later, {p} becomes best friends with {v}.",),
              ("Who is {p}'s best friend?", "Who is {p}'s best friend now?"),
              "{p}'s best friend is {v}."),
    Attribute("game", ("tennis", "football", "chess", "basketball", "golf", "hockey", "cricket", "volleyball"),
              ("{p} plays {v} every weekend.", "{p}'s favourite game is {v}."),
              ("Then {p} takes up {v} instead.",),
              ("Which game does {p} play?", "What game does {p} play now?"),
              "{p} plays {v}."),
)


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


def make_recall_problem(seed: int) -> Sample:
    """A 2-7 sentence stream of facts and one question about a fact of one person; the answer is a word of the
    stream. With probability 1/2 the asked fact changes later in the stream (the answer is the new value)."""
    rng = random.Random(f"recall:{seed}")
    target, other, third = rng.sample(PEOPLE, 3)
    attr, *others = rng.sample(ATTRIBUTES, 3)
    avoid = {target, other, third}
    first = _value(rng, attr, avoid)
    avoid.add(first)
    # (sentence, reference thought or None); relevant facts keep their order, the rest is shuffled around them
    relevant = [(rng.choice(attr.facts).format(p=target, v=first), attr.note.format(p=target, v=first))]
    answer = first
    if rng.random() < 0.5:
        answer = _value(rng, attr, avoid)
        avoid.add(answer)
        relevant.append((rng.choice(attr.changes).format(p=target, v=answer), attr.note.format(p=target, v=answer)))
    noise: list[tuple[str, None]] = []
    if rng.random() < 0.7:  # the same attribute of someone else: the fact must be bound to the right person
        noise.append((rng.choice(attr.facts).format(p=other, v=_value(rng, attr, avoid)), None))
    for b in others[: rng.randint(1, 2)]:
        who = target if rng.random() < 0.6 else rng.choice([other, third])
        noise.append((rng.choice(b.facts).format(p=who, v=_value(rng, b, {target, other, third, who})), None))
    noise += [(_filler(rng, [target, third], attr), None) for _ in range(rng.randint(0, 2))]
    rng.shuffle(noise)
    total = len(relevant) + len(noise)
    slots = set(rng.sample(range(total), len(relevant)))
    rel, nz = iter(relevant), iter(noise)
    items: list[tuple[str, str | None]] = [next(rel) if pos in slots else next(nz) for pos in range(total)]
    sentences = [s for s, _ in items]
    text = " ".join(sentences)
    chunks = list(chunks_from_text(text, source=f"recall-{seed}"))
    if [c.text for c in chunks] != sentences:
        raise RuntimeError(f"recall problem {seed}: sentences did not map one-to-one onto chunks")
    notes = [t for _, t in items if t]
    return Sample(id=f"recall-{seed}", question=rng.choice(attr.questions).format(p=target), answer=answer,
                  modality="text", chunks=chunks, context=text, duration=chunks[-1].end,
                  teacher=[t for _, t in items], teacher_deep=notes[-1], teacher_rtt=" ".join(notes),
                  meta={"seed": seed, "task": "recall", "attribute": attr.key, "changed": len(notes) > 1,
                        "relevant": [t is not None for _, t in items], "deep_is_recap": True})


def recall_problems(split: str, n: int, offset: int = 0) -> list[Sample]:
    """``n`` recall problems of ``split`` (the word problems' seed ranges: train and test never share a seed)."""
    return [make_recall_problem(s) for s in seed_range(split, n, offset)]


__all__ = ["ATTRIBUTES", "Attribute", "make_recall_problem", "recall_problems"]
