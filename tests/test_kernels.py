"""kernels/ against their full-logits references: log-probs, entropies, the policy loss, its statistics and gradients.
The chunked PyTorch paths run in this process. Every Triton kernel runs in a subprocess with a timeout (under
TRITON_INTERPRET=1 on a CPU, where a stray access can hang; compiled on a GPU), in float32 and bfloat16 inputs against
a float32 reference, at small ragged shapes and at Qwen's V=151936 with a handful of rows; on a GPU also at Qwen2.5-1.5B's
head (H=1536, 1,000 rows in 3 chunks) against float64, within 2x (gradients 3x) of plain PyTorch's error
(bench/kernels.py's accuracy check, whose CPU mode runs here too)."""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first import of triton (kernels imports it)

from kernels import fused_logprobs, policy_loss
from kernels.logprob import logprobs_reference, logprobs_triton

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QWEN_VOCAB = 151936

# loss settings: ratio 1 (the released code); clipped ratios + KL + temperature; the norms with a caller's denom
LOSS_CASES = {
    "ratio1": dict(),
    "clip_kl_temperature": dict(old_noise=0.4, ref_noise=0.5, beta=0.1, temperature=0.7),
    "sequence_denom": dict(old_noise=0.4, ref_noise=0.5, beta=0.05, eps_low=0.1, eps_high=0.3, norm="sequence",
                           denom=5.0),
    "token_denom": dict(old_noise=0.4, temperature=1.3, denom=37.0),
    "dr_grpo_denom": dict(old_noise=0.4, ref_noise=0.5, beta=0.05, norm="dr_grpo", denom=60.0),
}


def max_rel_err(actual, expected):
    """max |actual - expected| relative to max |expected| (both read as float32)."""
    expected = expected.float()
    return ((actual.float() - expected).abs().max() / expected.abs().max().clamp(min=1e-30)).item()


