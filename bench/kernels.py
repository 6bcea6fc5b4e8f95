"""
The Triton kernels (kernels/) on CUDA against a float64 reference, at Qwen2.5-1.5B's head (H=1536, V=151,936),
bfloat16 and float32 inputs: figure (a) of bench/device.sh.

Accuracy, FlashAttention's and Liger-Kernel's test pattern: the inputs are rounded to the dtype once; the float64
reference, plain PyTorch in the dtype (every op in bfloat16 or float32: kernels' references with upcast=False) and
ours (fused_logprobs and policy_loss, impl="triton") all read those values. Ours passes when its largest error against
float64 is within 2x (forward: log-prob, entropy, loss) or 3x (backward: grad hidden, grad weight) of plain PyTorch's
largest error plus one float32 ulp of the reference's largest magnitude (below that, errors are rounding noise: a
scalar loss can land on the float64 value by luck).
~1,000 rows (--rows) over >= 3 chunks (--chunk-size), with clipped ratios and a KL term (old and reference log-probs).

Cost: time and extra memory (peak allocated during the call minus allocated before it) of policy_loss forward +
backward, fused (impl="auto": Triton) against the PyTorch reference (impl="reference": full float32 logits, autograd),
at the accuracy rows and at an 8192-token micro-batch (--tokens), each the median of --repeats calls after a warm-up
call (Triton compiles there). Memory ratios need CUDA's allocator: on the CPU only times are printed.

Last line: `kernels: <dtype>_<check>=<ours/torch error> ... time_<dtype>_<rows>=<fused/reference> memory_... `;
exit 1 when an error bound fails.

    python bench/kernels.py --device cuda    # bench/device.sh (not yet run on a GPU: about a minute by estimate)
    python bench/kernels.py --device cpu     # small shapes through TRITON_INTERPRET=1 (tests/test_kernels.py)
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# kernels (and with it triton) is imported inside the functions: --device cpu sets TRITON_INTERPRET=1 first

SHAPES = {  # --device -> H, V, accuracy rows, chunk rows, cost tokens
    "cuda": dict(hidden=1536, vocab=151936, rows=1000, chunk_size=400, tokens=8192),
    "cpu": dict(hidden=64, vocab=3000, rows=48, chunk_size=16, tokens=96),
}
FACTORS = {"logp": 2, "entropy": 2, "loss": 2, "grad_hidden": 3, "grad_weight": 3}  # ours / torch error bounds
SETTINGS = dict(eps_low=0.2, eps_high=0.28, beta=0.04, temperature=0.7)  # clip-higher, a KL term, T != 1
SHORT = {torch.bfloat16: "bf16", torch.float32: "fp32"}


def inputs(rows, H, V, dtype, device, seed=0):
    """A head with logits of std ~3 (peaked, like a trained one) and the advantages of 8 sequences."""
    g = torch.Generator(device).manual_seed(seed)
    hidden = torch.randn(rows, H, generator=g, device=device).to(dtype)  # (N, H)
    weight = (torch.randn(V, H, generator=g, device=device) * (3 / H ** 0.5)).to(dtype)  # (V, H)
    targets = torch.randint(0, V, (rows,), generator=g, device=device)  # (N,)
    B = 8 if rows % 8 == 0 else 1
    advantages = torch.randn(B, generator=g, device=device)  # (B,)
    return hidden, weight, targets, advantages, g


def policy_loss_inputs(hidden, weight, targets, advantages, g):
    """policy_loss's arguments: (B, T) views, old / reference log-probs near the current ones (some ratios leave the
    clip range), every token a completion token."""
    from kernels.logprob import logprobs_reference
    B = advantages.shape[0]
    N = hidden.shape[0]
    T = N // B
    with torch.no_grad():
        logp, _ = logprobs_reference(hidden, weight, targets, SETTINGS["temperature"])
    noise = lambda: 0.3 * torch.randn(N, generator=g, device=hidden.device)
    old, ref = (logp + noise()).view(B, T), (logp + noise()).view(B, T)
    mask = torch.ones(B, T, device=hidden.device)  # both paths compute every row
    return hidden.view(B, T, -1), weight, targets.view(B, T), mask, advantages, old, ref


def loss_and_grads(args, impl, dtype=None, chunk_size=None):
    """policy_loss forward + backward on fresh leaves (in `dtype` if given) -> loss, grad hidden, grad weight."""
    from kernels.loss import policy_loss, policy_loss_reference
    hidden, weight, *rest = args
    h = hidden.detach().to(dtype or hidden.dtype).requires_grad_()
    w = weight.detach().to(dtype or weight.dtype).requires_grad_()
    if impl == "plain":  # PyTorch in the inputs' own dtype (float64 inputs: the reference)
        loss, _ = policy_loss_reference(h, w, *rest, **SETTINGS, upcast=False)
    else:
        loss, _ = policy_loss(h, w, *rest, **SETTINGS, impl=impl, chunk_size=chunk_size)
    loss.backward()
    return dict(loss=loss.detach(), grad_hidden=h.grad, grad_weight=w.grad)


def accuracy(dtype, shape, device, bound_scale):
    """{check: (ours error, torch error, bound)} against float64, for fused_logprobs and policy_loss."""
    from kernels.logprob import fused_logprobs, logprobs_reference
    hidden, weight, targets, advantages, g = inputs(shape["rows"], shape["hidden"], shape["vocab"], dtype, device)
    T = SETTINGS["temperature"]
    out = {}
    with torch.no_grad():
        high = logprobs_reference(hidden.double(), weight.double(), targets, T)  # (N,) x 2
        plain = logprobs_reference(hidden, weight, targets, T, upcast=False)
        ours = fused_logprobs(hidden, weight, targets, T, return_entropy=True, impl="triton")
    for name, h, p, o in zip(("logp", "entropy"), high, plain, ours):
        out[name] = errors(o, p, h, FACTORS[name] * bound_scale)
    del high, plain, ours
    args = policy_loss_inputs(hidden, weight, targets, advantages, g)
    high = loss_and_grads(args, "plain", torch.float64)
    plain = loss_and_grads(args, "plain")
    ours = loss_and_grads(args, "triton", chunk_size=shape["chunk_size"])
    for name in ("loss", "grad_hidden", "grad_weight"):
        out[name] = errors(ours[name], plain[name], high[name], FACTORS[name] * bound_scale)
    return out


def errors(ours, plain, high, factor):
    """Largest |ours - high| and |plain - high| (read as float64) and the bound on the first: factor x the second plus
    one float32 ulp of the reference's largest magnitude."""
    high = high.double()
    ours_err = (ours.double() - high).abs().max().item()
    plain_err = (plain.double() - high).abs().max().item()
    ulp = torch.finfo(torch.float32).eps * high.abs().max().item()
    return ours_err, plain_err, factor * (plain_err + ulp)


