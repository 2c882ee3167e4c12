"""Every use of TRL's private internals, in one place, with a check that fails loudly when TRL changes them.

The streaming trainers (HRPO/GRPO, OPD) are TRL ``GRPOTrainer`` subclasses. TRL's public hooks cover most of what
they need (``rollout_func`` returning ``env_mask``, a ``(B, T)`` ``advantages`` tensor), but three things are
private and may change in any TRL release:

- ``trl.trainer.utils.RepeatSampler`` (its ``shuffle``/``seed``/``generator`` attributes) and
  ``GRPOTrainer._get_train_sampler``: we swap the sampler's class so each epoch's shuffle is seeded from
  (seed, epoch) alone, which makes a resumed run see the same data order as an uninterrupted one;
- ``GRPOTrainer._generate_and_score_completions(inputs) -> dict``: we post-process its output (per-token
  advantages in place of TRL's per-sequence ones, our metrics);
- ``GRPOTrainer._metrics[mode][name]`` (lists averaged at each log): where our metrics go;
- and two behaviours we rely on: ``rollout_func``'s ``env_mask`` becomes TRL's ``tool_mask`` (the loss mask of
  environment tokens), and ``_compute_loss`` accepts ``(B, T)`` advantages.

:func:`check_trl_internals` verifies all of these against the installed TRL and raises :class:`TRLCompatError`
naming what changed; :func:`streaming_grpo_base` runs it before building the base class, and
``tests/test_trl_compat.py`` runs it in CI.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

from adasr_mm.errors import AdasrError

log = logging.getLogger(__name__)

TESTED_TRL = (">=1.16", "<1.17")  # keep in sync with pyproject.toml


class TRLCompatError(AdasrError):
    """The installed TRL changed an internal the streaming trainers override."""


def _version_ok(version: str) -> bool:
    from packaging.version import Version

    v = Version(version)
    return Version(TESTED_TRL[0][2:]) <= v < Version(TESTED_TRL[1][1:])


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def trl_problems() -> list[str]:
    """What the installed TRL lacks of the internals we use (empty = all present)."""
    from trl import GRPOTrainer
    from trl.trainer import utils as trl_utils

    problems: list[str] = []
    sampler = getattr(trl_utils, "RepeatSampler", None)
    if sampler is None:
        problems.append("trl.trainer.utils.RepeatSampler is gone (EpochSeededRepeatSampler subclasses it)")
    elif not all(f"self.{a}" in _source(sampler.__init__) for a in ("shuffle", "seed", "generator")):
        problems.append("RepeatSampler no longer sets self.shuffle/self.seed/self.generator (set_epoch reseeds them)")
    for name, params in (("_get_train_sampler", ["self", "dataset"]),
                         ("_generate_and_score_completions", ["self", "inputs"])):
        fn = getattr(GRPOTrainer, name, None)
        if fn is None:
            problems.append(f"GRPOTrainer.{name} is gone (we override it)")
        elif list(inspect.signature(fn).parameters)[: len(params)] != params:
            problems.append(f"GRPOTrainer.{name} changed its signature to {inspect.signature(fn)} "
                            f"(we override it as ({', '.join(params)}))")
    init = _source(GRPOTrainer.__init__)
    if "self._metrics = " not in init:
        problems.append("GRPOTrainer.__init__ no longer creates self._metrics (our metrics are appended there)")
    if "rollout_func" not in inspect.signature(GRPOTrainer.__init__).parameters:
        problems.append("GRPOTrainer.__init__ lost its rollout_func argument (the streaming rollouts plug in there)")
    gen = _source(getattr(GRPOTrainer, "_generate", None))
    if 'pop("env_mask"' not in gen:
        problems.append("GRPOTrainer._generate no longer reads env_mask from rollout_func's output (chunk tokens "
                        "would enter the loss)")
    if "advantages.dim() == 1" not in _source(getattr(GRPOTrainer, "_compute_loss", None)):
        problems.append("GRPOTrainer._compute_loss may no longer accept (B, T) advantages")
    return problems


def check_trl_internals() -> None:
    """Raise :class:`TRLCompatError` if the installed TRL changed an internal we use; warn if it is untested."""
    import trl

    problems = trl_problems()
    tested = f"trl{TESTED_TRL[0]},{TESTED_TRL[1]}"
    if problems:
        raise TRLCompatError(
            f"the installed TRL {trl.__version__} changed internals adasr-mm's streaming trainers override "
            f"(tested: {tested}):\n  - " + "\n  - ".join(problems)
            + f"\ninstall a tested version (pip install '{tested}') or update training/trl_compat.py "
            "(adasr_mm.training.trl_compat)")
    if not _version_ok(trl.__version__):
        log.warning("TRL %s is outside the tested range %s; its internals checked out, proceed with care",
                    trl.__version__, tested)


@functools.cache
def streaming_grpo_base() -> type:
    """A ``GRPOTrainer`` subclass holding every override of a TRL internal; streaming trainers derive from it.

    Subclasses implement :meth:`after_scoring` (post-process TRL's scored batch) and log through
    :meth:`log_metric`; they never touch TRL's private members themselves.
    """
    check_trl_internals()
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    class EpochSeededRepeatSampler(RepeatSampler):
        """TRL's sampler, with each epoch's shuffle seeded from (seed, epoch) alone (epoch 0 is unchanged).

        TRL's ``RepeatSampler`` draws every epoch's permutation from one generator that advances per epoch, and a
        resumed run starts that generator afresh: after resuming at epoch k >= 1 the data order, hence the weights,
        would differ from an uninterrupted run. The Trainer calls ``set_epoch`` before iterating each epoch.
        """

        def set_epoch(self, epoch: int) -> None:
            if self.shuffle:
                self.generator.manual_seed((self.seed or 0) * 1_000_003 + epoch)

    class TRLStreamingBase(GRPOTrainer):
        def _get_train_sampler(self, dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(dataset)
            if type(sampler) is RepeatSampler:
                sampler.__class__ = EpochSeededRepeatSampler  # same state, plus set_epoch
            return sampler

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            return self.after_scoring(super()._generate_and_score_completions(inputs))

        def after_scoring(self, out: dict[str, Any]) -> dict[str, Any]:
            """Post-process TRL's scored batch (``completion_ids``, ``advantages``, masks...)."""
            return out

        def log_metric(self, name: str, value: float) -> None:
            """Add one value to TRL's per-step metric lists (averaged and logged at each logging step)."""
            self._metrics["train" if self.model.training else "eval"][name].append(float(value))

    return TRLStreamingBase
