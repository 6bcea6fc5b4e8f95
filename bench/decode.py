"""
The sampler's decode step on one device: (b) KV-cached prefill and decode against a full forward, and which attention
kernels ran for prefill, decode and training; (c) decode tokens/s of sample_groups at 128 and 256 rows of a random
model with Qwen2.5-1.5B's shape, three ways: eager (op by op), graph_unfused (the step replayed as a CUDA graph) and
graph (CUDA graph of the step with its element-wise pieces fused by torch.compile: the default on CUDA), and the
fraction of the memory roofline each reaches; then a profile of one step: its kernels and where their time goes.

Roofline: a decode step must read every weight once (the tied embedding once, as the head) and the KV cache slots its
rows have filled (not the preallocated length); those bytes over the bandwidth of a large device-to-device copy
(bytes read + written, measured in this run) are the step's floor. Decode time is the time of a run of --new tokens
minus that of a run of one token (prefill and the first sample), the best of --repeats each: the first run of a
variant captures its graphs, which the model's engine keeps, so later runs replay them.

    python bench/decode.py --device cuda                     # bench/device.sh: bfloat16, 128 and 256 rows
    python bench/decode.py --device cpu --shape tiny --rows 16 --new 32   # the CPU smoke run (tests)
Last line: `decode: graph_vs_eager_128=... graph_vs_eager_256=... roofline_256=... cached_vs_full=... ok=...`.
"""
import argparse
import math
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import model as model_module  # noqa: E402
import rollout  # noqa: E402
from model import Qwen2, Qwen2Config  # noqa: E402
from rollout import CUDA_PLAN, kv_bytes_per_token, plan_for, sample_groups, sample_next  # noqa: E402

# Qwen2.5-1.5B's config.json (the shape; the weights are random)
QWEN25_15B = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                  num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6,
                  tie_word_embeddings=True)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, rope_theta=1e4, tie_word_embeddings=True)


def random_model(shape, dtype, device, layers=None, seed=0):
    """A random-weight model built on the device (normal(0, 0.02), unit norms): a 1.5B model in a second on a GPU."""
    config = Qwen2Config(**(shape | ({"num_hidden_layers": layers} if layers else {})))
    with torch.device("meta"):
        model = Qwen2(config)
    gen = torch.Generator(device=device).manual_seed(seed)
    state = {n: (torch.ones(p.shape, device=device) if n.endswith("norm.weight") else
                 torch.randn(p.shape, generator=gen, device=device) * 0.02).to(dtype)
             for n, p in model.state_dict().items() if n != "lm_head.weight" or not config.tie_word_embeddings}
    return Qwen2.from_state_dict(config, state).eval()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def cached_vs_full(model, device, n_decode=8):
    """Relative max error of KV-cached logits (a right-padded prefill, then one-token steps at per-row positions)
    against a full forward over each row's whole sequence, in the model's dtype."""
    gen = torch.Generator().manual_seed(1)
    V = model.config.vocab_size
    lens = [5, 17, 11]
    seqs = [torch.randint(0, V, (n + n_decode,), generator=gen).to(device) for n in lens]
    kv = model.new_kv_cache(len(seqs), max(lens) + n_decode)
    padded = torch.zeros(len(seqs), max(lens), dtype=torch.long, device=device)
    for i, (s, n) in enumerate(zip(seqs, lens)):
        padded[i, :n] = s[:n]
    prefill = model(padded, kv_cache=kv)  # (B, Lp, V)
    worst, scale = 0.0, 0.0
    for i, (s, n) in enumerate(zip(seqs, lens)):
        full = model(s[None, :n])[0].float()  # (n, V)
        worst, scale = max(worst, (prefill[i, :n].float() - full).abs().max().item()), max(scale, full.abs().max().item())
    pos = torch.tensor(lens, device=device)
    for t in range(n_decode):
        nxt = torch.stack([s[n + t] for s, n in zip(seqs, lens)])[:, None]  # (B, 1)
        cached = model(nxt, kv_cache=kv, pos=pos)[:, 0].float()  # (B, V)
        for i, (s, n) in enumerate(zip(seqs, lens)):
            full = model(s[None, :n + t + 1])[0, -1].float()
            worst = max(worst, (cached[i] - full).abs().max().item())
        pos = pos + 1
    return worst / scale


