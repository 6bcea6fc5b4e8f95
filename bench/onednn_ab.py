"""
Paired A/B of the oneDNN detour inside one process: model.ONEDNN toggled between consecutive runs of the same
work, so a slow spell of the shared CPU hits both sides alike. step: bench/step.py's ghpo step (8 prompts x G=8, 64
new tokens, one GRPO update; 1 thread); rollout: bench/rollout.py's sample_groups (16 prompts, G=8, 128 tokens).
Prints per-side medians and the median of the paired ratios off/on (> 1: the detour is faster).

    python bench/onednn_ab.py step 6         # 6 pairs; `rollout 4` for the sampler
    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 python bench/onednn_ab.py step 6
"""
import os, statistics, sys, tempfile, time, types
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT); sys.path.append(os.path.join(ROOT, "bench"))
import torch
torch.set_num_threads(1)
import model as M
what, pairs = sys.argv[1], int(sys.argv[2])
assert M.ONEDNN, "oneDNN detour unavailable"
res = {True: [], False: []}
ratios = []

def ab(run, warm=1):
    for _ in range(warm):
        for flag in (True, False):
            M.ONEDNN = flag; run()
    for p in range(pairs):
        t = {}
        for flag in ((True, False) if p % 2 == 0 else (False, True)):
            M.ONEDNN = flag
            t0 = time.perf_counter(); run(); t[flag] = time.perf_counter() - t0
            res[flag].append(t[flag])
        ratios.append(t[False] / t[True])

if what == "step":
    import step as bs
    def loop(args, step, t):
        s = iter(range(10 ** 6))
        ab(lambda: step(next(s)))
    bs.loop = loop
    with tempfile.TemporaryDirectory() as tmp:
        f = os.path.join(tmp, "model"); bs.build_folder(f)
        bs.run_ghpo(types.SimpleNamespace(folder=f, warmup=0, steps=0, threads=1))
else:
    from model import Qwen2, Qwen2Config
    from rollout import sample_groups
    cfg = Qwen2Config(vocab_size=8192, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048, rope_theta=10000.0,
                      tie_word_embeddings=True)
    model = Qwen2.from_config(cfg, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 8192, (int(n),), generator=gen).tolist() for n in torch.randint(20, 61, (16,), generator=gen)]
    ab(lambda: sample_groups(model, prompts, 8, 128, temperature=1.0, top_k=50, top_p=1.0, seed=1))
isa = "avx2" if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2" else "native"
print(f"ab {what} {isa}: onednn_s={statistics.median(res[True]):.3f} default_s={statistics.median(res[False]):.3f} "
      f"paired_ratio_default_over_onednn median={statistics.median(ratios):.3f} "
      f"range={min(ratios):.3f}-{max(ratios):.3f} pairs={pairs} cpu_capability={torch.backends.cpu.get_cpu_capability()}")
