"""PEFT LoRA for every training stage (SFT, OPD, RL): wrap, and save an adapter small enough to ship.

Why: a LoRA adapter on the embedded SmolLM2 is a few MB instead of a 270 MB model, which is what lets the project
commit a trained default policy, and what users fine-tuning 4B+ models on one GPU need. The protocol markers are
new tokens: their embedding rows are trained through PEFT's ``trainable_token_indices`` (tied output head
included), so they live in the adapter too and the base stays untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from adasr_mm.models import EMBEDDED_POLICY, embedded_policy_path
from adasr_mm.protocol import PROTOCOL_TOKENS

SAVE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoraStageConfig:
    """LoRA settings shared by all stages (section ``lora``: ``lora.enabled=true lora.r=8``)."""

    enabled: bool = field(default=False, metadata={"help": "train a LoRA adapter instead of all weights"})
    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    target_modules: str = field(default="all-linear", metadata={
        "help": "all-linear, or a comma list of module names (q_proj,v_proj,...)"})
    train_protocol_tokens: bool = field(default=True, metadata={
        "help": "train the protocol markers' embedding rows in the adapter (trainable_token_indices)"})
    save_dtype: str = field(default="float32", metadata={
        "help": "dtype of the saved adapter weights: float32, bfloat16 (half the size) or float16"})

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"lora.r must be >= 1, got {self.r}")
        if not self.alpha > 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules.strip():
            raise ValueError("lora.target_modules must name modules or be all-linear")
        if self.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"lora.save_dtype must be one of {', '.join(SAVE_DTYPES)}, got {self.save_dtype!r}")

    def targets(self) -> str | list[str]:
        t = self.target_modules.strip()
        return t if t == "all-linear" else [m.strip() for m in t.split(",") if m.strip()]


def is_peft_model(model: Any) -> bool:
    return hasattr(model, "peft_config")


def apply_lora(model: Any, tokenizer: Any, config: LoraStageConfig) -> Any:
    """Wrap ``model`` in a new LoRA adapter, or keep the adapter it already carries (a later stage continues it)."""
    if is_peft_model(model):
        return _fused_head_compat(model)
    from peft import LoraConfig, get_peft_model

    indices = None
    if config.train_protocol_tokens:
        name = _embedding_name(model)
        indices = {name: [tokenizer.convert_tokens_to_ids(t) for t in PROTOCOL_TOKENS]}
    peft_config = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                             target_modules=config.targets(), trainable_token_indices=indices,
                             task_type="CAUSAL_LM")
    return _fused_head_compat(get_peft_model(model, peft_config))


def _fused_head_compat(model: Any) -> Any:
    """Let TRL's fused LM head read ``lm_head.bias`` through PEFT's trainable-token wrapper.

    TRL (SFT, GRPO) computes log-probs from ``lm_head.weight`` / ``lm_head.bias`` directly. On a tied head PEFT
    wraps ``lm_head`` and ``.weight`` already returns the weight with the trained marker rows merged in, but
    ``.bias`` raises. A bias-free head gets an explicit ``None`` (tests/test_lora.py checks fused == plain).
    """
    head = model.get_base_model().get_output_embeddings()
    if head is not None and type(head).__name__ == "TrainableTokensWrapper":
        original = head.token_adapter.base_layer
        if getattr(original, "bias", None) is None:
            head.bias = None
    return model


def _embedding_name(model: Any) -> str:
    emb = model.get_input_embeddings()
    for name, module in model.named_modules():
        if module is emb:
            return name.rsplit(".", 1)[-1]
    raise ValueError("cannot find the input embedding module to train the protocol tokens through")


def save_policy(model: Any, tokenizer: Any, out_dir: str | Path, config: LoraStageConfig | None = None) -> Path:
    """Save a trained policy: a PEFT adapter (+ tokenizer) for LoRA models, else the full model.

    The adapter omits the (resized) embedding matrix - the loader resizes the base the same way and the marker
    rows are in the adapter - and names the embedded base ``embedded:smollm2-135m`` rather than this machine's
    cache path, so the dir loads anywhere.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not is_peft_model(model):
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        return out
    dtype = SAVE_DTYPES[(config or LoraStageConfig()).save_dtype]
    trainable = [p for p in model.parameters() if p.requires_grad]
    saved = [p.data for p in trainable]
    try:
        for p in trainable:
            p.data = p.data.to(dtype)
        model.save_pretrained(str(out), save_embedding_layers=False)
    finally:
        for p, data in zip(trainable, saved, strict=True):
            p.data = data
    tokenizer.save_pretrained(str(out))
    _portable_base(out / "adapter_config.json")
    return out


def _portable_base(cfg_path: Path) -> None:
    cfg = json.loads(cfg_path.read_text())
    base = cfg.get("base_model_name_or_path")
    if base and Path(base).expanduser().resolve() == embedded_policy_path().resolve():
        cfg["base_model_name_or_path"] = EMBEDDED_POLICY
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