def head(N, H, V, dtype, seed=0):
    """hidden (N, H), weight (V, H) with logits of std ~3 (peaked, like a trained head), targets (N,)."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, H, generator=g)
    weight = torch.randn(V, H, generator=g) * (3 / H ** 0.5)
    targets = torch.randint(0, V, (N,), generator=g)
    return hidden.to(DEVICE, dtype), weight.to(DEVICE, dtype), targets.to(DEVICE)


def loss_inputs(B, T, H, V, dtype, old_noise=0.0, ref_noise=0.0, seed=0, **settings):
    """Inputs of policy_loss: a ~70% completion mask, per-sequence advantages, old/reference log-probs that differ from
    the current ones by noise (so ratios leave the clip range) or None. Returns (tensors, policy_loss settings)."""
    hidden, weight, targets = head(B * T, H, V, dtype, seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = (torch.rand(B, T, generator=g) < 0.7).float()
    mask[:, 0] = 1  # every sequence has a completion token
    advantages = torch.randn(B, generator=g)
    with torch.no_grad():
        logp, _ = logprobs_reference(hidden, weight, targets, settings.get("temperature", 1.0))
    logp = logp.cpu().view(B, T)
    old = logp + old_noise * torch.randn(B, T, generator=g) if old_noise else None
    ref = logp + ref_noise * torch.randn(B, T, generator=g) if ref_noise else None
    on = lambda x: None if x is None else x.to(DEVICE)
    tensors = (hidden.view(B, T, H), weight, targets.view(B, T), on(mask), on(advantages), on(old), on(ref))
    return tensors, settings


def loss_and_grads(tensors, settings, impl, grad_scale=1.0, **kwargs):
    """policy_loss forward + backward on fresh leaves; the reference gets float32 copies of the same values."""
    hidden, weight, *rest = tensors
    leaves = [hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()]
    h, w = (x.float() for x in leaves) if impl == "reference" else leaves
    loss, stats = policy_loss(h, w, *rest, impl=impl, **settings, **kwargs)
    (loss * grad_scale).backward()
    return loss.detach(), {k: float(v) for k, v in stats.items()}, leaves[0].grad, leaves[1].grad


def check_loss(tensors, settings, impl, loss_tol, grad_tol, **kwargs):
    """impl against the reference: loss, statistics and both gradients (in the input dtypes), grad_output != 1."""
    ref_loss, ref_stats, ref_gh, ref_gw = loss_and_grads(tensors, settings, "reference", grad_scale=2.5)
    loss, stats, gh, gw = loss_and_grads(tensors, settings, impl, grad_scale=2.5, **kwargs)
    assert gh.dtype == tensors[0].dtype and gw.dtype == tensors[1].dtype
    assert abs(loss.item() - ref_loss.item()) <= loss_tol * max(abs(ref_loss.item()), 1e-3), (loss, ref_loss)
    for k in ("kl_mean", "entropy_mean", "logp_mean"):
        assert abs(stats[k] - ref_stats[k]) <= loss_tol * max(abs(ref_stats[k]), 1.0), (k, stats[k], ref_stats[k])
    assert stats["clip_frac"] == pytest.approx(ref_stats["clip_frac"], abs=1e-6)
    assert max_rel_err(gh, ref_gh) <= grad_tol, max_rel_err(gh, ref_gh)
    assert max_rel_err(gw, ref_gw) <= grad_tol, max_rel_err(gw, ref_gw)
    return ref_stats

# -----------------------------------------------------------------------------
# the chunked PyTorch paths, in process


@pytest.mark.parametrize("N,H,V,temperature", [(37, 40, 1000, 1.0), (37, 40, 1000, 0.6), (5, 32, QWEN_VOCAB, 1.3)])
def test_chunked_logprobs_match_reference(N, H, V, temperature):
    hidden, weight, targets = head(N, H, V, torch.float32)
    ref_logp, ref_entropy = logprobs_reference(hidden, weight, targets, temperature)
    logp, entropy = fused_logprobs(hidden, weight, targets, temperature, return_entropy=True, impl="torch",
                                   chunk_size=8)  # ragged chunks
    tol = 1e-5 if V < 10_000 else 2e-4  # the reference's own float32 log_softmax error grows with V
    assert logp.dtype == entropy.dtype == torch.float32
    torch.testing.assert_close(logp, ref_logp, rtol=0, atol=tol)
    torch.testing.assert_close(entropy, ref_entropy, rtol=0, atol=tol)
    assert fused_logprobs(hidden, weight, targets, temperature, impl="torch").shape == (N,)  # logp alone


@pytest.mark.parametrize("case", LOSS_CASES)
def test_chunked_policy_loss_matches_reference_float32(case):
    tensors, settings = loss_inputs(3, 13, 40, 1000, torch.float32, **LOSS_CASES[case])
    stats = check_loss(tensors, settings, "torch", loss_tol=1e-5, grad_tol=1e-5, chunk_size=7)
    if LOSS_CASES[case].get("old_noise"):
        assert 0 < stats["clip_frac"] < 1  # the clip is active for some tokens, not all
    assert (stats["kl_mean"] > 0) == ("ref_noise" in LOSS_CASES[case])


def test_chunked_policy_loss_bfloat16_and_qwen_vocab():
    tensors, settings = loss_inputs(2, 4, 32, QWEN_VOCAB, torch.float32, **LOSS_CASES["clip_kl_temperature"])
    check_loss(tensors, settings, "torch", loss_tol=1e-4, grad_tol=1e-4)
    tensors, settings = loss_inputs(3, 13, 40, 1000, torch.bfloat16, **LOSS_CASES["sequence_denom"])
    check_loss(tensors, settings, "torch", loss_tol=1e-3, grad_tol=1e-2, chunk_size=7)


@pytest.mark.parametrize("impl", ["torch", "reference"])
def test_dr_grpo_divides_by_rows_times_budget(impl):
    """TRL's dr_grpo: sum over completion tokens of l / (rows x max completion length), written out here."""
    tensors, settings = loss_inputs(3, 13, 40, 1000, torch.float32, old_noise=0.4)
    hidden, weight, targets, mask, adv, old, _ = tensors
    logp = torch.log_softmax(hidden.float() @ weight.float().T, -1).gather(-1, targets[..., None])[..., 0]  # (B, T)
    ratio = torch.exp(logp - old)
    l = -torch.minimum(ratio * adv[:, None], ratio.clamp(0.8, 1.2) * adv[:, None])  # (B, T)
    for denom, want in ((None, (l * mask).sum() / (3 * 13)), (3 * 20, (l * mask).sum() / 60)):
        loss, _ = policy_loss(hidden, weight, targets, mask, adv, old, norm="dr_grpo", denom=denom, impl=impl)
        assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    token, _ = policy_loss(hidden, weight, targets, mask, adv, old, norm="token", impl=impl)
    assert token.item() * mask.sum().item() == pytest.approx(loss.item() * 60, rel=1e-5)  # both: sum(l * mask)


def test_masked_tokens_carry_no_loss_or_gradient():
    tensors, settings = loss_inputs(2, 9, 24, 300, torch.float32, **LOSS_CASES["clip_kl_temperature"])
    hidden, weight, targets, mask, adv, old, ref = tensors
    loss, _, gh, _ = loss_and_grads(tensors, settings, "torch")
    assert (gh[mask == 0] == 0).all() and (gh[mask == 1].abs().sum(-1) > 0).all()
    garbage = hidden.clone()
    garbage[mask == 0] = 1e4  # what sits under masked positions must not matter
    loss2, *_ = loss_and_grads((garbage, weight, targets, mask, adv, old, ref), settings, "torch")
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)
    nothing = torch.zeros_like(mask)  # a micro-batch without completion tokens: zero loss, zero gradients, no NaN
    loss0, stats0, gh0, gw0 = loss_and_grads((hidden, weight, targets, nothing, adv, old, ref), settings, "torch")
    assert loss0.item() == 0 and (gh0 == 0).all() and (gw0 == 0).all() and stats0["entropy_mean"] == 0


