import pytest

from adasr_mm.adapters.text import (
    TextAdapterConfig,
    TextSource,
    chunks_from_iterable,
    chunks_from_text,
    segment_text,
    split_sentences,
)
from adasr_mm.chunks import TimedChunk
from adasr_mm.errors import InputError


def test_sentence_split_respects_abbreviations_decimals_and_paragraphs():
    text = "Dr. Smith paid $3.50 for tea. Was it cheap? Yes, e.g. compared to J. K. Rowling's tea!\n\nNew line here"
    assert split_sentences(text) == [
        "Dr. Smith paid $3.50 for tea.",
        "Was it cheap?",
        "Yes, e.g. compared to J. K. Rowling's tea!",
        "New line here",
    ]


def test_long_sentences_are_split_and_short_ones_merged():
    long = " ".join(f"w{i}," if i % 7 == 6 else f"w{i}" for i in range(100)) + "."
    parts = segment_text(long, max_words=20, min_words=3)
    assert all(len(p.split()) <= 20 for p in parts)
    assert " ".join(parts).split() == long.split()
    assert segment_text("Yes. I think so too.", max_words=40, min_words=3) == ["Yes. I think so too."]


def test_chunks_are_timed_at_reading_speed_and_monotonic():
    chunks = list(chunks_from_text("One two three four five. Six seven eight nine ten.",
                                   TextAdapterConfig(words_per_minute=150)))
    assert [c.text for c in chunks] == ["One two three four five.", "Six seven eight nine ten."]
    assert chunks[0].start == 0 and chunks[0].end == pytest.approx(2.0)  # 5 words at 2.5 words/s
    assert chunks[1].start == pytest.approx(2.0) and chunks[1].end == pytest.approx(4.0)
    fast = list(chunks_from_text("One two three four five.", TextAdapterConfig(words_per_minute=300)))
    assert fast[0].end == pytest.approx(1.0)


def test_iterable_to_chunks_accepts_strings_tuples_dicts_and_chunks():
    items = ["a b c", (5.0, 6.0, "tuple"), {"start": 6, "end": 7, "text": "dict"}, TimedChunk(7, 8, "chunk")]
    chunks = list(chunks_from_iterable(items))
    assert [c.text for c in chunks] == ["a b c", "tuple", "dict", "chunk"]
    assert chunks[0].end == pytest.approx(1.2)
    assert [c.index for c in chunks] == [0, 1, 2, 3]
    with pytest.raises(InputError, match="item 0"):
        list(chunks_from_iterable([42]))


def test_text_source_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        TextSource(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n ")
    with pytest.raises(InputError, match="empty"):
        TextSource(empty)
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(InputError, match="binary"):
        TextSource(binary)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait.".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        TextSource(latin)
    big = tmp_path / "big.txt"
    big.write_text("word " * 1000)
    with pytest.raises(InputError, match="limit"):
        TextSource(big, TextAdapterConfig(max_bytes=100))
    ok = tmp_path / "ok.txt"
    ok.write_text("\ufeffHello there world. Bye now friend.", encoding="utf-8")
    src = TextSource(ok)
    assert [c.text for c in src] == ["Hello there world.", "Bye now friend."]
    assert src.duration == pytest.approx(6 * 60 / 150)


def test_bad_text_config_values():
    with pytest.raises(ValueError, match="words_per_minute"):
        TextAdapterConfig(words_per_minute=0)
    with pytest.raises(ValueError, match="min_words"):
        TextAdapterConfig(max_words=5, min_words=9)
