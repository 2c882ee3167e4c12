"""SFT warm start (METHOD.md §4): teach a small model the streaming protocol from teacher traces.

A teacher trace is the exact token sequence the streaming policy would produce at inference if it wrote the
teacher's texts: the same pieces (prompt, each chunk, each thought or skip, end-of-stream, deep reasoning,
answer, EOS), each tokenized separately exactly as :class:`~adasr_mm.protocol.Protocol` renders them. Any
other tokenization would teach token boundaries the policy never sees. The loss covers only the tokens the
policy writes (``policy_mask == 1``); prompt, chunks, ``<|end_of_stream|>`` and a context-first question are
input, like ``env_mask == 0`` in RL.

Loss masking uses TRL's own mechanism for pre-tokenized datasets: ``input_ids`` + ``completion_mask``
columns with ``completion_only_loss=True``. ``SFTTrainer._prepare_dataset`` (trl 1.16) folds the mask into a
``labels`` column (``-100`` where the mask is 0), its collator pads labels with ``-100``, and the fused LM
head scores only positions whose label is not ``-100``. The mask is per token, not one prompt/completion
split, so the interleaved chunk/thought structure needs no trainer subclass. One callback
(:class:`MarkerRowBoost`) gives the new, mean-initialised protocol-token rows larger steps: without it a
short warm start learns the text but never to emit the markers.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback

from adasr_mm.chunks import TimedChunk
from adasr_mm.protocol import EOT, PROTOCOL_TOKENS, THINK_CLOSE, Protocol, ProtocolConfig, add_protocol_tokens

from .sample import Sample

log = logging.getLogger(__name__)

#: Thought written after the last chunk of a sample without teacher thoughts (every other chunk is skipped).
GENERIC_THOUGHT = "The stream is complete; time to work out the answer."


@dataclass
class SFTStageConfig:
    """One short supervised stage on teacher traces (defaults: a CPU-sized warm start of SmolLM2-135M)."""

    max_steps: int = field(default=60, metadata={"help": "optimizer steps (traces are cycled as needed)"})
    learning_rate: float = field(default=5e-5, metadata={"help": "peak AdamW learning rate"})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "traces per micro-batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_length: int = field(
        default=1024, metadata={"help": "traces longer than this lose their end (a warning says how many)"}
    )
    warmup_ratio: float = field(default=0.1, metadata={"help": "fraction of max_steps with linear LR warmup"})
    seed: int = field(default=0, metadata={"help": "seed for data order and initialisation"})
    logging_steps: int = field(default=1, metadata={"help": "log the loss every N steps (first/last loss)"})
    save_steps: int = field(
        default=0, metadata={"help": "write a resumable checkpoint every N steps; 0 = only the final model"}
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (GPU); False = float32"})
    use_cpu: bool | None = field(default=None, metadata={"help": "train on CPU; None = without CUDA"})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "trade compute for memory; off by default: small models on CPU"}
    )
    generic_thought: str = field(
        default=GENERIC_THOUGHT,
        metadata={"help": "thought on the last chunk of samples without teacher thoughts (others: skipped)"},
    )
    generic_deep: str = field(default="", metadata={"help": "deep reasoning of samples without teacher_deep"})
    end_read_fraction: float = field(
        default=0.5,
        metadata={"help": "fraction of streaming traces whose last chunk is read together with the end-of-stream "
                          "marker (no thought; the deep phase does its update), as the runtime does whenever the "
                          "end is known by the time the last chunk is read (files, text)"},
    )
    rtt_fraction: float = field(
        default=0.25,
        metadata={"help": "also train read-then-think traces (all chunks, then full reasoning) for this fraction "
                          "of samples that have teacher_rtt: the same model then serves both modes, and its "
                          "streaming deep phase learns to be short because the stream already did the work"},
    )
    asr_style_fraction: float = field(
        default=0.0,
        metadata={"help": "add asr_style_copies more streaming traces for this fraction of the text samples, "
                          "chunks written as streaming ASR often writes them (each chunk: closing mark dropped, "
                          "lower-case start, numbers as words, each with probability asr_style_p; neighbours merged "
                          "with half that probability), so a chunk without its period is still read as a sentence "
                          "(training/asr_style.py)"},
    )
    asr_style_p: float = field(
        default=0.5,
        metadata={"help": "the ASR-style copies' probability of each change (a merge: half of it); above 0.75 it "
                          "adds few chunks with two updates, since a copy merges only neighbouring pairs "
                          "(asr_style_copies adds more)"},
    )
    asr_style_copies: int = field(
        default=1,
        metadata={"help": "ASR-style copies per picked trace, each drawn apart (its own rewrites and merges): "
                          "the way to more chunks with two updates, since one copy merges at most neighbouring "
                          "pairs and few streams have updates side by side (default-policy mix: 63 of 256 "
                          "word-problem copies hold a two-update chunk at asr_style_p 0.75, 66 at 1.0)"},
    )
    marker_lr_multiplier: float = field(
        default=20.0,
        metadata={"help": "the protocol-token embedding rows (new, mean-initialised) take steps this many "
                          "times larger than the rest of the model; 1 = plain training"},
    )

    def __post_init__(self) -> None:
        for name in ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
                     "logging_steps", "asr_style_copies"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.save_steps < 0:
            raise ValueError(f"save_steps must be >= 0, got {self.save_steps}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (self.marker_lr_multiplier >= 1 and math.isfinite(self.marker_lr_multiplier)):
            raise ValueError(f"marker_lr_multiplier must be >= 1, got {self.marker_lr_multiplier}")
        if not 0 <= self.end_read_fraction <= 1:
            raise ValueError(f"end_read_fraction must be in [0, 1], got {self.end_read_fraction}")
        if not 0 <= self.asr_style_fraction <= 1:
            raise ValueError(f"asr_style_fraction must be in [0, 1], got {self.asr_style_fraction}")
        if not 0 <= self.asr_style_p <= 1:
            raise ValueError(f"asr_style_p must be in [0, 1], got {self.asr_style_p}")
        if not 0 <= self.rtt_fraction <= 1:
            raise ValueError(f"rtt_fraction must be in [0, 1], got {self.rtt_fraction}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if "\n" in self.generic_thought.strip():
            raise ValueError("generic_thought must be one line")
        _check_text("generic_thought", self.generic_thought)
        _check_text("generic_deep", self.generic_deep)


def _check_text(what: str, text: str) -> None:
    """Teacher text must not contain protocol markers: they would tokenize as markers and break the trace."""
    bad = [m for m in PROTOCOL_TOKENS if m in text]
    if bad:
        raise ValueError(f"{what} contains protocol markers {bad}: {text!r}")


def sample_chunks(sample: Sample) -> list[TimedChunk]:
    """The sample's chunks; plain ``context`` text is chunked like the text adapter does at inference."""
    if sample.chunks is not None:
        return list(sample.chunks)
    if sample.context is not None:
        from adasr_mm.adapters.text import chunks_from_text

        return list(chunks_from_text(sample.context))
    raise ValueError(f"sample {sample.id}: media samples need chunks first (run `adasr-mm prepare`)")


