"""
Peak device memory of the real config's two phases, measured against the arithmetic: one rollout of
prompts_per_step x group_size rows x max_new_tokens new tokens, and one update micro-batch (forward, fused loss,
backward, float32 master gradients, AdamW step), on a random model with Qwen2.5-1.5B's shape in the config's dtype,
with the float32 master weights and AdamW moments of a running job resident throughout. The model never stops
early (random weights, no stop ids), so every row fills max_new_tokens: the worst case.

    python bench/memory.py --device cuda                            # bench/device.sh: configs/qwen2.5-math-1.5b.py
    python bench/memory.py --device cpu --shape tiny --new 16       # the CPU smoke run (tests)
Last line: `memory: resident_gib=... rollout_peak_gib=... rollout_predicted_gib=... update_peak_gib=... ok=...`.
"""
import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import ghpo  # noqa: E402
from decode import QWEN25_15B, TINY, random_model  # noqa: E402  (bench/decode.py)
from rollout import row_bytes, sample_groups  # noqa: E402

GIB = 2**30


def allocated(device):
    return torch.cuda.memory_allocated() if device.type == "cuda" else 0


def peak(device):
    return torch.cuda.max_memory_allocated() if device.type == "cuda" else 0


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "qwen2.5-math-1.5b.py"))
    p.add_argument("--shape", default="1.5b", choices=["1.5b", "tiny"])
    p.add_argument("--new", type=int, default=0, help="new tokens (default: the config's max_new_tokens)")
    p.add_argument("--prompt-len", type=int, default=300, help="prompt tokens (a MATH problem in the chat format)")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible to torch")
    ghpo.configure(["--config", args.config, f"--device={args.device}"])  # the loop's settings, as a run has them
    dtype = ghpo.DTYPES[ghpo.dtype]
    P, G, new, micro = ghpo.prompts_per_step, ghpo.group_size, args.new or ghpo.max_new_tokens, ghpo.micro_batch
    model = random_model(QWEN25_15B if args.shape == "1.5b" else TINY, dtype, device)
    params = list(model.parameters())
    n_params = sum(t.numel() for t in params)
    print(f"{os.path.basename(args.config)}: {n_params / 1e9:.2f}B parameters in {ghpo.dtype}, {P} prompts x G={G}"
          f" x {new} new tokens, micro_batch {micro}, on {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}")

    # a running job's resident state: weights, float32 master weights (ghpo.make_policy) and AdamW's two moments,
    # which its first step allocates (here a step on zero gradients)
    policy = ghpo.make_policy(model)
    for m in policy.master or params:
        m.grad = torch.zeros_like(m)
    policy.optimizer.step()
    policy.optimizer.zero_grad(set_to_none=True)
    resident = allocated(device)

    # phase 1: one rollout
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, model.config.vocab_size, (args.prompt_len,), generator=gen).tolist()
               for _ in range(P)]
    reset_peak(device)
    t0 = time.perf_counter()
    out = sample_groups(model, prompts, G, new, temperature=1.0, top_k=50, seed=0)
    seconds = time.perf_counter() - t0
    rollout_peak = peak(device)
    predicted = resident + P * G * row_bytes(model.config, dtype, args.prompt_len + new)
    print(f"rollout: {P * G} rows x {out['tokens'].shape[1]} tokens in {seconds:.1f} s; peak {rollout_peak / GIB:.2f} "
          f"GiB, predicted (resident + rows x row_bytes) {predicted / GIB:.2f} GiB")

    # phase 2: one update of one micro-batch, micro rows of the first prompt's completions, through ghpo.py's own
    # policy_update (forward, fused loss, backward, float32 master gradients, clipping, AdamW, copy back)
    rows = ghpo.pack_rows([dict(prompt=prompts[0], tokens=out["tokens"][:micro], mask=out["mask"][:micro])])
    del out
    model.train()
    reset_peak(device)
    _, _, updated = ghpo.policy_update(policy, rows, torch.randn(micro, device=device), device)
    update_peak = peak(device)
    print(f"update micro-batch of {micro} rows x {len(rows[0].ids)} tokens: peak {update_peak / GIB:.2f} GiB")
    ok = updated and (device.type != "cuda" or rollout_peak <= 1.1 * predicted)
    print(f"memory: resident_gib={resident / GIB:.2f} rollout_peak_gib={rollout_peak / GIB:.2f} "
          f"rollout_predicted_gib={predicted / GIB:.2f} update_peak_gib={update_peak / GIB:.2f} rows={P * G} "
          f"new_tokens={new} ok={int(ok)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
