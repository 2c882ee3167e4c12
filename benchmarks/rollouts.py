"""Policy tokens/s of streaming rollouts: batch-1 ``Session`` vs the batched engine, same run, same seeds.

RL settings: sampling (temperature 1), the RL caps, word problems of the standard level, for each rollout dtype
(``--dtype bfloat16,float32``: RL decodes a bf16 copy with ``rl.rollout_dtype=bfloat16``, the trained float32
weights themselves with ``float32``). Batch-1 runs every rollout alone, as the ``session`` rollout backend does;
each rollout is timed on its own, so the batch-1 rate of a configuration is measured over the very rollouts (stream, seed) that
the batched engine decodes for it. Policy tokens are the tokens the policy generated (env_mask = 1). The load
average is recorded around every measurement: the machine is shared, so compare within one run only.

    python benchmarks/rollouts.py [--groups 8,4,16] [--streams 2] [--threads 2] [--level standard|easy]
                                  [--caps 24,64,16] [--batch1-max 8] [--batch1-streams 2] [--json PATH]

On a machine shared with other jobs use ``--threads 1``: with two intra-op threads and more runnable threads than
cores, OpenMP's barrier waits made a decode step ~6x slower here (7 s vs 1.2 s per token at load 15).

For every dtype but float32 the run also measures how far its rollouts are off-policy for float32 training: both
models teacher-force the G = 8 traces and the per-token log-prob gap is reported (``logprob_gap``).

The last line printed is ``speedup_g8=<x>`` (batched vs batch-1 at G = 8 on one stream, first dtype); per dtype
``speedup_g8_<dtype>=<x>`` before it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def policy_tokens(res) -> int:
    return sum(res.state.env_mask[res.state.prompt_len:])


def run_batch1(policy, stream, seeds: list[int]) -> list[dict]:
    from adasr_mm.session import Session, SessionConfig

    out = []
    for s in tqdm(seeds, desc="batch-1", leave=False, file=sys.stderr):
        t0 = time.perf_counter()
        session = Session(policy, stream.question, SessionConfig(max_lag_s=0.0), clock="instant", seed=s)
        for c in stream.chunks:
            for _ in session.push(c):
                pass
        res = session.finish()
        out.append({"seed": s, "s": time.perf_counter() - t0, "tokens": policy_tokens(res), "ids": res.state.ids})
    return out


def run_batched_cfg(policy, jobs) -> dict:
    from adasr_mm.batch import BatchEngine  # already imported by main(): the code measured is the code loaded
    from adasr_mm.session import SessionConfig

    t0 = time.perf_counter()
    engine = BatchEngine(policy, session_config=SessionConfig(max_lag_s=0.0))
    rows = []
    for stream, seeds in jobs:
        rows.extend(engine.add(stream.question, stream.chunks, seeds))
    engine.run(progress=True)
    dt = time.perf_counter() - t0
    st = engine.stats
    return {"s": dt, "tokens": sum(policy_tokens(r.result) for r in rows),
            "traces": [(r.state.ids, r.state.env_mask, r.state.prompt_len) for r in rows],
            "forward_calls": st.forward_calls, "decode_steps": st.decode_steps, "prefill_steps": st.prefill_steps,
            "hole_fraction": 1 - st.real_tokens / max(1, st.positions), "compactions": st.compactions}


def logprob_gap(policy, ref, traces: list[tuple[list[int], list[int], int]]) -> dict:
    """Per-token log-prob gap between ``policy`` (the rollout dtype) and ``ref`` (float32, what training computes)
    on the policy tokens of ``traces`` (ids, env_mask, prompt_len), both teacher-forced over the whole trace."""
    import torch

    gaps = []
    with torch.no_grad():
        for ids, env, n in traces:
            x = torch.tensor([ids])
            lp = [torch.log_softmax(m.model(input_ids=x).logits[0, :-1].float(), -1) for m in (policy, ref)]
            pos = torch.tensor([i for i in range(n, len(ids)) if env[i]])
            tok = x[0, pos]
            a, b = (t[pos - 1, tok] for t in lp)
            gaps.append(a - b)
    g = torch.cat(gaps)
    ratio = torch.exp(-g)  # pi_train / pi_rollout per token: what an importance-sampling correction would weigh
    return {"tokens": len(g), "mean_abs": round(float(g.abs().mean()), 5),
            "p99_abs": round(float(g.abs().quantile(0.99)), 5), "max_abs": round(float(g.abs().max()), 5),
            "ratio_outside_clip": round(float(((ratio < 0.8) | (ratio > 1.28)).float().mean()), 5)}


def table(rows: list[dict]) -> str:
    out = ["| dtype | config | rollouts | batch-1 tok/s | batched tok/s | speed-up | identical traces | holes | load |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['dtype']} | {r['config']} | {r['rollouts']} | {r['batch1_tok_s']} | {r['batched_tok_s']} | "
                   f"{r['speedup']}x | {r['identical_traces']}/{r['batch1_rollouts']} | {r['hole_fraction']:.2f} | "
                   f"{r['load_before']} |")
    return "\n".join(out)


def compare(name: str, jobs, b: dict, base: dict, streams, load: float) -> dict:
    """One table row: the batched run against the batch-1 runs of the same (stream, seed) pairs."""
    keys = [(streams.index(st), s) for st, ss in jobs for s in ss]
    ref = [base[k] for k in keys if k in base]  # the batch-1 runs of these very rollouts (up to --batch1-max)
    b1_tok, b1_s = sum(r["tokens"] for r in ref), sum(r["s"] for r in ref)
    same = sum(base[k]["ids"] == t[0] for k, t in zip(keys, b["traces"], strict=True) if k in base)
    extra = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in b.items() if k not in ("s", "tokens", "traces")}
    return {"config": name, "rollouts": len(keys), "batch1_rollouts": len(ref), "batch1_tokens": b1_tok,
            "batch1_s": round(b1_s, 2), "batch1_tok_s": round(b1_tok / b1_s, 2), "batched_tokens": b["tokens"],
            "batched_s": round(b["s"], 2), "batched_tok_s": round(b["tokens"] / b["s"], 2),
            "speedup": round((b["tokens"] / b["s"]) / (b1_tok / b1_s), 2), "identical_traces": same,
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2), **extra}


def run_dtype(dtype: str, pcfg, streams, configs, args, ref=None) -> tuple[list[dict], object]:
    """Batch-1 then batched rollouts with the policy in ``dtype``; table rows and the float32 policy if one was
    loaded (the log-prob reference, reused by the dtypes measured after it), else ``ref``."""
    import dataclasses

    from adasr_mm.policy import StreamingPolicy

    policy = StreamingPolicy.from_pretrained(dataclasses.replace(pcfg, dtype=dtype))
    base: dict[tuple[int, int], dict] = {}
    for k, stream in enumerate(streams[: args.batch1_streams]):
        need = sorted({s for _, jobs in configs for st, ss in jobs if st is stream for s in ss})[: args.batch1_max]
        for r in run_batch1(policy, stream, need):
            base[(k, r["seed"])] = r
    rows = []
    for name, jobs in tqdm(configs, desc=f"batched {dtype}", file=sys.stderr):
        load = os.getloadavg()[0]
        b = run_batched_cfg(policy, jobs)
        row = {"dtype": dtype, **compare(name, jobs, b, base, streams, load)}
        if name == "1x8" and dtype != "float32":
            ref = ref or StreamingPolicy.from_pretrained(dataclasses.replace(pcfg, dtype="float32"))
            row["logprob_gap"] = logprob_gap(policy, ref, b["traces"])
        rows.append(row)
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    return rows, (policy if dtype == "float32" else ref)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", default="8,4,16", help="G values for one stream (run in this order)")
    ap.add_argument("--streams", type=int, default=2, help="streams in the multi-stream config (x 8 rollouts)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="bfloat16,float32",
                    help="rollout dtypes, measured one after the other; the first is the one speedup_g8 reports (bfloat16: "
                         "the CPU presets' rl.rollout_dtype; float32: the trained weights themselves)")
    ap.add_argument("--caps", default="", help="thought,deep,answer caps (default: the RL stage's)")
    ap.add_argument("--level", default="standard", help="word-problem level: standard or easy (fewer chunks)")
    ap.add_argument("--batch1-streams", type=int, default=2,
                    help="streams timed at batch 1; configs over other streams use the rate of these")
    ap.add_argument("--batch1-max", type=int, default=8,
                    help="batch-1 rollouts per stream (its seeds are the first ones of every config); a config with "
                         "more rollouts is compared with the batch-1 rate of these")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "rollouts.json"))
    args = ap.parse_args(argv)

    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    import adasr_mm.batch  # noqa: F401 - load the engine before the (long) batch-1 phase
    from adasr_mm.policy import PolicyConfig
    from adasr_mm.training.tasks import word_problems
    from adasr_mm.training.trainer import RolloutStageConfig

    rl = RolloutStageConfig()
    caps = [int(x) for x in args.caps.split(",")] if args.caps else [
        rl.max_thought_tokens, rl.max_deep_tokens, rl.max_answer_tokens]
    pcfg = PolicyConfig(max_thought_tokens=caps[0], max_deep_tokens=caps[1], max_answer_tokens=caps[2],
                        temperature=rl.temperature, top_p=rl.top_p)
    dtypes = args.dtype.split(",")
    groups = [int(g) for g in args.groups.split(",")]
    streams = word_problems("test", max(1, args.streams), level=args.level)
    seeds = [[args.seed * 1000 + 100 * k + i for i in range(max(groups + [8]))] for k in range(len(streams))]
    configs = [(f"1x{g}", [(streams[0], seeds[0][:g])]) for g in groups]
    if args.streams > 1:
        configs.insert(1, (f"{len(streams)}x8", [(streams[k], seeds[k][:8]) for k in range(len(streams))]))
    result = {
        "benchmark": "rollouts", "level": args.level, "batch1_streams": args.batch1_streams,
        "batch1_max": args.batch1_max, "dtypes": dtypes, "threads": args.threads, "temperature": pcfg.temperature,
        "caps": caps, "streams": [{"id": s.id, "chunks": len(s.chunks)} for s in streams],
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "transformers": transformers.__version__, "load_start": list(os.getloadavg()), "rows": [],
    }
    ref = None
    for dtype in dtypes:
        rows, ref = run_dtype(dtype, pcfg, streams, configs, args, ref)
        result["rows"] += rows
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")  # partial results survive an abort
    print(table(result["rows"]))
    for r in result["rows"]:
        if "logprob_gap" in r:
            print(f"{r['dtype']} vs float32 log-probs on the 1x8 traces: {r['logprob_gap']}")
    g8 = {r["dtype"]: r["speedup"] for r in result["rows"] if r["config"] == "1x8"}
    for d in dtypes:
        print(f"speedup_g8_{d}={g8.get(d, float('nan'))}")
    print(f"speedup_g8={g8.get(dtypes[0], float('nan'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
