import argparse
import dataclasses

import pytest

from adasr_mm.config import AdasrConfig, add_config_flags, apply_config_flags, load_config, sections
from adasr_mm.errors import ConfigError


def test_defaults_yaml_and_overrides(tmp_path):
    cfg = load_config()
    assert cfg.policy.max_thought_tokens == 32 and cfg.text.words_per_minute == 150
    y = tmp_path / "c.yaml"
    y.write_text("policy:\n  max_thought_tokens: 16\n  temperature: 0.7\nsession:\n  mode: read-then-think\n")
    cfg = load_config(y, ["policy.max_deep_tokens=99", "words_per_minute=200", "timestamps=false"])
    assert (cfg.policy.max_thought_tokens, cfg.policy.temperature, cfg.policy.max_deep_tokens) == (16, 0.7, 99)
    assert cfg.session.mode == "read-then-think" and cfg.text.words_per_minute == 200.0
    assert cfg.protocol.timestamps is False
    assert load_config({"run": {"clock": "instant"}}).run.clock == "instant"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["policy.max_thought_tokenz=3"], "unknown config key policy.max_thought_tokenz; valid keys in 'policy'"),
        (["polcy.temperature=1"], "unknown config section 'polcy'; valid sections: policy, protocol"),
        (["policy.max_thought_tokens=abc"], "policy.max_thought_tokens: expected an integer, got 'abc'"),
        (["policy.max_thought_tokens=0"], "max_thought_tokens must be >= 1"),
        (["policy.temperature=-1"], "temperature must be >= 0"),
        (["session.mode=fast"], "mode must be one of stream, read-then-think"),
        (["run.clock=sundial"], "clock must be one of instant, realtime, simulated"),
        (["protocol.timestamps=maybe"], "expected true/false"),
        (["nonsense"], "must look like section.key=value"),
        (["max_thought_tokens=1.5"], "expected an integer"),
    ],
)
def test_bad_keys_and_values_name_the_problem(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(None, overrides)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(lst)
    sec = tmp_path / "sec.yaml"
    sec.write_text("policy: 3\n")
    with pytest.raises(ConfigError, match="section 'policy' must be a mapping"):
        load_config(sec)


def test_cli_flags_come_from_the_dataclasses():
    p = argparse.ArgumentParser()
    add_config_flags(p, AdasrConfig())
    help_text = p.format_help()
    assert "--max-thought-tokens" in help_text and "cap on one streaming thought" in help_text
    args = p.parse_args(["--max-thought-tokens", "8", "--clock", "instant", "--policy", "some/dir"])
    cfg = apply_config_flags(load_config(), args)
    assert cfg.policy.max_thought_tokens == 8 and cfg.run.clock == "instant" and cfg.policy.policy == "some/dir"


def test_every_config_field_is_a_flag():
    """A field two sections share (``max_duration_s``) is a flag in both: the later one's is section-prefixed."""
    p = argparse.ArgumentParser()
    add_config_flags(p, AdasrConfig())
    dests = {a.dest for a in p._actions}
    missing = [f"{name}.{f.name}" for name, section in sections(AdasrConfig()).items()
               for f in dataclasses.fields(section) if f"cfg__{name}__{f.name}" not in dests]
    assert missing == []
    args = p.parse_args(["--max-duration-s", "60", "--video-max-duration-s", "90"])
    cfg = apply_config_flags(load_config(), args)
    assert (cfg.audio.max_duration_s, cfg.video.max_duration_s) == (60, 90)


def test_configs_default_yaml_lists_exactly_the_defaults():
    from pathlib import Path

    from adasr_mm.config import default_yaml_text

    path = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    assert load_config(path) == AdasrConfig()
    assert path.read_text() == default_yaml_text(), "regenerate: python -c 'from adasr_mm.config import ...'"
