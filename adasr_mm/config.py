"""One config tree for Python, YAML and CLI flags.

Each component owns a ``@dataclass`` config whose fields carry ``metadata={"help": ...}`` (TRL style);
:class:`AdasrConfig` nests them by section. The same classes drive YAML files (``policy: {max_thought_tokens: 16}``),
``key=value`` overrides (``policy.max_thought_tokens=16``, or just ``max_thought_tokens=16`` when unambiguous) and
``--max-thought-tokens`` flags. Unknown keys and bad values raise :class:`ConfigError` naming the valid choices.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clock import CLOCKS
from .errors import ConfigError
from .pipeline import PipelineConfig
from .policy import PolicyConfig
from .protocol import ProtocolConfig
from .session import SessionConfig


@dataclass
class RunConfig:
    """How ``adasr-mm run`` feeds its input."""

    clock: str = field(default="simulated", metadata={"help": "instant, realtime or simulated (compute-aware)"})
    modality: str = field(default="auto", metadata={"help": "auto (from the file type) or an adapter name"})

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")


def _text_config() -> Any:
    from .adapters.text import TextAdapterConfig

    return TextAdapterConfig()


def _asr_config() -> Any:
    from .adapters.asr import ASRConfig

    return ASRConfig()


def _audio_config() -> Any:
    from .adapters.audio import AudioAdapterConfig

    return AudioAdapterConfig()


def _video_config() -> Any:
    from .adapters.video import VideoConfig

    return VideoConfig()


@dataclass
class AdasrConfig:
    """Every runtime setting, by section."""

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    run: RunConfig = field(default_factory=RunConfig)
    text: Any = field(default_factory=_text_config)
    asr: Any = field(default_factory=_asr_config)
    audio: Any = field(default_factory=_audio_config)
    video: Any = field(default_factory=_video_config)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in dataclasses.fields(self)}


def sections(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def _field_types(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the field's annotated type (str -> int/float/bool, '' / none -> None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        tp = args[0]
    if tp is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            num = float(value) if tp is float else int(str(value).strip()) if isinstance(value, str) else value
        except ValueError:
            raise ConfigError(f"{where}: expected {'an integer' if tp is int else 'a number'}, got {value!r}") from None
        if tp is int and (not isinstance(num, int) and not (isinstance(num, float) and num.is_integer())):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return tp(num)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _rebuild(section: Any, name: str, updates: dict[str, Any]) -> Any:
    """A new section dataclass with ``updates`` applied, re-running its validation."""
    types_ = _field_types(section)
    valid = [f.name for f in dataclasses.fields(section)]
    values = dataclasses.asdict(section)
    for key, value in updates.items():
        if key not in types_:
            raise ConfigError(f"unknown config key {name}.{key}; valid keys in '{name}': {', '.join(valid)}")
        values[key] = _coerce(value, types_[key], f"{name}.{key}")
    try:
        return type(section)(**values)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"bad value in config section '{name}': {e}") from None


def update_config(cfg: AdasrConfig, tree: dict[str, Any]) -> AdasrConfig:
    """Apply a nested ``{section: {key: value}}`` mapping (as read from YAML)."""
    if not isinstance(tree, dict):
        raise ConfigError(f"config must be a mapping of sections, got {type(tree).__name__}")
    secs = sections(cfg)
    for name, body in tree.items():
        if name not in secs:
            raise ConfigError(f"unknown config section '{name}'; valid sections: {', '.join(secs)}")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"config section '{name}' must be a mapping, got {body!r}")
        setattr(cfg, name, _rebuild(getattr(cfg, name), name, body))
    return cfg


def parse_override(cfg: AdasrConfig, item: str) -> tuple[str, str, str]:
    """``section.key=value`` or ``key=value`` (unique key) -> (section, key, value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, value = item.split("=", 1)
    key = key.strip().replace("-", "_")
    secs = sections(cfg)
    if "." in key:
        name, sub = key.split(".", 1)
        if name not in secs:
            raise ConfigError(f"unknown config section '{name}'; valid sections: {', '.join(secs)}")
        return name, sub, value
    owners = [n for n, s in secs.items() if key in {f.name for f in dataclasses.fields(s)}]
    if not owners:
        raise ConfigError(f"unknown config key {key!r}; use section.key with a section of: {', '.join(secs)}")
    if len(owners) > 1:
        raise ConfigError(f"config key {key!r} is ambiguous; write one of: {', '.join(o + '.' + key for o in owners)}")
    return owners[0], key, value


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections, got {type(data).__name__}")
    return data


def load_config(source: str | Path | dict[str, Any] | None = None, overrides: list[str] | None = None,
                defaults: AdasrConfig | None = None) -> AdasrConfig:
    """Defaults <- YAML file or dict <- ``key=value`` overrides.

    ``defaults``: the object to fill (e.g. a subclass with extra sections, like the app's); a fresh
    :class:`AdasrConfig` when None."""
    cfg = AdasrConfig() if defaults is None else defaults
    if isinstance(source, (str, Path)):
        update_config(cfg, load_yaml(source))
    elif isinstance(source, dict):
        update_config(cfg, source)
    elif source is not None:
        raise ConfigError(f"config must be a YAML path or a dict, got {type(source).__name__}")
    for item in overrides or []:
        name, key, value = parse_override(cfg, item)
        update_config(cfg, {name: {key: value}})
    return cfg


# -- CLI flags generated from the same dataclasses ---------------------------------------------------------------
def add_config_flags(parser: argparse.ArgumentParser, cfg: AdasrConfig, skip: set[str] = frozenset()) -> None:
    """Add ``--field-name`` for every field of every section (values left None = "not given").

    Where two sections share a field name (``audio.max_duration_s``, ``video.max_duration_s``) the first section
    owns ``--max-duration-s`` and the later one gets ``--video-max-duration-s``, so every field is a flag."""
    seen: dict[str, str] = {}
    for name, section in sections(cfg).items():
        group = parser.add_argument_group(f"{name} settings")
        for f in dataclasses.fields(section):
            if f.name in skip:
                continue
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            if flag in seen:
                flag = f"--{name}-{f.name}".replace("_", "-")
            seen[flag] = name
            default = getattr(section, f.name)
            shown = "" if isinstance(default, str) and len(default) > 40 else f" (default: {default})"
            group.add_argument(flag, dest=f"cfg__{name}__{f.name}", default=None, metavar=f.name.upper(),
                               help=f.metadata.get("help", "") + shown)


def parse_args_with_overrides(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args`` that also takes ``section.key=value`` overrides after the flags.

    argparse fills a ``nargs="*"`` positional only where it stands, so ``run IN -q Q asr.min_chunk_s=2`` was
    rejected as an unrecognised argument; leftovers of that shape join ``args.overrides`` (when the command has
    them), anything else is still an error.
    """
    args, extra = parser.parse_known_args(argv)
    late = [a for a in extra if not a.startswith("-") and "=" in a and hasattr(args, "overrides")]
    rest = [a for a in extra if a not in late]
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if late:
        args.overrides = [*(args.overrides or []), *late]
    return args


def apply_config_flags(cfg: AdasrConfig, args: argparse.Namespace) -> AdasrConfig:
    updates: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if dest.startswith("cfg__") and value is not None:
            _, name, key = dest.split("__", 2)
            updates.setdefault(name, {})[key] = value
    return update_config(cfg, updates)


def default_yaml_text() -> str:
    """``configs/default.yaml``: every section and key with its help text and default (kept in sync by a test)."""
    import yaml

    cfg = AdasrConfig()
    lines = ["# Every runtime setting with its default. Any subset of this file works as --config; keys map 1:1 to",
             "# overrides (policy.max_thought_tokens=16) and, but for protocol.system_prompt, to CLI flags",
             "# (--max-thought-tokens; a name two sections share: --video-max-duration-s).", ""]
    for name, section in sections(cfg).items():
        lines.append(f"{name}:")
        for f in dataclasses.fields(section):
            v = getattr(section, f.name)
            dumped = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
            lines.append(f"  # {f.metadata.get('help', '')}")
            lines.append(f"  {f.name}: {dumped}")
        lines.append("")
    return "\n".join(lines)