def teacher_trace(sample: Sample, protocol: Protocol, generic_thought: str = GENERIC_THOUGHT,
                  generic_deep: str = "", rtt: bool = False, end_read: bool = False) -> tuple[list[int], list[int]]:
    """Token ids of the sample's full protocol trace and its ``policy_mask`` (1 = written by the policy).

    Samples without ``teacher`` get a generic trace: every chunk skipped except the last, which gets
    ``generic_thought``; their deep phase is ``teacher_rtt`` if known (the stream did no work), else
    ``teacher_deep``, else ``generic_deep``. ``rtt=True`` renders the read-then-think trace instead, exactly as
    a ``read-then-think`` session lays it out: every chunk back to back, then ``teacher_rtt`` and the answer.
    ``end_read=True``: the last chunk is read with the end-of-stream marker, as a session does when the end is
    known by then: no response to it, and its thought (if any) opens the deep phase (and is all of it when
    ``teacher_deep`` is a mere recap: every token after the stream's end is on the answer's critical path).
    """
    chunks = sample_chunks(sample)
    if not chunks:
        raise ValueError(f"sample {sample.id}: no chunks")
    thoughts: list[str | None]
    if rtt:
        if sample.teacher_rtt is None:
            raise ValueError(f"sample {sample.id}: a read-then-think trace needs teacher_rtt")
        thoughts, deep = [], sample.teacher_rtt
    elif sample.teacher is None:
        thoughts = [None] * (len(chunks) - 1) + [generic_thought]
        deep = next((d for d in (sample.teacher_rtt, sample.teacher_deep) if d is not None), generic_deep)
    else:
        thoughts = list(sample.teacher)
        if len(thoughts) != len(chunks):
            raise ValueError(f"sample {sample.id}: {len(thoughts)} thoughts for {len(chunks)} chunks")
        deep = sample.teacher_deep if sample.teacher_deep is not None else generic_deep
    if end_read and not rtt:
        last = thoughts[-1]
        thoughts = thoughts[:-1]
        if last and sample.teacher is not None:
            # a deep phase that only restates the total (meta "deep_is_recap") is redundant after the last update
            deep = last if sample.meta.get("deep_is_recap") else f"{last.strip()} {deep.strip()}"
    deep = deep.strip()
    answer = str(sample.answer).strip()
    texts = [("deep reasoning", deep), ("answer", answer), *(("thought", t) for t in thoughts if t)]
    for what, text in texts:
        _check_text(f"sample {sample.id}: {what}", text)

    p = protocol
    ids: list[int] = []
    mask: list[int] = []

    def put(piece: list[int], by_policy: int) -> None:
        ids.extend(piece)
        mask.extend([by_policy] * len(piece))

    put(p.prompt_ids(sample.question), 0)
    for i, chunk in enumerate(chunks):
        put(p.chunk_ids(chunk), 0)
        if not rtt and i < len(thoughts):
            thought = thoughts[i]
            put([p.ids.skip] if thought is None else p.encode(thought.strip() + EOT), 1)
    put(p.end_ids(sample.question), 0)
    # Deep reasoning and answer in one encode: </think> is a special token, so the tokenizer splits there,
    # exactly as inference does when the deep phase stops at </think> and the answer phase starts fresh.
    put(p.encode(deep + THINK_CLOSE + " \\boxed{" + answer + "}"), 1)
    put([p.ids.eos[0]], 1)
    return ids, mask