def test_tied_embedding_gradients_accumulate():
    # the lm_head weight is also the input embedding: both uses must reach its .grad
    _, weight, targets = head(12, 16, 50, torch.float32)
    idx, mask = targets.view(2, 6).roll(1, 1), torch.ones(2, 6, device=DEVICE)
    adv = torch.tensor([1.0, -0.5], device=DEVICE)
    grads = []
    for impl in ("reference", "torch"):
        w = weight.clone().requires_grad_()
        hidden = torch.tanh(w[idx])  # (2, 6, 16) stand-in for the transformer
        loss, _ = policy_loss(hidden, w, targets.view(2, 6), mask, adv, impl=impl)
        loss.backward()
        grads.append(w.grad)
    assert max_rel_err(grads[1], grads[0]) <= 1e-5


def test_weight_without_grad_and_single_backward():
    tensors, settings = loss_inputs(2, 5, 16, 64, torch.float32)
    hidden, weight, *rest = tensors
    h = hidden.clone().requires_grad_()
    loss, _ = policy_loss(h, weight, *rest, impl="torch")  # frozen head: only grad_hidden is computed
    loss.backward(retain_graph=True)
    assert weight.grad is None and h.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="single backward"):
        loss.backward()


def test_bad_inputs_name_the_problem():
    tensors, settings = loss_inputs(2, 5, 16, 64, torch.float32)
    hidden, weight, targets, mask, adv, old, ref = tensors
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(hidden, weight, targets, mask, adv, beta=0.1)
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(hidden, weight, targets, mask, torch.zeros(3))
    with pytest.raises(ValueError, match="norm"):
        policy_loss(hidden, weight, targets, mask, adv, norm="batch")
    with pytest.raises(ValueError, match="targets"):
        policy_loss(hidden, weight, targets + 64, mask, adv)
    with pytest.raises(ValueError, match="impl"):
        fused_logprobs(hidden[0], weight, targets[0], impl="cuda")
    with pytest.raises(ValueError, match="weight"):
        fused_logprobs(hidden[0], weight[:, :8], targets[0])

# -----------------------------------------------------------------------------
# the Triton kernels, each run in a subprocess with a timeout (run_* below)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("check", ["logprob", "loss", "update", "realistic"])
def test_triton_kernels(check, dtype):
    if check == "realistic" and DEVICE == "cpu":
        pytest.skip("H=1536, V=151936 is a GPU's shape; test_bench_kernels_cpu_mode runs the same check at small ones")
    env = dict(os.environ, PYTHONPATH=ROOT)
    if DEVICE == "cpu":
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), check, dtype], env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"ok {check} {dtype}" in proc.stdout


def run_logprob(dtype):
    # ragged rows, hidden and vocab tiles, several vocab splits; then Qwen's vocab with the default tiles
    hidden, weight, targets = head(37, 40, 1000, dtype)
    ref_logp, ref_entropy = logprobs_reference(hidden, weight, targets, 0.7)
    logp, entropy = logprobs_triton(hidden, weight, targets, 0.7, return_entropy=True, v_per_split=384, block_n=16,
                                    block_v=128, block_h=16)
    torch.testing.assert_close(logp, ref_logp, rtol=0, atol=2e-5)
    torch.testing.assert_close(entropy, ref_entropy, rtol=0, atol=2e-5)
    hidden, weight, targets = head(5, 32, QWEN_VOCAB, dtype)
    ref_logp, ref_entropy = logprobs_reference(hidden, weight, targets, 1.3)
    logp, entropy = fused_logprobs(hidden, weight, targets, 1.3, return_entropy=True, impl="triton")
    torch.testing.assert_close(logp, ref_logp, rtol=0, atol=2e-4)
    torch.testing.assert_close(entropy, ref_entropy, rtol=0, atol=2e-4)


def run_loss(dtype):
    # inputs of either dtype hold the same values as the float32 reference's; bf16 gradients round to 8 bits
    grad_tol = 1e-5 if dtype == torch.float32 else 1.5e-2
    for case in LOSS_CASES.values():
        tensors, settings = loss_inputs(3, 13, 40, 1000, dtype, **case)
        check_loss(tensors, settings, "triton", loss_tol=1e-5, grad_tol=grad_tol, chunk_size=16)  # ragged chunks
    tensors, settings = loss_inputs(2, 4, 32, QWEN_VOCAB, dtype, **LOSS_CASES["clip_kl_temperature"])
    check_loss(tensors, settings, "triton", loss_tol=1e-4, grad_tol=max(grad_tol, 1e-4))


