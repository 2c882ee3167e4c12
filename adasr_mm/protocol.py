"""The streaming protocol: every marker string, how a stream is rendered to tokens, and how a trace is read back.

One causal sequence, question first (``order="question-first"``)::

    <chat prompt: system + question> assistant: <think>
    <|chunk|>[0.0-2.4s] Tom has 5 apples.<|/chunk|>   -> policy: "Tom starts with 5.<|eot|>"
    <|chunk|>[2.4-4.1s] The sky is blue.<|/chunk|>    -> policy: "<|skip|>"
    <|end_of_stream|>                                  -> policy: deep reasoning ... </think> \\boxed{8}<eos>

With ``order="context-first"`` the question is written by the environment right after ``<|end_of_stream|>``.
Tokens written by the environment (prompt, chunks, markers, forced closures) carry ``env_mask = 0``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .chunks import TimedChunk

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
CHUNK_OPEN = "<|chunk|>"
CHUNK_CLOSE = "<|/chunk|>"
EOT = "<|eot|>"
SKIP = "<|skip|>"
END_OF_STREAM = "<|end_of_stream|>"

#: Every marker the protocol adds to a tokenizer (as special tokens).
PROTOCOL_TOKENS = (THINK_OPEN, THINK_CLOSE, CHUNK_OPEN, CHUNK_CLOSE, EOT, SKIP, END_OF_STREAM)
#: Markers only the environment may write; decoding masks them out.
ENV_ONLY_TOKENS = (THINK_OPEN, CHUNK_OPEN, CHUNK_CLOSE, END_OF_STREAM)

ORDERS = ("question-first", "context-first")

DEFAULT_SYSTEM_PROMPT = (
    "You are a streaming reasoner. The input arrives piece by piece while it is still playing. "
    f"After each piece, write one short thought about what it adds to the question and end it with {EOT}, "
    f"or write {SKIP} if the piece is irrelevant. After {END_OF_STREAM}, reason briefly to the solution, "
    f"close your reasoning with {THINK_CLOSE}, then give the final answer as \\boxed{{...}}."
)

PHASES = ("prompt", "stream", "deep", "answer")


@dataclass
class ProtocolConfig:
    """How prompts and chunks are rendered for the policy."""

    order: str = field(
        default="question-first",
        metadata={"help": "question-first (question in the prompt) or context-first (question after the stream)"},
    )
    system_prompt: str = field(default=DEFAULT_SYSTEM_PROMPT, metadata={"help": "system instructions"})
    timestamps: bool = field(default=True, metadata={"help": "prefix each chunk with its [start-end s] span"})

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")


@dataclass
class ProtocolTokenIds:
    think_open: int
    think_close: int
    chunk_open: int
    chunk_close: int
    eot: int
    skip: int
    end_of_stream: int
    eos: tuple[int, ...]

    @property
    def env_only(self) -> tuple[int, ...]:
        return (self.think_open, self.chunk_open, self.chunk_close, self.end_of_stream)


def add_protocol_tokens(tokenizer: Any, model: Any | None = None) -> int:
    """Add the protocol markers as special tokens; resize ``model``'s embeddings, new rows = mean embedding.

    Returns how many tokens were new. Idempotent: a checkpoint trained with the protocol gains nothing.
    """
    import torch

    missing = [t for t in PROTOCOL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if model is None:
        return len(missing)
    old = model.get_input_embeddings().weight.shape[0]
    new = len(tokenizer)
    if new > old:
        with torch.no_grad():
            emb_in = model.get_input_embeddings().weight
            mean_in = emb_in[:old].float().mean(0)
            out = model.get_output_embeddings()
            mean_out = out.weight[:old].float().mean(0) if out is not None else None
            model.resize_token_embeddings(new, mean_resizing=False)
            model.get_input_embeddings().weight[old:] = mean_in.to(emb_in.dtype)
            out = model.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
                out.weight[old:] = mean_out.to(out.weight.dtype)
                if getattr(out, "bias", None) is not None:
                    out.bias[old:] = 0
    return len(missing)


def protocol_token_ids(tokenizer: Any) -> ProtocolTokenIds:
    vocab = tokenizer.get_vocab()
    missing = [t for t in PROTOCOL_TOKENS if t not in vocab]
    if missing:
        raise ValueError(f"tokenizer lacks protocol tokens {missing}; call add_protocol_tokens first")
    eos: list[int] = []
    for tid in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")):
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id and tid not in eos:
            eos.append(tid)
    if not eos:
        raise ValueError("tokenizer has no EOS token; the deep phase could never end by itself")
    return ProtocolTokenIds(
        think_open=vocab[THINK_OPEN],
        think_close=vocab[THINK_CLOSE],
        chunk_open=vocab[CHUNK_OPEN],
        chunk_close=vocab[CHUNK_CLOSE],
        eot=vocab[EOT],
        skip=vocab[SKIP],
        end_of_stream=vocab[END_OF_STREAM],
        eos=tuple(eos),
    )


def format_time(t: float) -> str:
    return f"{t:.1f}"


def render_chunk(chunk: TimedChunk, timestamps: bool = True) -> str:
    """``<|chunk|>[0.0-2.4s] text<|/chunk|>``; non-text chunks name their modality (``[video 3.0-4.0s]``)."""
    tag = "" if chunk.modality == "text" else f"{chunk.modality} "
    span = f"[{tag}{format_time(chunk.start)}-{format_time(chunk.end)}s] " if timestamps else (
        f"[{chunk.modality}] " if tag else ""
    )
    text = " ".join(chunk.text.split())
    return f"{CHUNK_OPEN}{span}{text}{CHUNK_CLOSE}"


class Protocol:
    """Renders prompts/chunks to token ids for one tokenizer, and parses/validates finished traces."""

    def __init__(self, tokenizer: Any, config: ProtocolConfig | None = None):
        self.tokenizer = tokenizer
        self.config = config or ProtocolConfig()
        self.ids = protocol_token_ids(tokenizer)

    # -- rendering -------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render_prompt(self, question: str) -> str:
        question = " ".join(question.split())
        if self.config.order == "question-first":
            user = f"Question: {question}\nThe input stream follows."
        else:
            user = "The input stream follows; the question comes after it."
        messages = [{"role": "system", "content": self.config.system_prompt}, {"role": "user", "content": user}]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # base models: a plain transcript-style prompt
            text = f"System: {self.config.system_prompt}\nUser: {user}\nAssistant: "
        return text + THINK_OPEN

    def render_end(self, question: str) -> str:
        if self.config.order == "context-first":
            return f"{END_OF_STREAM}Question: {' '.join(question.split())}\n"
        return END_OF_STREAM

    def prompt_ids(self, question: str) -> list[int]:
        return self.encode(self.render_prompt(question))

    def chunk_ids(self, chunk: TimedChunk) -> list[int]:
        return self.encode(render_chunk(chunk, self.config.timestamps))

    def end_ids(self, question: str) -> list[int]:
        return self.encode(self.render_end(question))

    def decode(self, ids: list[int], keep_markers: bool = False) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        if not keep_markers:
            for m in PROTOCOL_TOKENS:
                text = text.replace(m, "")
            for tid in self.ids.eos:
                tok = self.tokenizer.convert_ids_to_tokens(tid)
                if isinstance(tok, str):
                    text = text.replace(tok, "")
        return text.strip()

    # -- reading traces back -----------------------------------------------------------------------------------
    def parse(self, ids: list[int], env_mask: list[int] | None = None) -> ParsedTrace:
        """Split a finished token sequence into phases and per-chunk response spans.

        Works on ids alone (markers delimit everything); ``env_mask`` additionally tells which closing markers
        the environment forced (cap hits), which validation counts as violations.
        """
        p = self.ids
        n = len(ids)
        env = env_mask if env_mask is not None else [1] * n
        phase = ["prompt"] * n
        responses: list[Span] = []
        deep: Span | None = None
        answer: Span | None = None
        i = 0
        # prompt: everything up to and including <think>
        try:
            i = ids.index(p.think_open) + 1
        except ValueError:
            i = 0
        n_read = 0
        while i < n and ids[i] == p.chunk_open:
            first, group = n_read, 0
            while i < n and ids[i] == p.chunk_open:  # chunks read together (catch-up) share one response
                j = i
                while j < n and ids[j] != p.chunk_close:
                    j += 1
                for k in range(i, min(j + 1, n)):
                    phase[k] = "stream"
                group += 1
                i = j + 1
            n_read += group
            start = i
            k = start
            while k < n and ids[k] not in (p.eot, p.skip, p.chunk_open, p.end_of_stream):
                k += 1
            end_tok = ids[k] if k < n and ids[k] in (p.eot, p.skip) else None
            stop = k + 1 if end_tok is not None else k
            for q in range(start, stop):
                phase[q] = "stream"
            closer = EOT if end_tok == p.eot else SKIP if end_tok == p.skip else None
            if closer is None and start == k and k < n and ids[k] == p.end_of_stream:
                closer = END_OF_STREAM  # read just before the end of the stream: no thought on the critical path
            responses.append(
                Span(
                    phase="stream",
                    start=start,
                    end=stop,
                    chunk_index=first,
                    closer=closer,
                    forced=bool(end_tok is not None and env[k] == 0),
                    n_chunks=group,
                )
            )
            i = stop
        if i < n and ids[i] == p.end_of_stream:
            # Deep reasoning runs to </think>; an EOS before it (premature end, closed by the environment) stays
            # inside the deep span. Without any </think> the deep span ends at the first EOS.
            start = i
            try:
                j = ids.index(p.think_close, i + 1)
                closed = True
            except ValueError:
                j = next((q for q in range(i + 1, n) if ids[q] in p.eos), n)
                closed = False
            stop = j + 1 if closed else j
            for q in range(start, stop):
                phase[q] = "deep"
            deep = Span(phase="deep", start=start, end=stop, closer=THINK_CLOSE if closed else None,
                        forced=bool(closed and env[j] == 0))
            k = stop
            while k < n and ids[k] not in p.eos:
                k += 1
            ended = k < n
            for q in range(stop, min(k + 1, n)):
                phase[q] = "answer"
            answer = Span(phase="answer", start=stop, end=min(k + 1, n), closer="eos" if ended else None,
                          forced=bool(ended and env[k] == 0))
        return ParsedTrace(ids=list(ids), phase=phase, responses=responses, deep=deep, answer=answer,
                           protocol=self)


@dataclass
class Span:
    """Token positions ``[start, end)`` of one policy response (``closer``: the marker that ended it)."""

    phase: str
    start: int
    end: int
    chunk_index: int | None = None  # the first chunk this response follows
    closer: str | None = None
    forced: bool = False
    n_chunks: int = 1  # chunks read together before this response (catch-up)


@dataclass
class FormatReport:
    """Format validation of one trace: the inputs of the format reward."""

    format_stream: float
    format_deep: float
    violations: list[str]

    @property
    def format(self) -> float:
        return 0.5 * (self.format_stream + self.format_deep)


@dataclass
class ParsedTrace:
    ids: list[int]
    phase: list[str]
    responses: list[Span]
    deep: Span | None
    answer: Span | None
    protocol: Protocol = field(repr=False)

    def text(self, span: Span | None) -> str:
        if span is None:
            return ""
        return self.protocol.decode(self.ids[span.start : span.end])

    @property
    def answer_text(self) -> str:
        return self.text(self.answer)

    def validate(self, n_chunks: int | None = None, streaming: bool = True) -> FormatReport:
        """Every chunk answered by exactly one self-closed thought/skip; deep closed by the policy; answer parsable.

        ``streaming=False`` (read-then-think traces) checks only the deep phase.
        """
        v: list[str] = []
        n_read = sum(s.n_chunks for s in self.responses)
        n = n_read if n_chunks is None else n_chunks
        ok = 0
        if not streaming:
            n, ok = 0, 0
        elif n_chunks is not None and n_read != n_chunks:
            v.append(f"{n_read} chunks in the trace for {n_chunks} chunks")
        for s in self.responses if streaming else []:
            if s.closer is None:
                v.append(f"chunk {s.chunk_index}: response not closed")
            elif s.forced:
                v.append(f"chunk {s.chunk_index}: thought cap hit")
            elif s.closer == SKIP and s.end - s.start > 1:
                v.append(f"chunk {s.chunk_index}: text before {SKIP}")
            else:
                ok += s.n_chunks
        ok = min(ok, n)
        fs = ok / n if n else 1.0
        deep_terms = []
        if self.deep is None:
            v.append("no deep phase")
            deep_terms = [0.0, 0.0, 0.0]
        else:
            closed = self.deep.closer == THINK_CLOSE and not self.deep.forced
            if not closed:
                v.append("deep reasoning not closed by the policy")
            ans_ok = self.answer is not None and self.answer.closer == "eos" and not self.answer.forced
            if not ans_ok:
                v.append("answer not ended by EOS")
            parsable = extract_answer(self.answer_text) != ""
            if not parsable:
                v.append("answer not parsable")
            deep_terms = [float(closed), float(ans_ok), float(parsable)]
        return FormatReport(format_stream=fs, format_deep=sum(deep_terms) / 3, violations=v)


_BOXED = re.compile(r"\\box(?:ed)?\s*\{")


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\box{...}`` (nested braces allowed), stripped; None if none.

    The one boxed-answer parser (model answers, gold answers, StreamingThinker traces, whose deep reasoning
    writes ``\\box{5}``). A box never closed counts only when no box is closed: a cut-off answer
    ``\\boxed{12`` still states 12. Numbers stay as written (``1,234``, ``$5``): the answer checker
    normalises them.
    """
    last = unclosed = None
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            last = text[m.end() : i - 1].strip()
        elif unclosed is None:
            unclosed = text[m.end() :].strip()
    return last if last is not None else unclosed


def extract_answer(text: str) -> str:
    """The answer a checker should compare: the last ``\\boxed{}`` content, else the first non-empty line."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            return line[:200]
    return ""