def build_sft_dataset(samples: list[Sample], protocol: Protocol, config: SFTStageConfig) -> Any:
    """A pre-tokenized ``datasets.Dataset`` (``input_ids``, ``completion_mask``) of validated traces."""
    from datasets import Dataset

    if not samples:
        raise ValueError("no samples to train on")
    rows: dict[str, list[list[int]]] = {"input_ids": [], "completion_mask": []}
    too_long = 0
    with_rtt = [s for s in samples if s.teacher_rtt is not None]
    n_rtt = round(config.rtt_fraction * len(with_rtt))
    n_end = round(config.end_read_fraction * len(samples))
    traces = [(s, False, i < n_end) for i, s in enumerate(samples)] + [(s, True, False) for s in with_rtt[:n_rtt]]
    traces += _asr_style_traces(traces, config)
    for s, rtt, end_read in traces:
        ids, mask = teacher_trace(s, protocol, config.generic_thought, config.generic_deep, rtt=rtt,
                                  end_read=end_read)
        report = protocol.parse(ids).validate(len(sample_chunks(s)), streaming=not rtt)
        if report.violations:  # never teach a malformed trace
            raise ValueError(f"sample {s.id}: teacher trace breaks the protocol: {report.violations}")
        too_long += len(ids) > config.max_length
        rows["input_ids"].append(ids)
        rows["completion_mask"].append(mask)
    if too_long:
        log.warning("%d of %d traces exceed max_length=%d and lose their end (raise max_length)",
                    too_long, len(traces), config.max_length)
    return Dataset.from_dict(rows)


def _asr_style_traces(traces: list[tuple[Sample, bool, bool]], config: SFTStageConfig
                      ) -> list[tuple[Sample, bool, bool]]:
    """``asr_style_copies`` ASR-style copies of ``asr_style_fraction`` of the text streaming traces (a seeded
    choice), each keeping its original's end-of-stream layout."""
    from .asr_style import asr_style_sample

    text = [(s, end) for s, rtt, end in traces if not rtt and s.modality == "text"]
    n = round(config.asr_style_fraction * len(text))
    picked = random.Random(config.seed).sample(text, n)
    return [(asr_style_sample(s, sample_chunks(s), config.seed, config.asr_style_p, copy), False, end)
            for copy in range(config.asr_style_copies) for s, end in picked]