def run_update(dtype):
    # ghpo.policy_update with kernel_impl="triton" against "torch" from the same weights, a tied and an untied head:
    # 5 rows in micro-batches of 2 (a ragged last one); a bfloat16 model's float32 master gradients (accumulated
    # in float32), the model's weights its stepped masters rounded, the loss statistics
    import ghpo
    from model import Qwen2, Qwen2Config
    ghpo.dtype, ghpo.micro_batch, ghpo.lr, ghpo.grad_clip = str(dtype).split(".")[1], 2, 1e-3, 1e9
    g = torch.Generator().manual_seed(0)
    rows = ghpo.pack_rows([dict(prompt=torch.randint(0, 300, (n,), generator=g).tolist(),
                                tokens=torch.randint(0, 300, (5, 9), generator=g),
                                mask=torch.arange(9) < torch.tensor([9, 4, 7, 9, 2])[:, None]) for n in (3,)])
    advantages = torch.randn(5, generator=g)
    for tied in (True, False):
        config = Qwen2Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
        result = {}
        for impl in ("torch", "triton"):
            ghpo.kernel_impl = impl
            model = Qwen2.from_config(config, seed=1, dtype=dtype)
            policy = ghpo.make_policy(model)
            step, grads = policy.optimizer.step, []
            policy.optimizer.step = lambda: grads.append([p.grad.clone() for p in
                                                          policy.optimizer.param_groups[0]["params"]]) or step()
            _, stats, updated = ghpo.policy_update(policy, rows, advantages, "cpu")
            assert updated and len(stats) == 3 and all(m.grad is None for m in policy.master or ())
            for p, m in zip(model.parameters(), policy.master or ()):  # the model holds its stepped masters
                assert torch.equal(p, m.to(dtype))
            result[impl] = grads[0], stats
        tol = 1e-5 if dtype == torch.float32 else 2e-2  # bfloat16: the hidden states' gradient rounds to 8 bits
        for a, b in zip(result["torch"][0], result["triton"][0]):
            assert a.dtype == torch.float32 and max_rel_err(b, a) <= tol, (tied, max_rel_err(b, a))
        for a, b in zip(result["torch"][1], result["triton"][1]):
            assert abs(a["loss"] - b["loss"]) <= 1e-5 + 1e-3 * abs(a["loss"]), (a, b)
        err = max(max_rel_err(b, a) for a, b in zip(result["torch"][0], result["triton"][0]))
        print(f"tied={tied}: master gradients within {err:.1e} of the torch path's")


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_kernels", os.path.join(ROOT, "bench", "kernels.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_realistic(dtype):
    # compiled kernels at the launchers' own tiles, Qwen2.5-1.5B's head, ~1,000 rows in 3 chunks, against float64
    bench = load_bench()
    for name, (ours, plain, bound) in bench.accuracy(dtype, bench.SHAPES[DEVICE], DEVICE, 1.0).items():
        assert ours <= bound, (name, ours, plain, bound)
        print(f"{name}: error {ours:.3e}, plain PyTorch's {plain:.3e}")


def run_bench(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bench", "kernels.py"), "--device", "cpu", *args],
                          capture_output=True, text=True, timeout=240, env=dict(os.environ, PYTHONPATH=ROOT))


def test_bench_kernels_cpu_mode():
    """bench/kernels.py (figure (a) of bench/device.sh) at small shapes through the interpreter: every check within
    its bound, the cost lines, and the figure line with a ratio for each check and each cost."""
    proc = run_bench("--repeats", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("kernels: "), last
    figures = dict(kv.split("=") for kv in last.split()[1:])
    for dtype in ("bf16", "fp32"):
        for check in ("logp", "entropy", "loss", "grad_hidden", "grad_weight"):
            assert float(figures[f"{dtype}_{check}"]) <= (3 if check.startswith("grad") else 2), (dtype, check)
        assert float(figures[f"time_{dtype}_48"]) > 0 and float(figures[f"time_{dtype}_96"]) > 0
    assert proc.stdout.count(" ok\n") == 10 and "FAIL" not in proc.stdout


def test_bench_kernels_fails_when_a_bound_fails():
    proc = run_bench("--repeats", "1", "--rows", "16", "--chunk-size", "8", "--tokens", "16", "--bound-scale", "0")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "error bounds failed: bf16 logp" in proc.stdout and proc.stdout.count("FAIL") == 10


if __name__ == "__main__":  # python tests/test_kernels.py {logprob,loss,realistic} {float32,bfloat16}
    check, dtype = sys.argv[1], sys.argv[2]
    dict(logprob=run_logprob, loss=run_loss, update=run_update, realistic=run_realistic)[check](getattr(torch, dtype))
    print(f"ok {check} {dtype}")
