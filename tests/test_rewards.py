import pytest

from adasr_mm.training.rewards import RewardConfig, RolloutOutcome, score


def outcome(**kw):
    base = dict(correct=True, format_stream=1.0, format_deep=1.0, stream_tokens=64, deep_tokens=32)
    base.update(kw)
    return RolloutOutcome(**base)


def test_terms_and_phase_split_by_hand():
    cfg = RewardConfig(w_stream=0.25, w_deep=1.0, length_norm=256)
    (r, rs, rd), parts = score(outcome(format_stream=0.5), cfg)
    cost_s, cost_d = -0.25 * 64 / 256, -1.0 * 32 / 256
    assert parts == pytest.approx({"format": 0.75, "accuracy": 1.0, "adaptive": cost_s + cost_d})
    assert r == pytest.approx(0.75 + 1 + cost_s + cost_d)
    assert rs == pytest.approx(0.5 + 1 + cost_s) and rd == pytest.approx(1.0 + 1 + cost_d)


def test_adaptive_cost_only_when_correct_and_deep_costs_more():
    cfg = RewardConfig()
    (_, _, _), wrong = score(outcome(correct=False, deep_tokens=500), cfg)
    assert wrong["adaptive"] == 0.0 and wrong["accuracy"] == 0.0
    (r_deep, _, _), _ = score(outcome(stream_tokens=0, deep_tokens=100), cfg)
    (r_stream, _, _), _ = score(outcome(stream_tokens=100, deep_tokens=0), cfg)
    assert r_stream > r_deep  # the same thinking is cheaper before the stream ends


def test_reward_config_validation():
    with pytest.raises(ValueError, match="w_deep > w_stream"):
        RewardConfig(w_stream=1.0, w_deep=0.5)
    with pytest.raises(ValueError, match="unknown"):
        RewardConfig(terms="format,bogus")
    (r, _, _), parts = score(outcome(), RewardConfig(terms="accuracy"))
    assert parts == {"accuracy": 1.0} and r == 1.0
