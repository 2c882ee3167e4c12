"""Run the frozen adapters (ASR, video describer) once per media file and cache their chunks.

Why: during RL the same clip is rolled out many times, and the ASR and describer never change, so their output
is a pure function of (media file, adapter config). ``prepare`` stores it in a JSONL cache, one file per adapter
config hash and one line per media file (keyed by path, mtime and size), so training never pays for Whisper twice.
Failures are reported per sample, never silently dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adasr_mm.chunks import TimedChunk
from adasr_mm.errors import AdasrError, ConfigError, ModelLoadError
from adasr_mm.training.data import builtin_level, cache_root, load_samples
from adasr_mm.training.sample import Sample
from adasr_mm.training.tasks import BUILTIN_SOURCES

#: Config sections each adapter's output depends on (the cache key hashes exactly these).
ADAPTER_SECTIONS = {"text": ("text",), "audio": ("asr", "audio"), "video": ("video",), "av": ("asr", "audio", "video")}
#: Fields that cannot change the chunk text (threads, keeping frames in memory): a change keeps the cache valid.
IGNORED_FIELDS = frozenset({"cpu_threads", "keep_frames"})
BUILTIN_PREPARE_N = 8


def default_cache_dir() -> Path:
    """``$ADASR_MM_CACHE/chunks`` or ``~/.cache/adasr-mm/chunks``."""
    return cache_root() / "chunks"


def adapter_for(sample: Sample, config: Any) -> str:
    """The adapter that turns this sample's media into chunks (``av`` for video when ``run.modality=av``)."""
    if sample.modality == "video" and getattr(getattr(config, "run", None), "modality", "auto") == "av":
        return "av"
    return sample.modality


def cache_key(adapter: str, config: Any) -> tuple[str, dict[str, Any]]:
    """Short sha256 of the adapter name + its config sections, and the hashed payload (saved beside the cache)."""
    payload: dict[str, Any] = {"adapter": adapter}
    for sec in ADAPTER_SECTIONS[adapter]:
        values = dataclasses.asdict(getattr(config, sec))
        payload[sec] = {k: v for k, v in sorted(values.items()) if k not in IGNORED_FIELDS}
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12], payload


def _jsonable(x: Any) -> Any:
    item = getattr(x, "item", None)  # numpy scalars
    return item() if callable(item) else str(x)


class ChunkCache:
    """One adapter config's JSONL cache: media path -> the latest entry (later lines win; bad lines are ignored)."""

    def __init__(self, path: Path, payload: dict[str, Any]) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        side = path.with_suffix(".config.json")
        if not side.exists():
            side.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    e = json.loads(line)
                    self.entries[e["media"]] = e
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by an interrupted run: that media is simply recomputed

    def get(self, media: str, st: os.stat_result) -> dict[str, Any] | None:
        e = self.entries.get(media)
        if e and e.get("media_mtime") == st.st_mtime and e.get("media_size") == st.st_size:
            return e
        return None

    def put(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, default=_jsonable)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
        self.entries[entry["media"]] = json.loads(line)


@dataclass
class PrepareReport:
    """What ``prepare`` did: the usable samples (chunks filled) and every sample it could not use, with why.

    ``cached`` / ``computed`` count the prepared media samples whose chunks came from the cache / an adapter run.
    """

    samples: list[Sample] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cached: int = 0
    computed: int = 0
    #: the cache file used (the first one when samples of several adapters were prepared; see ``cache_files``)
    cache_file: Path | None = None
    cache_files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        where = ", ".join(str(p) for p in self.cache_files.values()) or "(no media: nothing cached)"
        return (f"prepared {len(self.samples)} samples ({self.cached} cached, {self.computed} computed, "
                f"{len(self.failed)} failed) -> {where}")


def _finish(sample: Sample, chunks: list[TimedChunk], duration: float | None) -> Sample:
    """The sample with its chunks; reference thoughts are kept only where they align one to one."""
    teacher = sample.teacher if sample.teacher is not None and len(sample.teacher) == len(chunks) else None
    meta = dict(sample.meta)
    text_teacher = meta.get("text_teacher")
    if teacher is None and isinstance(text_teacher, list) and len(text_teacher) == len(chunks):
        teacher = text_teacher  # the ASR found one chunk per spoken sentence
        if "text_relevant" in meta:
            meta["relevant"] = meta["text_relevant"]
    return dataclasses.replace(sample, chunks=chunks, teacher=teacher, meta=meta,
                               duration=sample.duration if sample.duration is not None else duration)


def _compute(sample: Sample, adapter: str, config: Any) -> tuple[list[dict[str, Any]], float | None]:
    from adasr_mm.adapters import open_input

    src = open_input(str(sample.media), adapter, config)
    out = []
    for c in src:  # no clock bound: the instant clock, as fast as the adapter runs
        c.frames, c.audio = None, None
        out.append(c.to_dict())
    return out, getattr(src, "duration", None)


