"""
The sampling engine that lives for the whole run (rollout.Engine) on one device, two checks:
  graphs  (f) decoding with CUDA graphs against the same plan op by op, with stop ids so that rows finish at different
          steps and the batch compacts: greedy tokens equal, sampled log-probs within bfloat16's rounding where the
          tokens agree; then the captures and the seconds of the same call made several times (a run captures at
          most once per (rows, span, sampling) key: the repeats replay, capturing nothing)
  eval    (g) an evaluation-sized call: OlympiadBench's longest prompts (the real tokenizer and config), greedy, at the
          rows ghpo.check_memory plans for configs/qwen2.5-math-1.5b.py on this card, with the run's resident state
          (weights, float32 master weights, AdamW moments) in place: its peak memory against the plan's
Random weights of Qwen2.5-1.5B's shape (the weights do not matter to either check).

    python bench/engine.py graphs --device cuda                                 # bench/device.sh
    python bench/engine.py eval --device cuda --tokenizer out/real_shape/tokenizer/tokenizer.json
    python bench/engine.py graphs --device cpu --shape tiny                     # CPU smoke runs (tests): the CUDA
    python bench/engine.py eval --device cpu --shape tiny --new 4               # plan op by op; a made-up card
Last line: `engine_graphs: ... ok=...` or `eval_call: ... ok=...`.
"""
import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import ghpo  # noqa: E402
import rollout  # noqa: E402
from data import qwen_tokenizer  # noqa: E402
from decode import QWEN25_15B, TINY, random_model  # noqa: E402  (bench/decode.py)
from model import load_tokenizer  # noqa: E402