class MarkerRowBoost(TrainerCallback):
    """Scale the optimizer's update of the protocol-token embedding rows by ``factor``.

    Why: the markers start as the mean embedding and, with tied embeddings, must become distinct output
    directions. At a learning rate gentle enough for the pretrained weights they barely move in a short warm
    start (SmolLM2-135M, 40 steps at 2e-4: the text is learned, yet p(<|eot|>) stays ~0.001 and no thought
    ends by itself). Adam's per-element step is ~lr whatever the gradient's scale, so a few rows can only
    take larger steps by scaling their update after the optimizer made it. A callback keeps the trainer
    stock TRL.
    """

    def __init__(self, model: Any, rows: list[int], factor: float):
        # (weight, rows of it to boost): the embedding (and an untied head) in full fine-tuning; under LoRA the
        # markers' rows are PEFT's trainable-token deltas (the base embedding is frozen), boosted whole.
        deltas = [p for n, p in model.named_parameters() if p.requires_grad and "trainable_tokens_delta" in n]
        if deltas:
            self.targets = [(w, torch.arange(w.shape[0])) for w in deltas]
        else:
            weights = [model.get_input_embeddings().weight]
            out = model.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != weights[0].data_ptr():  # untied head: boost both
                weights.append(out.weight)
            idx = torch.tensor(sorted(set(rows)), dtype=torch.long)
            self.targets = [(w, idx) for w in weights]
        self.factor = float(factor)
        self._before: list[Any] = []

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._before = [w.detach()[rows.to(w.device)].clone() for w, rows in self.targets]

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        with torch.no_grad():
            for (w, rows), before in zip(self.targets, self._before, strict=True):
                rows = rows.to(w.device)
                w[rows] = before + self.factor * (w[rows] - before)
        self._before = []


def marker_boost_callbacks(model: Any, tokenizer: Any, factor: float) -> list[TrainerCallback]:
    """``[MarkerRowBoost]`` over the protocol-token rows, or ``[]`` for ``factor == 1`` (SFT and OPD share it)."""
    if factor == 1:
        return []
    return [MarkerRowBoost(model, [tokenizer.convert_tokens_to_ids(t) for t in PROTOCOL_TOKENS], factor)]


def build_sft_trainer(model: Any, tokenizer: Any, samples: list[Sample], config: SFTStageConfig,
                      output_dir: str, protocol_config: ProtocolConfig | None = None) -> Any:
    """An ``SFTTrainer`` whose loss covers only policy tokens (separate from :func:`run_sft` for tests)."""
    from trl import SFTConfig, SFTTrainer

    add_protocol_tokens(tokenizer, model)
    protocol = Protocol(tokenizer, protocol_config)
    dataset = build_sft_dataset(samples, protocol, config)
    use_cpu = (not torch.cuda.is_available()) if config.use_cpu is None else config.use_cpu
    if not config.bf16 and next(model.parameters()).dtype != torch.float32:
        model.to(torch.float32)  # a bf16 inference checkpoint trains poorly without mixed precision
    args = SFTConfig(
        output_dir=output_dir,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_length=config.max_length,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of max_steps
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        bf16=config.bf16,
        fp16=False,
        use_cpu=use_cpu,
        activation_checkpointing=config.gradient_checkpointing,  # transformers 5 name of the option
        completion_only_loss=True,  # fold completion_mask (= policy_mask) into labels: -100 on input tokens
        packing=False,
        report_to="none",
    )
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      callbacks=marker_boost_callbacks(model, tokenizer, config.marker_lr_multiplier))


def run_sft(model: Any, tokenizer: Any, samples: list[Sample], config: SFTStageConfig, output_dir: str,
            protocol_config: ProtocolConfig | None = None,
            resume_from_checkpoint: str | bool | None = None) -> dict[str, Any]:
    """Train on the samples' teacher traces; save a plain HF dir (model + tokenizer) to ``output_dir``.

    Returns metrics: ``steps``, ``loss_first``/``loss_last`` (logged train loss), ``seconds``, ``samples``,
    ``tokens`` and ``policy_tokens`` (per pass over the traces).
    """
    t0 = time.perf_counter()
    trainer = build_sft_trainer(model, tokenizer, samples, config, output_dir, protocol_config)
    data = trainer.train_dataset
    out = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.save_model(output_dir)
    tokenizer.save_pretrained(output_dir)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "steps": int(trainer.state.global_step),
        "loss_first": float(losses[0]) if losses else float("nan"),
        "loss_last": float(losses[-1]) if losses else float("nan"),
        "train_loss": float(out.training_loss),
        "seconds": time.perf_counter() - t0,
        "samples": len(samples),
        "tokens": sum(len(x) for x in data["input_ids"]),
        "policy_tokens": sum(sum(1 for t in lab if t != -100) for lab in data["labels"]),
        "output_dir": output_dir,
    }
