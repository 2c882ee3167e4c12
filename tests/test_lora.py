"""LoRA adapters: trained through the project's SFT, saved small and portable, loaded as a policy anywhere."""

from __future__ import annotations

import json

import pytest
import torch

from adasr_mm.errors import ModelLoadError
from adasr_mm.models import EMBEDDED_POLICY, is_adapter_dir, load_causal_lm, resolve_policy_path
from adasr_mm.protocol import PROTOCOL_TOKENS


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory):
    """Two LoRA SFT steps on the real embedded SmolLM2 (a large lr so the adapter visibly moves the model)."""
    from adasr_mm.training.data import load_samples
    from adasr_mm.training.lora import LoraStageConfig, apply_lora, save_policy
    from adasr_mm.training.sft import SFTStageConfig, build_sft_trainer

    out = tmp_path_factory.mktemp("lora")
    samples = load_samples("builtin:easy", "train", "text", 4)
    lcfg = LoraStageConfig(enabled=True, r=4, save_dtype="float32")
    model, tok = load_causal_lm("base")
    model = apply_lora(model, tok, lcfg)
    trainer = build_sft_trainer(model, tok, samples, SFTStageConfig(max_steps=2, learning_rate=5e-3,
                                per_device_train_batch_size=2, marker_lr_multiplier=20), str(out / "ck"))
    trainer.train()
    save_policy(trainer.model, tok, out / "adapter", lcfg)
    trainer.model.eval()
    return out / "adapter", trainer.model, tok


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def _probe_ids(tok):
    return tok("Tom has 5 apples.").input_ids + [tok.convert_tokens_to_ids(t) for t in PROTOCOL_TOKENS[:3]]


def test_adapter_is_small_portable_and_reloads_to_the_trained_model(trained_adapter):
    adapter, trained, tok = trained_adapter
    files = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= files
    assert "config.json" not in files and is_adapter_dir(adapter)
    assert (adapter / "adapter_model.safetensors").stat().st_size < 8e6  # the embedding matrix is not saved
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == EMBEDDED_POLICY

    ids = _probe_ids(tok)
    merged, tok2 = load_causal_lm(str(adapter))
    assert type(merged).__name__ == "LlamaForCausalLM"  # merged for inference, no PEFT wrapper in the hot loop
    assert len(tok2) == len(tok)
    want = _logits(trained, ids)
    assert (want - _logits(merged, ids)).abs().max().item() < 2e-3
    base, _ = load_causal_lm("base")
    assert (want - _logits(base, ids)).abs().max().item() > 0.05  # the adapter changed the model


def test_only_adapter_and_marker_rows_train(trained_adapter):
    _, trained, tok = trained_adapter
    base, _ = load_causal_lm("base")
    names = [n for n, p in trained.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or "trainable_tokens_delta" in n for n in names)
    frozen = trained.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    assert torch.equal(frozen, base.model.layers[0].self_attn.q_proj.weight)
    delta = [p for n, p in trained.named_parameters() if "trainable_tokens_delta" in n][0]
    ids = [tok.convert_tokens_to_ids(t) for t in PROTOCOL_TOKENS]
    assert not torch.allclose(delta.detach(), base.get_input_embeddings().weight[ids])  # markers moved


def test_keep_adapter_continues_the_same_adapter(trained_adapter):
    from adasr_mm.training.lora import LoraStageConfig, apply_lora

    adapter, _, _ = trained_adapter
    model, tok = load_causal_lm(str(adapter), keep_adapter=True)
    assert hasattr(model, "peft_config") and any(p.requires_grad for p in model.parameters())
    assert apply_lora(model, tok, LoraStageConfig(enabled=True)) is model  # a later stage does not stack a new one


def test_a_merged_adapter_trains_as_full_weights(trained_adapter):
    """A full-weight stage (lora disabled) may start from an adapter dir (e.g. the shipped default): merged, every
    weight must take gradients again (PEFT froze them for the adapter)."""
    adapter, _, _ = trained_adapter
    model, tok = load_causal_lm(str(adapter))
    assert not hasattr(model, "peft_config")
    loss = model(input_ids=torch.tensor([_probe_ids(tok)]), labels=torch.tensor([_probe_ids(tok)])).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.dim() == 2)


def test_policy_and_agent_take_an_adapter_dir(trained_adapter):
    from adasr_mm.adapters.text import chunks_from_text
    from adasr_mm.agent import StreamingAgent
    from adasr_mm.config import load_config

    adapter, _, _ = trained_adapter
    cfg = load_config(None, [f"policy.policy={adapter}", "policy.max_thought_tokens=4",
                             "policy.max_deep_tokens=4", "policy.max_answer_tokens=4"])
    agent = StreamingAgent.from_pretrained(config=cfg)
    assert agent.policy.model.get_input_embeddings().weight.shape[0] == len(agent.policy.tokenizer)
    res = agent.run("How many apples?", chunks_from_text("Tom has 5 apples. He buys 2 more."), clock="simulated")
    assert res.summary.chunks == 2


def test_bad_adapter_dirs_are_clear_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="names no base_model_name_or_path"):
        load_causal_lm(str(tmp_path / "a"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/nope/base"}))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_causal_lm(str(tmp_path / "b"))
    assert resolve_policy_path("base") == resolve_policy_path(EMBEDDED_POLICY)


def test_lora_config_rejects_bad_values():
    from adasr_mm.training.lora import LoraStageConfig

    for bad in ({"r": 0}, {"alpha": 0}, {"dropout": 1.0}, {"save_dtype": "int8"}, {"target_modules": " "}):
        with pytest.raises(ValueError):
            LoraStageConfig(**bad)


def test_trl_fused_head_sees_the_trained_marker_rows(trained_adapter):
    """TRL's SFT/GRPO losses use a fused LM head over ``lm_head.weight``: it must include the adapter's rows."""
    from trl.trainer.utils import add_fused_lm_head

    adapter, _, tok = trained_adapter
    model, _ = load_causal_lm(str(adapter), keep_adapter=True)
    from adasr_mm.training.lora import LoraStageConfig, apply_lora

    model = apply_lora(model, tok, LoraStageConfig(enabled=True))
    add_fused_lm_head(model.get_base_model())
    ids = torch.tensor([_probe_ids(tok)])
    with torch.no_grad():
        fused = model(input_ids=ids, labels=ids, fused_lm_head=True).log_probs[0]
        plain = model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
    assert (fused[-plain.shape[0]:] - plain).abs().max().item() < 1e-3