GIB = 2**30


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def graphs(args, device, model):
    """(f): graph against op by op, then captures and seconds over --calls calls."""
    V = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, V, (int(n),), generator=gen).tolist()
               for n in torch.randint(32, 97, (args.rows // 8,), generator=gen)]
    kw = dict(G=8, max_new_tokens=args.new, stop_ids=tuple(range(0, V, args.stop_every)))
    graph_plan = rollout.CUDA_PLAN._replace(cuda_graphs=device.type == "cuda")  # the CPU: its logic, op by op
    eager_plan = rollout.CUDA_PLAN._replace(cuda_graphs=False) if device.type == "cuda" else rollout.CPU_PLAN
    ok, figures = True, {}
    for name, sampling in (("greedy", dict(temperature=0.0)), ("sampled", dict(temperature=1.0, top_k=50))):
        eager = rollout.sample_groups(model, prompts, seed=1, plan=eager_plan, **kw, **sampling)
        graph = rollout.sample_groups(model, prompts, seed=1, plan=graph_plan, **kw, **sampling)
        same = eager["tokens"] == graph["tokens"]  # (N, T)
        both = same & eager["mask"] & graph["mask"]
        err = (eager["logprobs"] - graph["logprobs"])[both].abs().max().item() if both.any() else 0.0
        lengths = eager["lengths"].tolist()
        print(f"{name}: {len(lengths)} rows, lengths {min(lengths)}-{max(lengths)} ({len(set(lengths))} distinct); "
              f"tokens equal {same.float().mean().item():.4f} of them; log-prob max difference {err:.2e} where equal")
        figures[f"{name}_tokens_equal"] = f"{same.float().mean().item():.4f}"
        figures[f"{name}_logp_err"] = f"{err:.1e}"
        ok &= err <= 3e-2 and (bool(same.all()) if name == "greedy" else len(set(lengths)) > 2)
    e = rollout.engine(model)
    seconds, captures = [], []
    for call in range(args.calls):  # the same call again: the same shapes, every key captured by the first call
        sync(device)
        t0 = time.perf_counter()
        rollout.sample_groups(model, prompts, seed=2, temperature=1.0, top_k=50, plan=graph_plan, **kw)
        sync(device)
        seconds.append(time.perf_counter() - t0)
        captures.append(e.captures)
    print(f"{args.calls} calls: captures after each {captures} ({len(e.graphs)} keys), seconds "
          f"{' '.join(f'{s:.2f}' for s in seconds)}")
    ok &= e.captures == len(e.graphs) and captures[-1] == captures[0] and rollout.engine(model) is e
    figures |= dict(captures=e.captures, keys=len(e.graphs), later_new_captures=captures[-1] - captures[0],
                    first_call_s=f"{seconds[0]:.2f}", later_call_s=f"{min(seconds[1:]):.2f}")
    return figures, ok


def evaluation(args, device, model):
    """(g): the planned rows of OlympiadBench's longest prompts in one greedy call, peak against the plan."""
    ghpo.configure(["--config", os.path.join(ROOT, "configs", "qwen2.5-math-1.5b.py"), f"--device={device.type}"])
    tokenizer_file = args.tokenizer or os.path.join(ROOT, "out", "real_shape", "tokenizer", "tokenizer.json")
    if not os.path.isfile(tokenizer_file):
        qwen_tokenizer.write_tokenizer(os.path.dirname(tokenizer_file))
    tok = load_tokenizer(os.path.dirname(tokenizer_file))
    train, evals = ghpo.load_task()
    chars = lambda p: len(p["problem"]) + 0.75 * len(p.get("solution") or "")
    train = sorted(train, key=chars)[-30:]  # the longest hinted prompt is among them (tests/test_memory.py)
    policy = ghpo.make_policy(model)  # the resident state of a run: weights and master weights, then the plan
    if device.type == "cuda":
        plan = ghpo.check_memory(model, policy, tok, train, evals)  # reserves the engine at the plan's size
    else:  # the CPU has no card: the plan of one with 64 MiB to spare, the engine reserved as check_memory would
        n = sum(p.numel() for p in model.parameters())
        plan = rollout.memory_plan(model.config, torch.bfloat16, 14 * n + rollout.CUDA_CONTEXT + 2**26, 14 * n, 512,
                                   32, 512, n, True)
        rollout.engine(model, plan.rows, plan.cache_len)
        print(plan.describe("CPU smoke run"))
    for m in policy.master or list(model.parameters()):  # and AdamW's moments, as in a mid-run evaluation (a step on
        m.grad = torch.zeros_like(m)  # zero gradients allocates them)
    policy.optimizer.step()
    policy.optimizer.zero_grad(set_to_none=True)
    prompts = sorted((ghpo.prompt_ids(tok, p) for p in evals["olympiadbench"]), key=len)[-plan.rows:]
    prompts = [[t % model.config.vocab_size for t in p][:plan.cache_len - args.new] for p in prompts]  # (tiny vocab)
    rows = rollout.sampling_rows(model, prompts, 1, args.new, ghpo.DTYPES[ghpo.dtype], device.type == "cuda",
                                 ghpo.sample_rows, cpu_rows=plan.rows)
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = rollout.sample_groups(model, prompts, 1, args.new, temperature=0.0, max_rows=rows)
    sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    planned = plan.peaks()["evaluation"] - rollout.CUDA_CONTEXT  # the context is outside torch's allocator
    print(f"{len(prompts)} prompts of {len(prompts[0])}-{len(prompts[-1])} tokens, {rows} rows a call, "
          f"{out['tokens'].shape[1]} new tokens in {seconds:.1f} s; peak {peak / GIB:.2f} GiB, plan "
          f"{planned / GIB:.2f}")
    figures = dict(rows=rows, prompt_max=len(prompts[-1]), peak_gib=f"{peak / GIB:.2f}",
                   plan_gib=f"{planned / GIB:.2f}", seconds=f"{seconds:.1f}")
    return figures, peak <= planned and rows == plan.rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("check", choices=["graphs", "eval"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--shape", default="1.5b", choices=["1.5b", "tiny"])
    p.add_argument("--rows", type=int, default=128, help="graphs: rows of a call (16 prompts x G=8)")
    p.add_argument("--new", type=int, default=0, help="new tokens (default: graphs 256, eval 128)")
    p.add_argument("--stop-every", type=int, default=0, help="graphs: every this many ids is a stop id (default: "
                   "1 in 150 of the vocabulary, so rows stop at different steps)")
    p.add_argument("--calls", type=int, default=3, help="graphs: calls in a row")
    p.add_argument("--tokenizer", default="", help="eval: the Qwen2.5 tokenizer.json (default: built from qwen-agent)")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible to torch")
    args.new = args.new or (256 if args.check == "graphs" else 128)
    shape = (QWEN25_15B if args.shape == "1.5b" else TINY) | {"max_position_embeddings": 4096}  # Qwen2.5-Math's
    args.stop_every = args.stop_every or max(2, shape["vocab_size"] // 150)
    model = random_model(shape, torch.bfloat16, device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"engine bench ({args.check}) on {where}: torch {torch.__version__}, shape {args.shape}, bfloat16")
    figures, ok = (graphs if args.check == "graphs" else evaluation)(args, device, model)
    name = "engine_graphs" if args.check == "graphs" else "eval_call"
    print(f"{name}: {' '.join(f'{k}={v}' for k, v in figures.items())} ok={int(ok)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
