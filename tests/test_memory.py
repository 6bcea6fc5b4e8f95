"""ghpo.py's memory plan on the CPU, with torch.cuda's memory queries replaced by numbers: the row batches sampled at
once, the check that stops a run which cannot fit before its first step, gradients freed after the update, an
out-of-memory update in one line, and the arithmetic written in configs/qwen2.5-math-1.5b.py for 80 GB and 40 GB."""
import types

import pytest
import torch

import ghpo
from configurator import UsageError
from data.arith import level_problems
from model import Qwen2, Qwen2Config
from rollout import row_bytes, rows_that_fit

pytestmark = pytest.mark.usefixtures("restore_ghpo_config")

GIB = 2**30
QWEN25_15B = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True)




def tiny(vocab, dtype=torch.float32):
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return Qwen2.from_config(cfg, seed=0, dtype=dtype)


def fake_cuda(monkeypatch, total, allocated, free=None, reserved=None):
    """torch.cuda's memory queries answering these numbers, and ghpo set to device='cuda'."""
    ghpo.device = "cuda"
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: allocated)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: allocated if reserved is None else reserved)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (total - allocated if free is None else free, total))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: types.SimpleNamespace(total_memory=total,
                                                                                             name="Fake GPU"))


def test_sampling_rows_on_the_cpu_and_as_set():
    model = tiny(50)
    assert ghpo.sampling_rows(model, [[1] * 9], 8, 16) == 0  # a rollout decodes all its rows at once
    assert ghpo.sampling_rows(model, [[1] * 9], 8, 16, cpu_rows=256) == 256  # an evaluation 256
    ghpo.sample_rows = 24
    assert ghpo.sampling_rows(model, [[1] * 9], 8, 16, cpu_rows=256) == 24


def test_sampling_rows_on_cuda_follow_the_free_memory(monkeypatch):
    model = tiny(50)
    per_row = 2 * 2 * 2 * 8 * 4 * (30 + 16) + 16 * 50  # keys + values, 2 layers x 2 heads x 8 dims, float32; logits
    # free: what the driver reports plus what torch's allocator holds unused; 0.9 of it is used
    fake_cuda(monkeypatch, total=10**9, allocated=5 * 10**8, free=40 * per_row, reserved=5 * 10**8 + 10 * per_row)
    assert ghpo.sampling_rows(model, [[1] * 30, [2] * 7], 8, 16) == 40  # 0.9 x 50 rows = 45 -> whole groups of 8
    fake_cuda(monkeypatch, total=10**9, allocated=5 * 10**8, free=8 * per_row)
    with pytest.raises(UsageError, match=r"out of memory for sampling: one group of 8 rows x 46 cache slots"):
        ghpo.sampling_rows(model, [[1] * 30], 8, 16)


def test_memory_check_before_the_first_step(monkeypatch, tok, capsys):
    """Resident = what is allocated + AdamW's two float32 moments (8 bytes a master element, allocated at the first
    step); 0.9 of the card's remainder (the rule every sampling call applies) must hold one group = G rows x the KV
    cache at the longest hinted prompt + max_new_tokens."""
    ghpo.dtype = "bfloat16"
    model = tiny(tok.get_vocab_size(), torch.bfloat16)
    policy = ghpo.make_policy(model)
    n = sum(p.numel() for p in model.parameters())
    problems = level_problems(9)[:20]
    ghpo.max_new_tokens, ghpo.group_size = 100, 8
    longest = max(len(ghpo.prompt_ids(tok, p, 0.75)) for p in problems)  # hint_in_answer: the hint is prompt too
    per_row = row_bytes(model.config, torch.bfloat16, longest + 100)
    resident = 1000 + 8 * n
    fake_cuda(monkeypatch, total=resident + int(8 * per_row / 0.9) - 10, allocated=1000)  # 7.99... groups' worth
    with pytest.raises(UsageError, match=rf"memory: .* GiB resident .* leave too little of the .* of the Fake GPU: "
                                         rf"one group of 8 rows x {longest + 100} cache slots needs .* lower "
                                         r"max_new_tokens or group_size"):
        ghpo.check_memory(model, policy, tok, problems)
    fake_cuda(monkeypatch, total=resident + int(8 * per_row / 0.9) + 10, allocated=1000)  # exactly one group
    ghpo.check_memory(model, policy, tok, problems)
    assert f": 8 rows at once (a rollout has {ghpo.prompts_per_step * 8})" in capsys.readouterr().out
    fake_cuda(monkeypatch, total=resident + int(100 * per_row / 0.9) + 10, allocated=1000)  # 100 rows: 12 groups
    ghpo.check_memory(model, policy, tok, problems)
    assert ": 96 rows at once" in capsys.readouterr().out


