"""Loading a user's own data as :class:`Sample`s, StreamingThinker SFT traces, and answer checking.

A record (one JSONL line, one ``.json`` list item, or one row of a Hugging Face dataset) holds ``question``,
``answer`` and exactly one stream form:

- ``context``: text, cut into sentence chunks timed at the reading speed (text adapter rules);
- ``audio`` / ``video``: a media path (relative paths resolve against the JSONL file's directory), turned into
  chunks later by ``adasr-mm prepare``;
- ``chunks``: ready chunks, a list of ``{"start", "end", "text"[, "modality"]}``.

Optional: ``id``, ``modality`` (must agree with the stream form), ``teacher`` (one thought or null per chunk),
``teacher_deep``, ``duration``, ``meta``, and for media ``text`` (a reference transcript, kept as ``context``). Hugging Face datasets are read offline only (a local
``save_to_disk`` directory, a local data folder, or a dataset already in the local cache): nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from adasr_mm.adapters.text import chunks_from_iterable, chunks_from_text, segment_text
from adasr_mm.chunks import TimedChunk
from adasr_mm.errors import ConfigError, InputError
from adasr_mm.protocol import extract_boxed
from adasr_mm.training.sample import MODALITIES, Sample

log = logging.getLogger(__name__)

FORMS = ("context", "audio", "video", "chunks")
FORM_MODALITY = {"context": "text", "audio": "audio", "video": "video"}
BUILTIN_DEFAULT_N = 100
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def cache_root() -> Path:
    """adasr-mm's user cache (``$ADASR_MM_CACHE`` or ``~/.cache/adasr-mm``), shared with the model cache."""
    from adasr_mm.models import cache_dir

    return cache_dir()


# -- records -> samples ----------------------------------------------------------------------------------------
def _media_path(value: Any, where: str, key: str, base_dir: Path | None, media_dir: Path | None) -> str:
    """A media reference (path string, or a datasets ``{"path", "bytes"}`` dict) as an absolute path."""
    if isinstance(value, dict):
        path, data = value.get("path"), value.get("bytes")
        if data:  # embedded media (e.g. a parquet-backed dataset): materialise once, by content hash
            digest = hashlib.sha256(data).hexdigest()[:16]
            out = (media_dir or cache_root() / "media") / f"{digest}{Path(path or 'x.wav').suffix or '.wav'}"
            if not out.is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
            return str(out)
        value = path
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: '{key}' must be a file path, got {value!r}")
    p = Path(value).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p.resolve())


def _chunks(value: Any, where: str, modality: str) -> list[TimedChunk]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: 'chunks' must be a non-empty list of {{start, end, text}} objects")
    out = []
    for i, c in enumerate(value):
        if not isinstance(c, dict) or not {"start", "end", "text"} <= c.keys():
            raise InputError(f"{where}: chunk {i} must be an object with start, end and text, got {c!r}")
        try:
            chunk = TimedChunk.from_dict({**c, "modality": c.get("modality", modality)})
        except (ValueError, TypeError) as e:
            raise InputError(f"{where}: chunk {i}: {e}") from None
        chunk.index = i if chunk.index is None else chunk.index
        out.append(chunk)
    return out


