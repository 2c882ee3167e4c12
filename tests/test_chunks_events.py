import json

import numpy as np
import pytest

from adasr_mm.chunks import TimedChunk
from adasr_mm.events import (
    AnswerEvent,
    ChunkEvent,
    DeepEvent,
    SkipEvent,
    SummaryEvent,
    ThoughtEvent,
    event_from_dict,
    event_from_json,
)


def test_chunk_validation():
    with pytest.raises(ValueError, match="start <= end"):
        TimedChunk(2.0, 1.0, "x")
    with pytest.raises(ValueError, match="modality"):
        TimedChunk(0, 1, "x", modality="smell")
    with pytest.raises(ValueError, match="finite"):
        TimedChunk(0, float("nan"), "x")
    c = TimedChunk(0, 1.5, "hi")
    assert c.duration == 1.5


def test_chunk_json_keeps_shapes_not_pixels():
    c = TimedChunk(1, 2, "a red circle", modality="video", frames=np.zeros((2, 4, 4, 3), np.uint8),
                   frame_times=[1.0, 1.5], meta={"k": 1})
    d = c.to_dict()
    assert d["frames_shape"] == [2, 4, 4, 3] and "frames" not in d
    back = TimedChunk.from_dict(json.loads(json.dumps(d)))
    assert (back.start, back.end, back.text, back.modality, back.frame_times, back.meta) == (
        1.0, 2.0, "a red circle", "video", [1.0, 1.5], {"k": 1})


def test_every_event_roundtrips_through_json():
    chunk = TimedChunk(0, 1.2, "Tom has 5 apples.", index=0)
    events = [
        ChunkEvent(0, chunk, 1.2, 1.25, 1.3, 18, 0.05),
        ThoughtEvent(0, "Tom starts with 5.", 6, 1.3, 1.5, capped=False),
        SkipEvent(1, 2.0, 2.1, forced=True),
        DeepEvent("5 + 3 = 8", 9, 4.0, 4.0, 4.01, 4.5, 1, True),
        AnswerEvent("\\boxed{8}", "8", 5, 4.6, 4.7, 0.6, 0.7),
        SummaryEvent(answer="8", mode="stream", clock="simulated", chunks=2, thoughts=1, skips=1, forced_skips=1,
                     stream_tokens=7, deep_tokens=9, answer_tokens=5, input_tokens=50, prefill_tokens=50,
                     prefill_per_input=1.0, delay_s=0.6, delay_last_s=0.7, lag_s=0.05, lag_avg_s=0.02,
                     format_violations=0, stream_end_s=4.0, wall_s=3.0, extra={"format_stream": 1.0}),
    ]
    for ev in events:
        line = ev.to_json()
        back = event_from_json(line)
        assert type(back) is type(ev)
        assert back.to_dict() == json.loads(line)
    summary = json.loads(events[-1].to_json())
    assert summary["type"] == "summary" and summary["format_stream"] == 1.0  # extras are flattened


def test_unknown_event_type_is_rejected():
    with pytest.raises(ValueError, match="unknown event type"):
        event_from_dict({"type": "nope"})
