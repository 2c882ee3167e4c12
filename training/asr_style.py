"""Chunk text as streaming ASR writes it, for training a policy that reads speech and for measuring how much a
policy depends on tidy text.

Why: the policy is trained mostly on written sentences ("Tom's sister eats 2 of the apples."), but a chunk from
streaming Whisper often has no closing mark (the chunk closed at a pause, not a period), a lower-case first word
(the previous decode ended the sentence elsewhere) and numbers as words ("two"). The shipped 135M policy skipped
exactly such a chunk in ``make demo`` and answered 12 instead of 10; with the period restored it answered 10.
Streaming ASR also loses sentence boundaries: with no period and no pause long enough to end the utterance, two
sentences arrive as one chunk ("Tom has five apples in his basket The weather is sunny and warm today"); the
policy skipped such a chunk in another ``make demo`` run. So a copy also merges neighbouring chunks. Everything is
drawn deterministically from a seed; the thoughts keep their text, so the policy learns the same arithmetic from
either spelling (a merged chunk's thought is its parts' thoughts, see :func:`merged_thought`).
"""

from __future__ import annotations

import dataclasses
import random
import re

from adasr_mm.adapters.asr import TENS_WORDS, UNIT_WORDS
from adasr_mm.chunks import TimedChunk

from .sample import Sample

_TENS = {v: w for w, v in TENS_WORDS.items()}  # 20 -> "twenty": the words the WER normaliser reads back
_CLOSING = ".!?;:"


def number_words(n: int) -> str:
    """0-99 as Whisper spells them ("21" -> "twenty-one"); other numbers stay digits (it writes those as digits)."""
    if 0 <= n < 20:
        return UNIT_WORDS[n]
    if 20 <= n < 100:
        tens, unit = divmod(n, 10)
        return _TENS[10 * tens] + (f"-{UNIT_WORDS[unit]}" if unit else "")
    return str(n)


def names_in(texts: list[str]) -> set[str]:
    """Capitalised words seen other than first in a sentence: names, which ASR keeps capitalised."""
    return {w for t in texts for w in re.findall(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+", t.strip())}


def asr_style_text(text: str, rng: random.Random, p: float = 0.5, names: frozenset[str] | set[str] = frozenset()
                   ) -> str:
    """``text`` with, each with probability ``p``: its closing mark dropped, its first letter lower-cased (not
    "I" or one of ``names``), its whole numbers below 100 written as words."""
    out = text.strip()
    if rng.random() < p:
        out = re.sub(r"(?<![\d.,])\d{1,2}(?![\d]|[.,]\d)", lambda m: number_words(int(m.group())), out)
    first = re.match(r"[A-Za-z]+", out)
    if rng.random() < p and first and first.group()[0].isupper() and first.group() not in {"I", *names}:
        out = out[0].lower() + out[1:]
    if rng.random() < p:
        out = out.rstrip(_CLOSING).rstrip()
    return out or text


def asr_style_chunks(chunks: list[TimedChunk], rng: random.Random, p: float = 0.5) -> list[TimedChunk]:
    """Copies of ``chunks`` with :func:`asr_style_text` applied to each one's text (times and meta kept)."""
    names = names_in([c.text for c in chunks])
    return [dataclasses.replace(c, text=asr_style_text(c.text, rng, p, names)) for c in chunks]


def merge_groups(n: int, rng: random.Random, p: float) -> list[list[int]]:
    """Indices ``0..n-1`` in consecutive groups: each boundary between neighbours is dropped with probability
    ``p``, at most two chunks per group (an 8 s ASR chunk holds two or three spoken sentences)."""
    groups: list[list[int]] = []
    for i in range(n):
        if groups and len(groups[-1]) < 2 and rng.random() < p:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def asr_style_sample(sample: Sample, chunks: list[TimedChunk], seed: int, p: float = 0.5, copy: int = 0
                     ) -> Sample:
    """``sample`` streaming ``chunks`` rewritten ASR-style (seeded by ``seed``, the sample id and ``copy``:
    reproducible, and copy 0 draws what a single copy always drew): :func:`asr_style_text` on each, then
    neighbours merged with probability ``p / 2`` per boundary."""
    rng = random.Random(f"{seed}:{sample.id}" if copy == 0 else f"{seed}:{sample.id}:{copy}")
    styled = asr_style_chunks(chunks, rng, p)
    groups = merge_groups(len(styled), rng, p / 2)
    merged = [dataclasses.replace(styled[g[0]], end=styled[g[-1]].end, text=" ".join(styled[i].text for i in g))
              for g in groups]
    meta = {**sample.meta, "asr_style": p}
    if isinstance(meta.get("relevant"), list) and len(meta["relevant"]) == len(chunks):
        meta["relevant"] = [any(meta["relevant"][i] for i in g) for g in groups]
    teacher = None if sample.teacher is None else [merged_thought([sample.teacher[i] for i in g]) for g in groups]
    return dataclasses.replace(sample, chunks=merged, teacher=teacher, meta=meta)


def merged_thought(thoughts: list[str | None]) -> str | None:
    """The thought for merged chunks: their thoughts in order, except an opening "Starts with N ..." when an
    update follows (the update restates N: "5 + 3 = 8 apples.")."""
    kept = [t.strip() for t in thoughts if t]
    if len(kept) > 1 and kept[0].startswith("Starts with"):
        kept = kept[1:]
    return " ".join(kept) or None