def record_to_sample(rec: Any, where: str, modality: str | None = None, base_dir: Path | None = None,
                     default_id: str = "", media_dir: Path | None = None) -> Sample:
    """One record -> a Sample; every problem is an InputError that starts with ``where`` (file and line)."""
    if not isinstance(rec, dict):
        raise InputError(f"{where}: a record must be a JSON object, got {type(rec).__name__}")
    for key in ("question", "answer"):
        if rec.get(key) is None or str(rec[key]).strip() == "":
            raise InputError(f"{where}: missing key '{key}'")
    forms = [k for k in FORMS if rec.get(k) not in (None, "", [])]
    if len(forms) != 1:
        found = f"found {', '.join(forms)}" if forms else "found none"
        raise InputError(f"{where}: a record needs exactly one of {', '.join(FORMS[:-1])} or {FORMS[-1]}; {found}")
    form = forms[0]
    declared = rec.get("modality")
    if declared is not None and declared not in MODALITIES:
        raise InputError(f"{where}: unknown modality {declared!r}; expected one of {', '.join(MODALITIES)}")
    if form == "chunks":
        first = rec["chunks"][0] if isinstance(rec["chunks"], list) and rec["chunks"] else {}
        rec_mod = declared or (first.get("modality") if isinstance(first, dict) else None) or "text"
    else:
        rec_mod = FORM_MODALITY[form]
        if declared is not None and declared != rec_mod:
            raise InputError(f"{where}: mismatched modality: the record says {declared!r} but holds '{form}'")
    if modality is not None and rec_mod != modality:
        raise InputError(f"{where}: mismatched modality: the record is {rec_mod!r} but {modality!r} was requested")
    sid = str(rec.get("id") if rec.get("id") is not None else default_id)
    kw: dict[str, Any] = {"teacher": rec.get("teacher"), "teacher_deep": rec.get("teacher_deep"),
                          "teacher_rtt": rec.get("teacher_rtt"),
                          "duration": rec.get("duration"), "meta": dict(rec.get("meta") or {})}
    if form == "context":
        if not isinstance(rec["context"], str):
            raise InputError(f"{where}: 'context' must be text, got {type(rec['context']).__name__}")
        kw["context"] = rec["context"]
        kw["chunks"] = list(chunks_from_text(rec["context"], source=sid))
        if not kw["chunks"]:
            raise InputError(f"{where}: 'context' has no words to stream")
    elif form == "chunks":
        kw["chunks"] = _chunks(rec["chunks"], where, rec_mod)
    else:
        kw["media"] = _media_path(rec[form], where, form, base_dir, media_dir)
        kw["context"] = rec.get("text") if isinstance(rec.get("text"), str) else None
    try:
        return Sample(id=sid, question=str(rec["question"]), answer=str(rec["answer"]), modality=rec_mod, **kw)
    except ValueError as e:
        raise InputError(f"{where}: {e}") from None


# -- sources ---------------------------------------------------------------------------------------------------
def _json_records(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) from a JSONL file (one object per line) or a ``.json`` list."""
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, list):
            raise InputError(f"{path}: a .json data file must hold a list of records, got {type(data).__name__}")
        for i, rec in enumerate(data):
            yield f"{path}, record {i}", rec
        return
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}, line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            yield f"{path}, line {lineno}", rec


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Force Hugging Face offline mode for one call: cached or local data only, never a download."""
    import datasets.config as dcfg
    import huggingface_hub.constants as hcfg

    saved = (hcfg.HF_HUB_OFFLINE, dcfg.HF_HUB_OFFLINE, getattr(dcfg, "HF_DATASETS_OFFLINE", None))
    hcfg.HF_HUB_OFFLINE = dcfg.HF_HUB_OFFLINE = True
    dcfg.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        hcfg.HF_HUB_OFFLINE, dcfg.HF_HUB_OFFLINE, dcfg.HF_DATASETS_OFFLINE = saved


def _hf_records(source: str, split: str) -> tuple[Iterable[dict[str, Any]], Path | None]:
    """Rows of a local ``save_to_disk`` dir, a local data folder, or a locally cached hub dataset."""
    try:
        import datasets
    except ImportError:
        raise InputError(f"reading {source!r} needs the 'datasets' package (pip install datasets); or pass a "
                         ".jsonl file") from None
    local = Path(source).expanduser()
    with _hub_offline():
        try:
            if local.is_dir() and any((local / n).is_file() for n in ("dataset_dict.json", "state.json")):
                ds: Any = datasets.load_from_disk(str(local))
                if isinstance(ds, datasets.DatasetDict):
                    if split not in ds:
                        raise InputError(f"dataset {source!r} has no split {split!r}; splits: {', '.join(ds)}")
                    ds = ds[split]
            else:
                ds = datasets.load_dataset(str(local) if local.is_dir() else source, split=split)
        except InputError:
            raise
        except ValueError as e:  # unknown split
            raise InputError(f"dataset {source!r}: {str(e).splitlines()[0]}") from None
        except Exception as e:  # noqa: BLE001 - offline misses surface as many exception types
            if local.is_dir():
                raise InputError(f"cannot read dataset directory {source!r}: {str(e).splitlines()[0]}") from None
            raise InputError(f"dataset {source!r} is not a local path and not in the local datasets cache; adasr-mm "
                             "never downloads: fetch it yourself (datasets.load_dataset(...).save_to_disk(DIR)) and "
                             "pass DIR") from None
    for col, feat in ds.features.items():  # keep media undecoded: we only need their paths/bytes
        if type(feat).__name__ in ("Audio", "Video") and getattr(feat, "decode", False):
            ds = ds.cast_column(col, type(feat)(decode=False))
    return ds, local if local.is_dir() else None