def prepare(samples: list[Sample], config: Any, cache_dir: Path, progress: bool = True) -> PrepareReport:
    """Fill ``chunks`` of media samples from the cache or by running their adapter once.

    Samples that already have chunks pass through; text-only samples are chunked with ``config.text`` (cheap,
    not cached). A sample whose adapter raises, or that yields no chunks, lands in ``failed`` as (id, message);
    a model that cannot load (ModelLoadError) or a bad config is not per-sample and is raised.
    """
    from tqdm.auto import tqdm

    from adasr_mm.adapters.text import chunks_from_text

    report = PrepareReport()
    caches: dict[str, ChunkCache] = {}
    for s in tqdm(samples, desc="prepare", unit="sample", disable=not progress):
        if s.chunks is not None:
            report.samples.append(s)
            continue
        if s.media is None:
            chunks = list(chunks_from_text(s.context or "", config.text, source=s.id))
            if not chunks:
                report.failed.append((s.id, "context has no words to stream"))
            else:
                report.samples.append(_finish(s, chunks, chunks[-1].end))
            continue
        adapter = adapter_for(s, config)
        if adapter not in caches:
            key, payload = cache_key(adapter, config)
            caches[adapter] = ChunkCache(Path(cache_dir) / f"{adapter}-{key}.jsonl", payload)
            report.cache_files[adapter] = caches[adapter].path
            report.cache_file = report.cache_file or caches[adapter].path
        cache = caches[adapter]
        media = str(Path(s.media).expanduser().resolve())
        try:
            st = os.stat(media)
        except OSError as e:
            why = "does not exist" if isinstance(e, FileNotFoundError) else f"cannot be read ({e.strerror})"
            report.failed.append((s.id, f"input file '{s.media}' {why}"))
            continue
        try:
            entry = cache.get(media, st)
            hit = entry is not None
            if entry is None:  # an empty result is cached too: silence stays silent
                dicts, duration = _compute(s, adapter, config)
                entry = {"id": s.id, "media": media, "media_mtime": st.st_mtime, "media_size": st.st_size,
                         "duration": duration, "chunks": dicts}
                cache.put(entry)
            chunks = [TimedChunk.from_dict(d) for d in entry["chunks"]]
        except (ModelLoadError, ConfigError):
            raise
        except AdasrError as e:
            report.failed.append((s.id, str(e)))
            continue
        except Exception as e:  # noqa: BLE001 - any adapter failure is reported with the sample, not fatal
            report.failed.append((s.id, f"{type(e).__name__}: {e}"))
            continue
        if not chunks:
            report.failed.append((s.id, f"'{s.media}' produced no chunks (nothing heard or seen)"))
            continue
        report.samples.append(_finish(s, chunks, entry.get("duration")))
        if hit:
            report.cached += 1
        else:
            report.computed += 1
    return report


# -- CLI -------------------------------------------------------------------------------------------------------
def add_prepare_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``adasr-mm prepare``."""
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. asr.model=base")
    parser.add_argument("--data", required=True,
                        help=f"{BUILTIN_SOURCES}, a .jsonl/.json file, or a Hugging Face dataset directory / cached id")
    parser.add_argument("--modality", choices=("text", "audio", "video"), default=None,
                        help="modality of the samples (builtin: which task; files: every record must match); "
                             "video with run.modality=av also transcribes the soundtrack")
    parser.add_argument("--split", default="train", help="builtin seed range or dataset split (default: train)")
    parser.add_argument("--n", type=int, default=None,
                        help=f"number of samples (builtin default: {BUILTIN_PREPARE_N}; files: all)")
    parser.add_argument("--config", help="YAML config file (its asr/audio/video sections key the cache)")
    parser.add_argument("--cache-dir", default=None,
                        help="where chunk caches live (default: $ADASR_MM_CACHE/chunks or ~/.cache/adasr-mm/chunks)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_prepare(args: argparse.Namespace) -> int:
    """``adasr-mm prepare``: one line per failed sample, then the summary line; exit 1 if nothing was prepared."""
    from adasr_mm.config import load_config

    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise ConfigError(f"unexpected argument {bad[0]!r}: overrides are key=value (pass data with --data)")
    cfg = load_config(args.config, args.overrides)
    builtin = builtin_level(args.data) is not None
    n = args.n if args.n is not None else (BUILTIN_PREPARE_N if builtin else None)
    samples = load_samples(args.data, args.split, args.modality, n)
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    report = prepare(samples, cfg, cache_dir, progress=not args.quiet)
    for sid, msg in report.failed:
        print(f"failed: {sid}: {msg}")
    print(report.summary())
    return 0 if report.samples else 1


__all__ = ["ChunkCache", "PrepareReport", "add_prepare_args", "adapter_for", "cache_key", "default_cache_dir",
           "prepare", "run_prepare"]