def attention_kernels(model, device):
    """Names of the attention kernels CUDA ran for a prefill, a decode step and a training forward + backward."""
    from torch.profiler import ProfilerActivity, profile
    V = model.config.vocab_size
    idx = torch.randint(0, V, (4, 64), device=device)
    kv = model.new_kv_cache(4, 80)

    def kernels(fn):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        names = {e.name for e in prof.events() if str(e.device_type).endswith("CUDA")}
        keys = ("flash", "fmha", "attention", "cudnn", "sdpa", "softmax", "gemm", "bmm")
        return sorted(n[:70] for n in names if any(k in n.lower() for k in keys))

    with torch.no_grad():
        model(idx, kv_cache=kv)  # warm-up
        found = {"prefill": kernels(lambda: model(idx, kv_cache=kv))}
        pos = torch.full((4,), 64, device=device)
        found["decode"] = kernels(lambda: model(idx[:, :1], kv_cache=kv, pos=pos))
    model.requires_grad_(True)
    found["training"] = kernels(lambda: model(idx, return_hidden=True).float().square().mean().backward())
    model.requires_grad_(False).zero_grad(set_to_none=True)
    return found


@torch.no_grad()
def step_profile(model, rows, filled, device, top=8):
    """One decode step (forward of one token per row at `filled` cached slots, head, sampling) under the profiler:
    the number of CUDA kernels, their summed time, and the kernels that take most of it."""
    from torch.profiler import ProfilerActivity, profile
    kv = model.new_kv_cache(rows, filled + 8)
    token = torch.randint(0, model.config.vocab_size, (rows, 1), device=device)
    pos = torch.full((rows,), filled, device=device)
    u = torch.rand(rows, device=device)

    def step():
        h = model(token, kv_cache=kv, pos=pos, span=filled + 1, return_hidden=True)
        return sample_next(model.lm_head(h[:, 0]).float(), u, 1.0, 50, 1.0)
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if str(e.device_type).endswith("CUDA")]
    total = sum(e.time_range.elapsed_us() for e in kernels)  # microseconds
    by_name = {}
    for e in kernels:
        by_name[e.name[:60]] = by_name.get(e.name[:60], 0) + e.time_range.elapsed_us()
    heavy = sorted(by_name.items(), key=lambda kv: -kv[1])[:top]
    return len(kernels), total, heavy