def builtin_level(source: str) -> str | None:
    """The level a built-in data source names ("builtin" -> "standard", "builtin:recall" -> "recall"), or None
    for any other source."""
    head, _, level = source.partition(":")
    return (level or "standard") if head == "builtin" else None


def _is_trace(rec: Any) -> bool:
    return isinstance(rec, dict) and ("Instruct_Context" in rec or "streaming_reasoning" in rec)


def load_samples(source: str, split: str = "train", modality: str | None = None, limit: int | None = None,
                 media_dir: Path | None = None) -> list[Sample]:
    """Samples from ``"builtin"`` (seeded tasks), ``"gsm-symbolic[:LANG]"`` (:mod:`.gsm`), a ``.jsonl``/``.json``
    file, or a Hugging Face dataset.

    ``split`` picks the built-in seed range, the GSM-Symbolic template split or the dataset split (JSON files are
    used whole). ``modality`` filters nothing: a record of another modality is an error, so a mixed file is
    noticed, not half-used.
    ``media_dir``: where built-in media are rendered / embedded dataset media are written (default: cache).
    StreamingThinker trace files (``Instruct_Context`` records) are recognised and parsed with their thoughts.
    """
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    level = builtin_level(source)
    if level is not None:
        from .tasks import builtin_task

        n = BUILTIN_DEFAULT_N if limit is None else limit
        return builtin_task(modality or "text", split, n, media_dir or cache_root() / "builtin", level)
    if source == "gsm-symbolic" or source.startswith("gsm-symbolic:"):
        from .gsm import load_gsm_symbolic

        return load_gsm_symbolic(source, split, BUILTIN_DEFAULT_N if limit is None else limit, modality)
    path = Path(source).expanduser()
    base_dir: Path | None = None
    records: Iterable[tuple[str, Any]]
    if path.is_file():
        if path.suffix.lower() not in (".jsonl", ".json"):
            raise InputError(f"data file '{source}' must be .jsonl (one record per line) or .json (a list); "
                             "or pass a Hugging Face dataset directory")
        records = _json_records(path)
        base_dir = path.resolve().parent
        first = next(iter(_json_records(path)), (None, None))[1]
        if _is_trace(first):
            samples = load_streamingthinker_traces(path)
            if modality not in (None, "text"):
                raise InputError(f"{source}: mismatched modality: StreamingThinker traces are text, "
                                 f"{modality!r} was requested")
            samples = samples[:limit] if limit is not None else samples
            if not samples:
                raise InputError(f"no samples in {source}")
            return samples
    elif path.is_dir() or (_HUB_ID.fullmatch(source) and path.suffix.lower() not in (".jsonl", ".json")
                           and not source.startswith((".", "/", "~"))):
        rows, base_dir = _hf_records(source, split)
        records = ((f"{source} [{split}] row {i}", r) for i, r in enumerate(rows))
    else:
        raise InputError(f"data file '{source}' does not exist")
    stem = path.stem if path.is_file() else Path(source).name or "data"
    out: list[Sample] = []
    for i, (where, rec) in enumerate(records):
        if limit is not None and len(out) >= limit:
            break
        out.append(record_to_sample(rec, where, modality, base_dir, default_id=f"{stem}-{i}",
                                    media_dir=media_dir))
    if not out:
        raise InputError(f"no samples in {source}" + (f" (split {split!r})" if base_dir is None else ""))
    ids = [s.id for s in out]
    if len(set(ids)) != len(ids):
        dup = next(x for x in ids if ids.count(x) > 1)
        raise InputError(f"{source}: duplicate sample id {dup!r}; ids must be unique (chunk caches are keyed by it)")
    return out


# -- StreamingThinker traces -----------------------------------------------------------------------------------
_ALIASES = {
    "question": ("question", "instruction", "instruct", "query"),
    "context": ("context", "input", "passage"),
    "segments": ("segments", "sentences", "chunks"),
    "thoughts": ("thoughts", "stream_thoughts", "reasoning_steps"),
    "answer": ("answer", "output", "final_answer", "result"),
    "deep": ("deep_reasoning", "deep", "reasoning"),
}


