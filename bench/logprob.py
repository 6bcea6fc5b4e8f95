"""
The training path of the policy loss, forward + backward, fused (kernels/loss.py, impl="torch": chunked, the CPU path)
against the reference (full logits, log_softmax, gather, autograd), float32 on the CPU, at Qwen2.5-0.5B's head by
default: N=8192 completion tokens, H=896, V=151936. Each variant runs in a process of its own. Extra memory is the peak
resident set during forward + backward minus the resident set just before the call (inputs already allocated;
grad_weight counts for both). The reference needs ~15-20 GB at the default shape: use --tokens for a quick run.
Last line: `logprob: memory_ratio=<fused/reference extra memory> time_ratio=<fused/reference time>`.
On CUDA (--device cuda) the fused variant is the Triton path (impl="auto"), extra memory is the peak allocated by
torch during the call minus what was allocated before it, and each variant's call is timed after one warm-up call
(Triton compiles its kernels on the first).

    python bench/logprob.py                 # the full shape
    python bench/logprob.py --tokens 1024   # quick
    python bench/logprob.py --device cuda --dtype bfloat16   # bench/device.sh
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kernels.loss import policy_loss


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_variant(args):
    """Build the inputs, run one forward + backward of one variant, print a JSON line with its seconds and bytes."""
    torch.manual_seed(0)
    B, T = args.seqs, args.tokens // args.seqs
    dev, dtype, cuda = torch.device(args.device), getattr(torch, args.dtype), args.device == "cuda"
    hidden = torch.randn(B, T, args.hidden).to(dev, dtype).requires_grad_()  # (B, T, H)
    weight = (torch.randn(args.vocab, args.hidden) * 0.02).to(dev, dtype).requires_grad_()  # (V, H) lm_head
    targets = torch.randint(0, args.vocab, (B, T)).to(dev)
    mask = torch.ones(B, T, device=dev)  # every token a completion token: the fused path skips nothing
    advantages = torch.randn(B).to(dev)
    old_logp = (-12.0 + 0.1 * torch.randn(B, T)).to(dev)  # ratios near 1, some clipped
    ref_logp = (-12.0 + 0.1 * torch.randn(B, T)).to(dev)
    impl = "reference" if args.variant == "reference" else "torch" if not cuda else "auto"

    def call():
        hidden.grad = weight.grad = None
        loss, _ = policy_loss(hidden, weight, targets, mask, advantages, old_logp, ref_logp, beta=0.04, impl=impl,
                              chunk_size=args.chunk_size)
        loss.backward()
        return loss

    if cuda:
        call()  # warm-up: Triton compiles here
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else rss_bytes()
    t0 = time.perf_counter()
    loss = call()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if cuda else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(json.dumps(dict(variant=args.variant, seconds=seconds, extra_bytes=peak - before, loss=loss.item(),
                          grad_weight_norm=weight.grad.float().norm().item())))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=8192, help="N, completion tokens (a multiple of --seqs)")
    p.add_argument("--seqs", type=int, default=16, help="sequences the tokens are split into")
    p.add_argument("--hidden", type=int, default=896)
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--chunk-size", type=int, default=None, help="rows per chunk of the fused path (default: auto)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each variant; the fastest counts")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="hidden states and weight")
    p.add_argument("--variant", choices=("fused", "reference"), help=argparse.SUPPRESS)  # set for the child process
    args = p.parse_args()
    if args.tokens % args.seqs:
        p.error(f"--tokens {args.tokens} must be a multiple of --seqs {args.seqs}")
    if args.variant:
        return run_variant(args)

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible to torch")
    flops = 6 * args.tokens * args.hidden * args.vocab  # forward logits + the two gradient matmuls
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"policy loss fwd+bwd, {args.dtype} on {where}, N={args.tokens} H={args.hidden} V={args.vocab}")
    results = {"fused": [], "reference": []}
    for _ in range(args.repeats):  # alternate the variants so a neighbour's load on this shared CPU hits both
        for variant in results:
            cmd = [sys.executable, os.path.abspath(__file__), "--variant", variant, "--tokens", str(args.tokens),
                   "--seqs", str(args.seqs), "--hidden", str(args.hidden), "--vocab", str(args.vocab),
                   "--device", args.device, "--dtype", args.dtype]
            if args.chunk_size:
                cmd += ["--chunk-size", str(args.chunk_size)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{variant} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results[variant].append(r)
            print(f"{variant:>9}: {r['seconds']:7.2f} s  {flops / r['seconds'] / 1e9:6.1f} GFLOP/s  "
                  f"extra memory {r['extra_bytes'] / 2**20:8.1f} MiB  loss {r['loss']:.6f}  "
                  f"|grad_weight| {r['grad_weight_norm']:.6f}", flush=True)
    # the fastest run of each (noise only ever adds time); the largest extra memory of each
    best = {v: dict(seconds=min(r["seconds"] for r in rs), extra_bytes=max(r["extra_bytes"] for r in rs))
            for v, rs in results.items()}
    f, r = results["fused"][0], results["reference"][0]
    tol = 1e-4 if args.dtype == "float32" else 2e-2  # bfloat16: the fused gradient matmuls round their operands
    for key in ("loss", "grad_weight_norm"):  # the two variants computed the same thing
        if abs(f[key] - r[key]) > tol * max(abs(r[key]), 1e-6):
            sys.exit(f"fused and reference disagree on {key}: {f[key]} vs {r[key]}")
    fused, ref = best["fused"], best["reference"]
    print(f"logprob: memory_ratio={fused['extra_bytes'] / ref['extra_bytes']:.4f} "
          f"time_ratio={fused['seconds'] / ref['seconds']:.4f}")


if __name__ == "__main__":
    main()