def copy_bandwidth(device, gib=2):
    """Bytes read + written per second by a large device-to-device copy (the median of 10 after a warm-up)."""
    x = torch.empty(int(gib * 2**30), dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    times = []
    for i in range(11):
        sync(device)
        t0 = time.perf_counter()
        y.copy_(x)
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    del x, y
    return 2 * gib * 2**30 / sorted(times)[len(times) // 2]


def decode_rate(model, prompts, G, new, plan, repeats):
    """Decode seconds for rows x (new - 1) tokens: the best run of `new` tokens minus the best run of one."""
    device = model.lm_head.weight.device
    best = {}
    for n in (1, new, 1, new)[:2 * repeats]:
        sync(device)
        t0 = time.perf_counter()
        out = sample_groups(model, prompts, G, n, temperature=1.0, top_k=50, seed=0, plan=plan)
        sync(device)
        best[n] = min(best.get(n, math.inf), time.perf_counter() - t0)
        assert out["tokens"].shape == (len(prompts) * G, n)  # no stop ids: every row runs every token
    return best[new] - best[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--shape", default="1.5b", choices=["1.5b", "tiny"])
    p.add_argument("--rows", default="128,256", help="decode batch sizes (multiples of --G)")
    p.add_argument("--G", type=int, default=8)
    p.add_argument("--new", type=int, default=512, help="new tokens per row (the graph variants)")
    p.add_argument("--eager-new", type=int, default=129, help="new tokens per row of the eager variant (slow: its "
                   "per-step time is what counts)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    warnings.filterwarnings("ignore", message="(?s).*(Online softmax|Profiler clears events)")  # noise in the log
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible to torch")
    shape = QWEN25_15B if args.shape == "1.5b" else TINY
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"decode bench on {where}, {args.dtype}, shape {args.shape}")
    t_start = time.perf_counter()

    # (b) cached against full, in this dtype and in float32, on a 2-layer model of this shape
    errors = {name: cached_vs_full(random_model(shape, getattr(torch, name), device, layers=2), device)
              for name in dict.fromkeys((args.dtype, "float32"))}
    print(f"[{time.perf_counter() - t_start:5.0f} s] cached vs full forward, relative max error:",
          " ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    ok = errors["float32"] <= 1e-4 and errors[args.dtype] <= (1e-4 if dtype == torch.float32 else 3e-2)
    model = random_model(shape, dtype, device)
    if device.type == "cuda":
        try:  # a figure, not a check: a profiler failure is printed, and the bench goes on
            for phase, names in attention_kernels(random_model(shape, dtype, device, layers=2), device).items():
                print(f"{phase} attention/matmul kernels: {names}")
        except Exception as e:
            print(f"attention kernels: the profiler failed: {e!r}")

    # (c) decode tokens/s: op by op, a CUDA graph of the step, and a CUDA graph of the fused step; the roofline
    bandwidth = copy_bandwidth(device) if device.type == "cuda" else None
    if bandwidth:
        print(f"[{time.perf_counter() - t_start:5.0f} s] device copy bandwidth {bandwidth / 1e12:.2f} TB/s "
              f"(read + written)")
    weight_bytes = sum(t.numel() * t.element_size() for t in model.parameters())  # tied: the embedding once
    per_token = kv_bytes_per_token(model.config, dtype)
    gen = torch.Generator().manual_seed(0)
    figures = {}
    variants = [("eager", plan_for(device)._replace(cuda_graphs=False), False)]
    if device.type == "cuda":
        variants += [("graph_unfused", CUDA_PLAN, False), ("graph", CUDA_PLAN, True)]
    for rows in map(int, args.rows.split(",")):
        prompts = [torch.randint(0, shape["vocab_size"], (int(n),), generator=gen).tolist()
                   for n in torch.randint(32, 97, (rows // args.G,), generator=gen)]
        filled = sum(len(p) for p in prompts) * args.G  # KV slots read at step t: filled + rows * t
        for name, plan, fused in variants:
            new = args.eager_new if name == "eager" else args.new
            steps = new - 1
            kv_read = per_token * (filled * steps + rows * steps * (steps + 1) / 2)
            floor = (weight_bytes * steps + kv_read) / bandwidth if bandwidth else None  # seconds
            model_module.FUSE_ON_CUDA = fused
            rollout.ENGINES.pop(model, None)  # a variant captures its own graphs (the engine keeps them across calls)
            seconds = decode_rate(model, prompts, args.G, new, plan, args.repeats)
            figures[name, rows] = seconds / steps  # per step
            figures[name, rows, "roofline"] = floor / seconds if floor else None
            print(f"[{time.perf_counter() - t_start:5.0f} s] {rows} rows x {new} tokens, {name:>13}: "
                  f"{rows * steps / seconds:8.0f} tok/s, {1e3 * seconds / steps:.2f} ms/step" +
                  (f", roofline {floor / seconds:.2f} (floor {1e3 * floor / steps:.2f} ms/step)" if floor else ""),
                  flush=True)
    model_module.FUSE_ON_CUDA = True
    if device.type == "cuda":
        print(f"peak allocated {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        for fused in (False, True):  # where a step's time goes
            model_module.FUSE_ON_CUDA = fused
            try:
                n, total, heavy = step_profile(model, 256, 320, device)
                print(f"one step, 256 rows at 320 cached slots, {'fused' if fused else 'op by op'}: {n} kernels, "
                      f"{total / 1e3:.2f} ms of kernel time; heaviest: " +
                      "; ".join(f"{name} {t / 1e3:.2f} ms" for name, t in heavy))
            except Exception as e:
                print(f"step profile: the profiler failed: {e!r}")
        model_module.FUSE_ON_CUDA = True
    summary = []
    for rows in map(int, args.rows.split(",")):
        if ("graph", rows) in figures:
            summary += [f"graph_vs_eager_{rows}={figures['eager', rows] / figures['graph', rows]:.2f}",
                        f"unfused_graph_vs_eager_{rows}={figures['eager', rows] / figures['graph_unfused', rows]:.2f}",
                        f"roofline_{rows}={figures['graph', rows, 'roofline']:.3f}"]
        else:
            summary.append(f"eager_tok_s_{rows}={rows / figures['eager', rows]:.0f}")
    summary += [f"cached_vs_full_{name}={err:.1e}" for name, err in errors.items()]
    print(f"decode: {' '.join(summary)} ok={int(ok)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