def _pick(rec: dict[str, Any], key: str) -> Any:
    for k in _ALIASES[key]:
        if rec.get(k) not in (None, "", []):
            return rec[k]
    return None


def _unbox(s: str) -> str:
    """Content of the last ``\\boxed{...}`` / ``\\box{...}`` (the protocol's one parser), else ``s`` itself."""
    boxed = extract_boxed(s)
    return boxed if boxed is not None else s.strip()


def _clean_deep(s: str) -> str:
    """Deep reasoning without the protocol markers and the closing "Therefore, the answer is ..." line."""
    s = re.sub(r"(?:<EOF>)?\s*Therefore,? the answer is[^<]*(?:<EOA>)?\s*$", "", s.strip(), flags=re.S | re.I)
    s = re.sub(r"<EO[RFA]>", " ", s)
    return " ".join(s.split())


def _trace_to_sample(rec: Any, where: str, sid: str) -> Sample:
    if not isinstance(rec, dict):
        raise InputError(f"{where}: a trace must be a JSON object, got {type(rec).__name__}")
    ic = rec.get("Instruct_Context") if isinstance(rec.get("Instruct_Context"), dict) else {}
    question = _pick(ic, "question") or _pick(rec, "question")
    answer = _pick(rec, "answer")
    if not question or answer is None:
        raise InputError(f"{where}: missing key '{'question' if not question else 'answer'}' "
                         f"(accepted: {', '.join(_ALIASES['question' if not question else 'answer'])})")
    segments = _pick(ic, "segments") or _pick(rec, "segments")
    if segments is None:
        context = _pick(ic, "context") or _pick(rec, "context")
        if not isinstance(context, str):
            raise InputError(f"{where}: no context (accepted: {', '.join(_ALIASES['context'] + _ALIASES['segments'])})")
        parts = context.split("<EOS>") if "<EOS>" in context else segment_text(context)
        segments = [p.strip() for p in parts if p.strip()]
    if not isinstance(segments, list) or not segments or not all(isinstance(x, str) for x in segments):
        raise InputError(f"{where}: the context segments must be a non-empty list of strings")
    thoughts: Any = _pick(rec, "thoughts")
    restated = None
    if thoughts is None and isinstance(rec.get("streaming_reasoning"), str):
        text = rec["streaming_reasoning"]
        if "<EOQ>" in text:
            restated, text = text.split("<EOQ>", 1)
        thoughts = [t for t in (p.strip() for p in text.split("<EOT>")) if t]
    teacher: list[str | None] | None = None
    if thoughts is not None:
        if not isinstance(thoughts, list):
            raise InputError(f"{where}: thoughts must be a list (one per segment), got {type(thoughts).__name__}")
        if len(thoughts) != len(segments):
            raise InputError(f"{where}: {len(thoughts)} streaming thoughts for {len(segments)} context segments; "
                             "they must align one to one")
        teacher = [(str(t).strip() or None) if t is not None else None for t in thoughts]
    deep = _pick(rec, "deep")
    chunks = list(chunks_from_iterable(segments, source=sid))
    meta: dict[str, Any] = {"task": "streamingthinker"}
    if restated:
        meta["question_thought"] = restated.strip()
    return Sample(id=sid, question=str(question).strip(), answer=_unbox(str(answer)), modality="text",
                  chunks=chunks, context=" ".join(segments), duration=chunks[-1].end, teacher=teacher,
                  teacher_deep=_clean_deep(deep) if isinstance(deep, str) else None, meta=meta)


