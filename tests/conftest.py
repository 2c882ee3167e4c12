"""Shared fixtures. Tests never touch the network: the hub is forced offline before transformers loads."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def embedded_dir():
    from adasr_mm.models import embedded_policy_dir

    return embedded_policy_dir()


@pytest.fixture(scope="session")
def make_tiny_policy(embedded_dir):
    """Factory for a random-weight 2-layer Llama with the real SmolLM2 tokenizer (plumbing tests, ~ms per token)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from adasr_mm.policy import PolicyConfig, StreamingPolicy
    from adasr_mm.protocol import ProtocolConfig

    def make(max_position_embeddings: int = 2048, protocol: ProtocolConfig | None = None, **cfg):
        torch.manual_seed(0)
        tok = AutoTokenizer.from_pretrained(embedded_dir)
        conf = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=max_position_embeddings, tie_word_embeddings=True)
        model = LlamaForCausalLM(conf).eval()
        return StreamingPolicy(model, tok, PolicyConfig(**cfg), protocol, name="tiny-random-llama")

    return make


@pytest.fixture(scope="session")
def real_agent():
    """The real embedded SmolLM2-135M with short caps so a full session takes a few seconds."""
    from adasr_mm.agent import StreamingAgent
    from adasr_mm.config import load_config

    cfg = load_config(None, ["policy.max_thought_tokens=12", "policy.max_deep_tokens=40",
                             "policy.max_answer_tokens=12"])
    return StreamingAgent.from_pretrained(config=cfg)


@pytest.fixture
def five_chunks():
    from adasr_mm.adapters.text import chunks_from_text

    text = ("Tom has 5 apples in his basket. The weather is sunny and warm today. At the market he buys 3 more "
            "apples. His sister Anna eats 2 of his apples. Then Tom picks 4 apples from the tree.")
    chunks = list(chunks_from_text(text))
    assert len(chunks) == 5
    return chunks


class ForwardCounter:
    """Counts the positions the model actually processes (a forward pre-hook on the real model)."""

    def __init__(self, model):
        self.positions = 0
        self.calls = 0
        self._h = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.positions += int(ids.shape[1])
        self.calls += 1

    def remove(self):
        self._h.remove()


@pytest.fixture
def forward_counter():
    made = []

    def make(model):
        c = ForwardCounter(model)
        made.append(c)
        return c

    yield make
    for c in made:
        c.remove()