def cost(dtype, rows, H, V, device, repeats):
    """Median seconds and extra bytes (CUDA) of policy_loss forward + backward, fused and reference."""
    hidden, weight, targets, advantages, g = inputs(rows, H, V, dtype, device, seed=1)
    args = policy_loss_inputs(hidden, weight, targets, advantages, g)
    del hidden, weight, targets, advantages
    from kernels.loss import policy_loss
    out = {}
    for impl in ("auto" if device == "cuda" else "triton", "reference"):
        h, w = (x.detach().requires_grad_() for x in args[:2])

        def call():
            h.grad = w.grad = None
            loss, _ = policy_loss(h, w, *args[2:], **SETTINGS, impl=impl)
            loss.backward()

        call()  # warm-up: Triton compiles its kernels here
        seconds, extra = [], []
        for _ in range(repeats):
            h.grad = w.grad = None
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            call()
            if device == "cuda":
                torch.cuda.synchronize()
                extra.append(torch.cuda.max_memory_allocated() - before)
            seconds.append(time.perf_counter() - t0)
        out["fused" if impl != "reference" else "reference"] = (statistics.median(seconds),
                                                                 max(extra) if extra else None)
        del h, w
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--rows", type=int, help="accuracy rows (default: ~1,000 on CUDA)")
    p.add_argument("--chunk-size", type=int, help="rows per chunk of the fused loss in the accuracy check")
    p.add_argument("--tokens", type=int, help="the larger micro-batch of the cost check (default: 8192 on CUDA)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per variant (the median counts)")
    p.add_argument("--bound-scale", type=float, default=1.0,
                   help="multiplies every error bound (0 makes them all fail: the test of the failure path)")
    args = p.parse_args()
    shape = dict(SHAPES[args.device])
    shape.update({k: v for k, v in (("rows", args.rows), ("chunk_size", args.chunk_size), ("tokens", args.tokens))
                  if v is not None})
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible to torch")
    if args.device == "cpu":  # before triton is imported (kernels imports it): interpreted on the CPU, compiled on CUDA
        os.environ["TRITON_INTERPRET"] = "1"
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    import kernels  # noqa: F401  (triton is imported here, after the switch)
    chunks = -(-shape["rows"] // shape["chunk_size"])
    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU, Triton interpreter"
    print(f"kernels vs float64 on {where}: H={shape['hidden']} V={shape['vocab']}, {shape['rows']} rows in {chunks} "
          f"chunks of {shape['chunk_size']}; cost at {shape['rows']} and {shape['tokens']} tokens", flush=True)
    t_start = time.perf_counter()
    figures, failed = [], []
    for dtype in (torch.bfloat16, torch.float32):
        for name, (ours, plain, bound) in accuracy(dtype, shape, args.device, args.bound_scale).items():
            ok = ours <= bound
            print(f"{SHORT[dtype]} {name:<11} error ours {ours:.3e}  torch {plain:.3e}  ratio "
                  f"{ours / max(plain, 1e-300):6.3f}  bound {bound:.3e}  {'ok' if ok else 'FAIL'}", flush=True)
            figures.append(f"{SHORT[dtype]}_{name}={ours / max(plain, 1e-300):.3f}")
            if not ok:
                failed.append(f"{SHORT[dtype]} {name}")
    for dtype in (torch.bfloat16, torch.float32):
        for rows in (shape["rows"], shape["tokens"]):
            c = cost(dtype, rows, shape["hidden"], shape["vocab"], args.device, args.repeats)
            (fs, fb), (rs, rb) = c["fused"], c["reference"]
            mem = "" if fb is None else f"  extra memory fused {fb / 2**20:8.1f} MiB  reference {rb / 2**20:8.1f} MiB"
            print(f"{SHORT[dtype]} policy_loss fwd+bwd N={rows}: fused {fs * 1e3:8.2f} ms  reference "
                  f"{rs * 1e3:8.2f} ms{mem}", flush=True)
            figures.append(f"time_{SHORT[dtype]}_{rows}={fs / rs:.3f}")
            if fb is not None:
                figures.append(f"memory_{SHORT[dtype]}_{rows}={fb / rb:.3f}")
    print(f"({time.perf_counter() - t_start:.1f} s)")
    if failed:
        print(f"error bounds failed: {', '.join(failed)}")
    print("kernels: " + " ".join(figures))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