def test_update_frees_its_gradients_and_an_out_of_memory_update_is_one_line(monkeypatch, tok):
    model = tiny(tok.get_vocab_size(), torch.bfloat16)
    policy = ghpo.make_policy(model)
    p = level_problems(3)[0]
    completion = tok.encode(p["solution"]).ids
    rows = ghpo.pack_rows([dict(prompt=ghpo.prompt_ids(tok, p), tokens=torch.tensor([completion] * 2),
                                mask=torch.ones(2, len(completion), dtype=torch.bool))])
    _, _, updated = ghpo.policy_update(policy, rows, torch.tensor([1.0, -1.0]), "cpu")
    assert updated
    assert all(p.grad is None for p in model.parameters()) and all(m.grad is None for m in policy.master)

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(type(model), "forward", oom)
    ghpo.micro_batch = 2
    with pytest.raises(UsageError, match=r"out of memory in the update, a micro-batch of 2 rows x \d+ tokens: lower "
                                         r"micro_batch \(now 2\)"):
        ghpo.policy_update(policy, rows, torch.tensor([1.0, -1.0]), "cpu")


def test_the_arithmetic_in_the_1_5b_config():
    """configs/qwen2.5-math-1.5b.py's comment, recomputed: Qwen2.5-1.5B's 1.54B parameters held as bfloat16 weights,
    float32 master weights and AdamW's two moments are 14 bytes each, 20.1 GiB; a row of 300 prompt + 2,048 new
    tokens needs 66.5 MiB; after a 0.5 GB CUDA context, 0.9 of the rest holds 744 rows on an 80 GB card and 224 on a
    40 GB one (whole groups of 8): a rollout's 128 rows fit either card at once, an evaluation's 256 greedy rows need
    two batches on 40 GB."""
    with torch.device("meta"):
        n = sum(p.numel() for p in Qwen2(QWEN25_15B).parameters())
    assert round(n / 1e9, 2) == 1.54
    resident = 14 * n
    assert round(resident / GIB, 1) == 20.1
    per_row = row_bytes(QWEN25_15B, torch.bfloat16, 300 + 2048)
    assert round(per_row / 2**20, 1) == 66.5
    fits = {card: rows_that_fit(QWEN25_15B, torch.bfloat16, 2348, 0.9 * (card * 1e9 - resident - 0.5e9), 8)
            for card in (80, 40)}
    assert fits == {80: 744, 40: 224}


def step_gradient(model, rows, advantages, micro_batch):
    """The gradient AdamW would step with in one policy_update (the master weights' for a bfloat16 model), flat."""
    ghpo.micro_batch, ghpo.grad_clip = micro_batch, 1e9
    policy = ghpo.make_policy(model)
    seen = []
    policy.optimizer.step = lambda: seen.append(torch.cat([p.grad.flatten() for p in
                                                           policy.optimizer.param_groups[0]["params"]]))
    assert ghpo.policy_update(policy, rows, advantages, "cpu")[2]
    return seen[0]


def test_bfloat16_gradients_accumulate_in_float32(tok):
    """A bfloat16 step's master gradient against the same step in float32: 64 micro-batches of one row are no further
    off than one micro-batch of 64 rows: 4.8e-3 and 6.1e-3 (summed in bfloat16, as before, the 64 gave 1.0e-2)."""
    ghpo.dtype = "bfloat16"
    model = tiny(tok.get_vocab_size(), torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    groups = [dict(prompt=list(torch.randint(4, tok.get_vocab_size(), (6,), generator=g)),
                   tokens=torch.randint(4, tok.get_vocab_size(), (8, 12), generator=g),
                   mask=torch.ones(8, 12, dtype=torch.bool)) for _ in range(8)]
    rows, advantages = ghpo.pack_rows(groups), torch.randn(64, generator=g)
    as_fp32 = Qwen2.from_state_dict(model.config, {k: v.float() for k, v in model.state_dict().items()})
    exact = step_gradient(as_fp32, rows, advantages, 64)  # the same weights, in float32
    err = {mb: ((step_gradient(model, rows, advantages, mb) - exact).norm() / exact.norm()).item() for mb in (64, 1)}
    assert 0 < err[1] <= 1.1 * err[64], err
