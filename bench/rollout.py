"""
Rollout throughput: rollout.sample_groups against transformers' generate (KV cache on) and against a sampler that
recomputes the full forward every step, all in this run on the same random-weight Qwen2 (hidden 256, 4 layers, 8
heads, 2 KV heads, vocab 8192): 16 prompts of 20-60 tokens, G=8, 128 new tokens, temperature 1, top_k 50, top_p 1.
No stop ids, so every row of every sampler produces exactly 128 tokens (equal work). Tokens/s counts generated tokens
over wall time, prefill included. transformers is a bench-only dependency (requirements-dev.txt).

    python bench/rollout.py                      # CPU float32
    python bench/rollout.py --threads 1          # when other jobs share the CPU: a second thread that has to wait
                                                 # for a busy core slows small ops by an order of magnitude
    python bench/rollout.py --device cuda --dtype bfloat16
    python bench/rollout.py --device cuda --dtype bfloat16 --shape 0.5b --new 512 --repeats 2   # bench/device.sh:
                        # Qwen2.5-0.5B's shape (vocab 151936, 24 layers), 16 prompts x G=8 = the sampler's 128 rows
The no-cache sampler costs O(T^2) per row, so it runs on the first --nocache-prompts prompts (all G rows each) and
is compared with ours on that same subset. A last section measures dropping finished rows (compaction) when rows
stop early, against keeping them in the batch.
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import Qwen2, Qwen2Config  # noqa: E402
from rollout import sample_groups, sample_next  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cpu")
parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
parser.add_argument("--prompts", type=int, default=16)
parser.add_argument("--G", type=int, default=8)
parser.add_argument("--new", type=int, default=128)
parser.add_argument("--nocache-prompts", type=int, default=1)
parser.add_argument("--repeats", type=int, default=3, help="best of this many timed runs per sampler")
parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
parser.add_argument("--shape", default="small", choices=["small", "0.5b"],
                    help="small: the model above; 0.5b: Qwen2.5-0.5B's config with random weights")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
device, dtype = torch.device(args.device), getattr(torch, args.dtype)
SAMPLING = dict(temperature=1.0, top_k=50, top_p=1.0)

config = Qwen2Config(vocab_size=8192, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                     num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10000.0,
                     tie_word_embeddings=True) if args.shape == "small" else Qwen2Config()  # the defaults: 0.5B
model = Qwen2.from_config(config, seed=0, dtype=dtype, device=device).eval()
gen = torch.Generator().manual_seed(0)
prompts = [torch.randint(0, config.vocab_size, (int(n),), generator=gen).tolist()
           for n in torch.randint(20, 61, (args.prompts,), generator=gen)]
n_tokens = len(prompts) * args.G * args.new


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(*fns, repeats=args.repeats):
    """Best wall time of each function over `repeats` rounds, after one short warm-up call each. The rounds
    interleave the functions, so a slow spell of this shared machine hits all of them alike."""
    for fn in fns:
        fn(warmup=True)
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            sync()
            t0 = time.perf_counter()
            out = fn()
            sync()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best, out


def ours(warmup=False, n_prompts=len(prompts), compact_below=0.75, stop_ids=()):
    out = sample_groups(model, prompts[:2 if warmup else n_prompts], args.G, 8 if warmup else args.new,
                        stop_ids=stop_ids, seed=1, compact_below=compact_below, **SAMPLING)
    assert warmup or stop_ids or bool(out["mask"].all()) and out["tokens"].shape[1] == args.new
    return out


@torch.no_grad()
def nocache(warmup=False):
    """Sampling by a full forward over prompt + completion-so-far at every step, no KV cache."""
    ps = prompts[:1 if warmup else args.nocache_prompts]
    n_new = 8 if warmup else args.new
    rows = [p for p in ps for _ in range(args.G)]
    lens = torch.tensor([len(p) for p in rows], device=device)  # (B,)
    seq = torch.zeros(len(rows), int(lens.max()) + n_new, dtype=torch.long, device=device)  # right-padded
    for i, p in enumerate(rows):
        seq[i, :len(p)] = torch.tensor(p)
    g = torch.Generator(device=device).manual_seed(1)
    b = torch.arange(len(rows), device=device)
    for t in range(n_new):  # causal attention: row i's padding after lens[i]+t never reaches its last position
        h = model(seq[:, :int(lens.max()) + t], return_hidden=True)[b, lens + t - 1]  # (B, C)
        token, _ = sample_next(model.lm_head(h).float(), torch.rand(len(rows), generator=g, device=device),
                               **SAMPLING)
        seq[b, lens + t] = token


def transformers_generate(hf):
    @torch.no_grad()
    def run(warmup=False):
        ps = prompts[:2] if warmup else prompts
        width = max(map(len, ps))
        ids = torch.zeros(len(ps), width, dtype=torch.long)  # left-padded, as generate needs for decoder-only
        att = torch.zeros(len(ps), width, dtype=torch.long)
        for i, p in enumerate(ps):
            ids[i, width - len(p):], att[i, width - len(p):] = torch.tensor(p), 1
        out = hf.generate(ids.to(device), attention_mask=att.to(device), do_sample=True,
                          num_return_sequences=args.G, max_new_tokens=8 if warmup else args.new,
                          min_new_tokens=8 if warmup else args.new, eos_token_id=None, pad_token_id=0,
                          use_cache=True, **SAMPLING)
        assert warmup or out.shape == (len(ps) * args.G, width + args.new)
    return run


import transformers  # noqa: E402  (bench-only dependency)

with tempfile.TemporaryDirectory() as tmp:
    model.save_pretrained(tmp)
    hf = transformers.Qwen2ForCausalLM.from_pretrained(tmp, dtype=dtype).to(device).eval()
    hf.generation_config.eos_token_id = None

where = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} threads"
print(f"device {device} ({where}), {args.dtype}: {len(prompts)} prompts of {min(map(len, prompts))}-"
      f"{max(map(len, prompts))} tokens, G={args.G}, {args.new} new tokens, {SAMPLING}")
(t_ours, t_hf), _ = timed(ours, transformers_generate(hf))
print(f"ours (sample_groups)        {t_ours:7.2f} s  {n_tokens / t_ours:7.0f} tok/s")
print(f"transformers generate       {t_hf:7.2f} s  {n_tokens / t_hf:7.0f} tok/s")
n_nc = args.nocache_prompts * args.G * args.new
(t_nc, t_sub), _ = timed(nocache, lambda warmup=False: ours(warmup, n_prompts=args.nocache_prompts), repeats=1)
print(f"no-cache full recompute     {t_nc:7.2f} s  {n_nc / t_nc:7.0f} tok/s  "
      f"(first {args.nocache_prompts} prompt(s) x G)")
print(f"ours on that subset         {t_sub:7.2f} s  {n_nc / t_sub:7.0f} tok/s")

# compaction: rows stop at different steps (1 id in 64 stops a row: about half the tokens of the full run). Samples
# do not depend on compaction, so both runs produce the same tokens.
stop_ids = tuple(range(0, config.vocab_size, 64))
on, off = (lambda warmup=False, cb=cb: ours(warmup, compact_below=cb, stop_ids=stop_ids) for cb in (0.75, 0.0))
(t_on, t_off), out = timed(on, off, repeats=2)
n = int(out["lengths"].sum())
print(f"early stops ({n} tokens): compaction on (0.75) {t_on:.2f} s {n / t_on:.0f} tok/s, "
      f"off {t_off:.2f} s {n / t_off:.0f} tok/s")

peak = f" peak_gib={torch.cuda.max_memory_allocated() / 2**30:.1f}" if device.type == "cuda" else ""
print(f"rollout: speedup_vs_transformers={t_hf / t_ours:.2f} speedup_vs_nocache={t_nc / t_sub:.2f} "
      f"ours_tok_s={n_tokens / t_ours:.0f}{peak}")
