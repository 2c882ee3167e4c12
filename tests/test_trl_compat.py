"""The TRL internals the streaming trainers override are present; a change to any of them is a loud, clear error."""

from __future__ import annotations

import pytest

from adasr_mm.training import trl_compat
from adasr_mm.training.trl_compat import TRLCompatError, check_trl_internals, trl_problems


def test_installed_trl_has_every_internal_we_override():
    assert trl_problems() == []
    check_trl_internals()


@pytest.mark.parametrize("break_it, named", [
    (lambda mp, G, U: mp.delattr(G, "_generate_and_score_completions"), "_generate_and_score_completions is gone"),
    (lambda mp, G, U: mp.setattr(G, "_get_train_sampler", lambda self: None), "_get_train_sampler changed its sig"),
    (lambda mp, G, U: mp.delattr(U, "RepeatSampler"), "RepeatSampler is gone"),
    (lambda mp, G, U: mp.setattr(G, "_compute_loss", lambda self, model, inputs: None), "(B, T) advantages"),
    (lambda mp, G, U: mp.setattr(G, "_generate", lambda self, prompts: None), "env_mask"),
])
def test_a_changed_internal_fails_loudly_with_a_clear_message(monkeypatch, break_it, named):
    from trl import GRPOTrainer
    from trl.trainer import utils

    break_it(monkeypatch, GRPOTrainer, utils)
    with pytest.raises(TRLCompatError) as e:
        check_trl_internals()
    msg = str(e.value)
    assert named in msg and "tested: trl>=1.16,<1.17" in msg and "trl_compat.py" in msg


def test_the_tested_range_matches_the_pyproject_pin():
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'"trl{trl_compat.TESTED_TRL[0]},{trl_compat.TESTED_TRL[1]}"' in pyproject
    assert trl_compat._version_ok("1.16.0") and not trl_compat._version_ok("1.17.0")
    assert not trl_compat._version_ok("1.15.2")