def load_streamingthinker_traces(path: str | Path) -> list[Sample]:
    """Samples with per-chunk teacher thoughts from StreamingThinker SFT traces (a JSON list or JSONL).

    The released format (``data/example_D2.json`` of the StreamingThinker code)::

        {"Instruct_Context": {"context": "Sentence one.<EOS> Sentence two.<EOS>", "instruct": "Question?"},
         "streaming_reasoning": "Restated question.<EOQ> Thought on one.<EOT> Thought on two.<EOT>",
         "deep_reasoning": "Final reasoning ... <EOR> Therefore, the answer is \\box{5}.<EOA>",
         "answer": "\\boxed{5}"}

    Also accepted, flat, with aliases: question|instruction|instruct|query; context|input|passage (split at
    ``<EOS>`` or into sentences) or segments|sentences|chunks (a list); thoughts|stream_thoughts|reasoning_steps
    (a list, null/"" = skip); answer|output|final_answer|result (``\\boxed{}`` is unwrapped);
    deep_reasoning|deep|reasoning; optional id. Thoughts must align one to one with the segments (InputError
    otherwise); each segment becomes one chunk timed at 150 words/min. The restated question before ``<EOQ>``
    is kept in ``meta["question_thought"]``.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"trace file '{path}' does not exist")
    if p.suffix.lower() == ".json":
        recs = list(_json_records(p))
    else:
        try:  # a .jsonl, or a JSON list under another extension
            data = json.loads(p.read_text(encoding="utf-8"))
            recs = [(f"{p}, record {i}", r) for i, r in enumerate(data)] if isinstance(data, list) else []
        except json.JSONDecodeError:
            recs = []
        recs = recs or list(_json_records(p))
    out = [_trace_to_sample(rec, where, str(rec.get("id")) if isinstance(rec, dict) and rec.get("id") is not None
                            else f"{p.stem}-{i}") for i, (where, rec) in enumerate(recs)]
    if not out:
        raise InputError(f"no samples in {path}")
    return out


# -- answer checking -------------------------------------------------------------------------------------------
_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"
_NUMBER_AND_UNIT = re.compile(rf"(?:[$€£]\s*)?({_NUM})\s*(?:%|[^\W\d_][^\W\d_\s'/-]*(?:[\s'/-]+[^\W\d_]+)*)?", re.I)
_FRACTION = re.compile(r"([-+]?\d+)\s*/\s*(\d+)")
_LETTER = re.compile(r"\(?\s*(?:option\s+)?([a-e])\s*\)?[.:)]?", re.I)
_LEAD = re.compile(r"^(?:so,?\s+)?(?:the\s+)?(?:final\s+)?answer\b\s*(?:is|:)?\s*[:=]?\s*", re.I)
_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                     "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}


def _core(s: str) -> str:
    s = _unbox(str(s))
    s = _LEAD.sub("", s.strip())
    return s.strip().rstrip(".").strip()


def _number(s: str) -> Fraction | None:
    m = _NUMBER_AND_UNIT.fullmatch(s)
    if m:
        return Fraction(m.group(1).replace(",", ""))
    m = _FRACTION.fullmatch(s)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    if s.lower() in _WORDS:
        return Fraction(_WORDS[s.lower()])
    return None


def _loose_number(s: str) -> Fraction | None:
    """A number stated in a sentence: the result after the last '=', or the only number mentioned."""
    if "=" in s:
        return _number(s.rsplit("=", 1)[1].strip().rstrip(".").strip())
    nums = {Fraction(x.replace(",", "")) for x in re.findall(_NUM, s)}
    return nums.pop() if len(nums) == 1 else None


def _letter(s: str, loose: bool = False) -> str | None:
    m = _LETTER.fullmatch(s)
    if m is None and loose:  # "(B) 42 apples", "B) 42", "B. because ..."
        m = re.match(r"\(([a-e])\)|([a-e])[.):](?:\s|$)", s, re.I)
        if m:
            return (m.group(1) or m.group(2)).lower()
    return m.group(1).lower() if m else None


def _text(s: str) -> str:
    words = re.sub(r"[^\w\s]", " ", s.lower()).split()
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def check_answer(pred: str, gold: str) -> bool:
    """Whether ``pred`` states ``gold``: numbers numerically ("$1,000.0 apples" == "1000"), option letters
    ("(B)", "B." -> b), anything else case-, punctuation-, article- and whitespace-insensitively."""
    p, g = _core(pred), _core(gold)
    if not p:
        return False
    gn = _number(g)
    if gn is not None:
        pn = _number(p)
        pn = pn if pn is not None else _loose_number(p)
        return pn is not None and pn == gn
    gl = _letter(g)
    if gl is not None:
        return _letter(p, loose=True) == gl
    return _text(p) == _text(g) and _text(g) != ""


__all__ = ["BUILTIN_DEFAULT_N", "FORMS", "builtin_level", "cache_root", "check_answer", "load_samples",
           "load_streamingthinker_traces", "record_to_sample"]
