"""The real embedded SmolLM2-135M through the agent API (slow: seconds per session on 2 cores)."""

import pytest

from adasr_mm.events import AnswerEvent, ChunkEvent, DeepEvent, SkipEvent, SummaryEvent, ThoughtEvent
from adasr_mm.replay import replay

pytestmark = pytest.mark.slow

QUESTION = "How many apples does Tom have now?"


def test_five_chunk_stream_on_the_real_policy(real_agent, five_chunks, forward_counter):
    counter = forward_counter(real_agent.policy.model)
    session = real_agent.session(QUESTION, clock="instant")
    responses = []
    for chunk in five_chunks:
        evs = list(session.push(chunk))
        assert isinstance(evs[0], ChunkEvent) and evs[0].chunk is chunk
        resp = [e for e in evs[1:] if isinstance(e, (ThoughtEvent, SkipEvent))]
        assert len(resp) == 1 and resp[0].index == chunk.index  # exactly one thought or skip, in order
        responses.append(resp[0])
    result = session.finish()
    types = [type(e) for e in result.events]
    assert types[-3:] == [DeepEvent, AnswerEvent, SummaryEvent]
    answer = result.events[-2]
    assert answer.t_first_token >= result.events[-3].t_end
    s = result.summary
    assert s.chunks == 5 and s.thoughts + s.skips == 5
    # no re-prefill: counted inside the policy from its model calls ...
    assert s.prefill_tokens == s.input_tokens and s.prefill_per_input == 1.0
    # ... and independently by a hook on the model: every position of the trace went through it exactly once
    st = result.state
    assert counter.positions == len(st.ids) - st.pending == st.prefill_tokens + st.decode_tokens
    assert counter.calls == st.forward_calls
    assert s.stream_tokens == sum(e.tokens for e in responses)


def test_read_then_think_delay_covers_prefill_and_all_reasoning(real_agent, five_chunks):
    # The media runs 3 s past the last sentence (a pause), so streaming thoughts can all finish before it ends.
    stream_end = five_chunks[-1].end + 3.0
    stream = replay(real_agent.session(QUESTION, clock="simulated"), five_chunks, duration=stream_end)
    rtt = replay(real_agent.session(QUESTION, clock="simulated", mode="read-then-think"), five_chunks,
                 duration=stream_end)

    def parts(res):
        return (next(e for e in res.events if isinstance(e, DeepEvent)),
                next(e for e in res.events if isinstance(e, AnswerEvent)), res.summary)

    d_s, a_s, s_s = parts(stream)
    d_r, a_r, s_r = parts(rtt)
    chunk_tokens = sum(e.tokens for e in rtt.events if isinstance(e, ChunkEvent))
    # read-then-think: nothing happens before the stream ends; then the whole input is prefilled ...
    assert s_r.stream_tokens == 0 and s_r.thoughts == 0 and s_r.skips == 0
    assert d_r.prefill_tokens == chunk_tokens + 1
    assert d_r.t_stream_end == pytest.approx(stream_end)
    assert d_r.t_start >= d_r.t_stream_end
    assert d_r.t_prefill_end > d_r.t_start
    # ... and its delay spans that prefill plus all of its reasoning
    assert s_r.delay_s == pytest.approx(a_r.t_first_token - d_r.t_stream_end, abs=1e-3)
    assert s_r.delay_s >= (d_r.t_prefill_end - d_r.t_start) + (d_r.t_end - d_r.t_prefill_end)
    # streaming: every chunk is read once; each was answered by a thought/skip (possibly covering several chunks
    # read together when the policy fell behind) or, if still queued when the stream ended, read together with the
    # end-of-stream marker; the deep phase prefills exactly those
    responses = [e for e in stream.events if isinstance(e, (ThoughtEvent, SkipEvent))]
    reads = [e for e in stream.events if isinstance(e, ChunkEvent)]
    covered = sum(e.group for e in responses)
    late = reads[covered:]
    assert len(reads) == 5 and covered + len(late) == 5
    assert d_s.prefill_tokens == 1 + sum(e.tokens for e in late)
    assert all(e.t_end <= d_s.t_start + 1e-6 for e in responses)
    assert s_s.delay_s == pytest.approx(a_s.t_first_token - d_s.t_stream_end, abs=1e-3)
    # same model, same prompt
    assert rtt.state.ids[: rtt.state.prompt_len] == stream.state.ids[: stream.state.prompt_len]


def test_realtime_clock_waits_for_media_time(real_agent):
    import time

    from adasr_mm.chunks import TimedChunk

    chunks = [TimedChunk(0.0, 0.6, "Tom has 5 apples."), TimedChunk(0.6, 1.2, "He eats 2.")]
    t0 = time.perf_counter()
    res = replay(real_agent.session(QUESTION, clock="realtime"), chunks)
    assert time.perf_counter() - t0 >= 1.2  # it really waited for the media
    ev = [e for e in res.events if isinstance(e, ChunkEvent)]
    # available when the producer delivered it at its media time (a sleep overshoots by a few ms)
    assert ev[1].t_available == pytest.approx(1.2, abs=0.05) and ev[1].t_start >= 1.2


def test_agent_runs_a_media_file_by_path(real_agent):
    """``agent.run(question, path)`` opens the file with the adapter registry (as ``adasr-mm run`` does): the
    bundled spoken sample goes through the real Whisper and the real policy."""
    import dataclasses
    from pathlib import Path

    from adasr_mm.agent import StreamingAgent
    from adasr_mm.errors import InputError

    cfg = dataclasses.replace(real_agent.config, asr=dataclasses.replace(real_agent.config.asr, cadence="fixed"))
    agent = StreamingAgent(real_agent.policy, cfg)  # passes per second of audio: not the machine's load
    audio = Path(__file__).resolve().parents[1] / "samples" / "audio" / "apples.opus"
    res = agent.run(QUESTION, audio)
    chunks = [e.chunk for e in res.events if isinstance(e, ChunkEvent)]
    assert len(chunks) >= 2 and all(c.modality == "audio" for c in chunks)
    assert "apples" in " ".join(c.text for c in chunks).lower()
    assert res.summary.extra["asr_rtf"] > 0 and res.answer
    with pytest.raises(InputError, match="does not exist"):
        agent.run(QUESTION, str(audio) + ".missing")
