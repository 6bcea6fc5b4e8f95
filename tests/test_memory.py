"""The memory plan (rollout.py, as ghpo.py runs it) on the CPU, with torch.cuda's memory queries replaced by numbers:
the row batches sampled at once, the check that stops a run which cannot fit before its first step, gradients freed
after the update, an out-of-memory update in one line, and the arithmetic written in configs/qwen2.5-math-1.5b.py for
80 GB and 40 GB."""
import types
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import ghpo
from configurator import UsageError
from data.arith import level_problems
from model import Qwen2, Qwen2Config, load_tokenizer
import rollout
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
    assert rollout.sampling_rows(model, [[1] * 9], 8, 16, torch.float32, False) == 0  # a rollout: all its rows at once
    assert rollout.sampling_rows(model, [[1] * 9], 8, 16, torch.float32, False, cpu_rows=256) == 256  # an evaluation
    assert rollout.sampling_rows(model, [[1] * 9], 8, 16, torch.float32, False, 24, cpu_rows=256) == 24  # sample_rows


def test_sampling_rows_on_cuda_follow_the_free_memory(monkeypatch):
    model = tiny(50)
    per_row = 2 * 2 * 2 * 8 * 4 * (30 + 16) + 16 * 50  # keys + values, 2 layers x 2 heads x 8 dims, float32; logits
    # free: what the driver reports plus what torch's allocator holds unused; 0.9 of it is used
    fake_cuda(monkeypatch, total=10**9, allocated=5 * 10**8, free=40 * per_row, reserved=5 * 10**8 + 10 * per_row)
    assert rollout.sampling_rows(model, [[1] * 30, [2] * 7], 8, 16, torch.float32, True) == 40  # 0.9 x 50 = 45 -> 5 x 8
    fake_cuda(monkeypatch, total=10**9, allocated=5 * 10**8, free=8 * per_row)
    with pytest.raises(UsageError, match=r"out of memory for sampling: one group of 8 rows x 46 cache slots"):
        rollout.sampling_rows(model, [[1] * 30], 8, 16, torch.float32, True)


def test_memory_plan_before_the_first_evaluation_reserves_the_engine(monkeypatch, tok, capsys):
    """check_memory's plan: resident = what is allocated + AdamW's two float32 moments (8 bytes a master element,
    allocated at the first step); the KV cache row holds the longest prompt (a hinted training prompt or a
    benchmark's) + max_new_tokens; the largest group (aime_samples here) must fit beside the update's transient
    (micro_batch rows of the longest training row), or the run stops with one line. A run that fits prints the
    plan and its engine is allocated at the plan's size."""
    ghpo.dtype = "bfloat16"
    model = tiny(tok.get_vocab_size(), torch.bfloat16)
    policy = ghpo.make_policy(model)
    n = sum(p.numel() for p in model.parameters())
    problems, eval_sets = level_problems(9)[:20], {"aime24": level_problems(3)[:5], "hard": level_problems(8)[:9]}
    ghpo.max_new_tokens, ghpo.group_size, ghpo.aime_samples, ghpo.micro_batch = 100, 8, 16, 4
    train_len = max(len(ghpo.prompt_ids(tok, p, 0.75)) for p in problems)  # hint_in_answer: the hint is prompt too
    cache_len = max(train_len, *(len(ghpo.prompt_ids(tok, p)) for ps in eval_sets.values() for p in ps)) + 100
    resident = 1000 + 8 * n + int(rollout.CUDA_CONTEXT)
    kv_row = rollout.kv_bytes_per_token(model.config, torch.bfloat16) * cache_len
    transient = max(rollout.prefill_bytes(model.config, torch.bfloat16, rollout.CUDA_PLAN.prefill_tokens),
                    rollout.update_bytes(model.config, torch.bfloat16, n, 4 * (train_len + 100), True))
    need = max(transient + 16 * kv_row,
               rollout.prefill_bytes(model.config, torch.bfloat16, rollout.CUDA_PLAN.prefill_tokens)
               + 16 * rollout.row_bytes(model.config, torch.bfloat16, cache_len))  # one group of 16 rows
    fake_cuda(monkeypatch, total=resident + int(need / rollout.PLAN_FRACTION) - 100, allocated=1000)
    with pytest.raises(UsageError, match=rf"memory: one group of 16 rows x {cache_len} cache slots .* does not fit "
                                         r"beside .* resident and the update's .* \(\d+ tokens a micro-batch\) on "
                                         r".*: lower micro_batch, max_new_tokens or the group size; or shard"):
        ghpo.check_memory(model, policy, tok, problems, eval_sets)
    fake_cuda(monkeypatch, total=resident + int(need / rollout.PLAN_FRACTION) + 100, allocated=1000)
    plan = ghpo.check_memory(model, policy, tok, problems, eval_sets)
    assert (plan.rows, plan.cache_len) == (16, cache_len)
    assert (rollout.engine(model).rows, rollout.engine(model).cache_len) == (16, cache_len)  # reserved for the run
    assert rollout.sampling_rows(model, [[1] * 9], 8, 16, torch.bfloat16, True) == 16  # every call: the engine's rows
    out = capsys.readouterr().out
    assert f"memory plan for the Fake GPU" in out and f"KV cache 16 rows x {cache_len} slots" in out
    assert f"(a rollout has {ghpo.prompts_per_step * 8} rows)" in out
    # under FSDP2 the gathered sampling copy (whole weights in bfloat16) is resident beside the shards
    fake_cuda(monkeypatch, total=80 * 2**30, allocated=1000)
    sharded = rollout.check_memory(model, policy.optimizer, True, torch.bfloat16, cache_len - 100, 100, 16, 4,
                                   train_len, True, 128)
    assert sharded.resident - plan.resident == 2 * n


def test_memory_check_comes_before_the_first_evaluation(monkeypatch, tmp_path):
    """main() plans the memory (and reserves the sampling engine) before the evaluation before RL."""
    calls = []
    monkeypatch.setattr(ghpo, "check_memory", lambda *a: calls.append("check_memory"))

    def evaluate(*a, **k):
        calls.append("evaluate")
        raise KeyboardInterrupt
    monkeypatch.setattr(ghpo, "evaluate", evaluate)
    with pytest.raises(KeyboardInterrupt):
        ghpo.main(["--config", "small.py", "--threads=1", f"--out_dir={tmp_path}"])
    assert calls == ["check_memory", "evaluate"]


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


QWEN25_MATH_15B = QWEN25_15B.__class__(**{**QWEN25_15B.__dict__, "max_position_embeddings": 4096})  # its context


def longest_prompts(tok):
    """The real config's longest prompts, by the real tokenizer: a training problem with its 0.75 hint (in the user
    message, as the config has it) and each benchmark's. Only the 30 longest of each by characters are tokenized
    (the whole of the data gives the same maxima: 2,573 and OlympiadBench's 1,323, in 30 s)."""
    ghpo.configure(["--config", "qwen2.5-math-1.5b.py", "--device=cpu"])
    train, evals = ghpo.load_task()
    chars = lambda p: len(p["problem"]) + 0.75 * len(p.get("solution") or "")
    lengths = {name: max(len(ghpo.prompt_ids(tok, p)) for p in sorted(ps, key=chars)[-30:])
               for name, ps in evals.items()}
    lengths["train"] = max(len(ghpo.prompt_ids(tok, p, 0.75)) for p in sorted(train, key=chars)[-30:])
    return lengths


def test_the_plan_of_the_1_5b_config_on_80_and_40_gb(qwen_tokenizer_file):
    """docs/gpu.md's table, recomputed: Qwen2.5-Math-1.5B's 1.54B parameters as bfloat16 weights, float32 master
    weights and AdamW's two moments are 14 bytes each, 20.1 GiB. Its longest hinted training prompt has 2,573
    tokens, so a row's cache is the whole 4,096-token context (112 MiB); OlympiadBench's longest prompt, 1,323. The
    update's worst micro-batch is 2 rows of 4,096 tokens. On 80 GB the engine keeps 256 rows (AIME's 32 samples x 8
    problems, two rollouts of 128 rows) for the whole run; the update peaks at 71.5 GiB of 74.5. On 40 GB the
    config does not fit; micro_batch=1 without AIME's 32 samples leaves one group of 8 rows."""
    lengths = longest_prompts(load_tokenizer(qwen_tokenizer_file.rsplit("/", 1)[0]))
    assert (lengths["train"], lengths["olympiadbench"], max(lengths.values())) == (2573, 1323, 2573)
    with torch.device("meta"):
        n = sum(p.numel() for p in Qwen2(QWEN25_MATH_15B).parameters())
    assert round(n / 1e9, 2) == 1.54 and round(14 * n / GIB, 1) == 20.1
    cache_len = min(lengths["train"] + 2048, 4096)
    assert cache_len == 4096 and rollout.kv_bytes_per_token(QWEN25_MATH_15B, torch.bfloat16) * cache_len == 112 * 2**20
    plan = lambda card, micro, G: rollout.memory_plan(QWEN25_MATH_15B, torch.bfloat16, card * 1e9, 14 * n, cache_len,
                                                      G, micro * cache_len, n, masters=True)
    p80 = plan(80, 2, 32)
    gib = {k: round(v / GIB, 1) for k, v in p80.peaks().items()}
    assert (p80.rows, round(p80.kv / GIB, 1), gib) == (256, 28.0, {"evaluation": 49.3, "rollout": 49.3, "update": 71.5})
    assert max(p80.peaks().values()) < 80e9 - rollout.CUDA_CONTEXT
    with pytest.raises(ValueError, match=r"one group of 32 rows x 4096 cache slots .* lower micro_batch"):
        plan(40, 2, 32)
    with pytest.raises(ValueError, match="one group of 32 rows"):
        plan(40, 1, 32)
    p40 = plan(40, 1, 8)
    assert (p40.rows, round(p40.peaks()["update"] / GIB, 1)) == (8, 36.0)


def test_update_bound_against_the_h200(tok):
    """update_bytes against bench/memory.py's H200 peak (the gradients summed in bfloat16 then: 2 bytes a parameter
    instead of 4): 2 rows x 2,348 tokens peaked at 31.8 GiB; the bound says 32.6 (3% over)."""
    with torch.device("meta"):
        n = sum(p.numel() for p in Qwen2(QWEN25_15B).parameters())
    now = rollout.update_bytes(QWEN25_15B, torch.bfloat16, n, 2 * 2348, masters=True)
    then = 14 * n + now - 4 * n - QWEN25_15B.vocab_size * QWEN25_15B.hidden_size * 2 + 2 * n
    assert 31.8 <= then / GIB <= 31.8 * 1.05


class LivePeak(TorchDispatchMode):
    """The peak of the bytes that torch ops allocate while it is on, on any device (the CPU has no allocator
    statistics): an op's output storage that no input of an op had before is an allocation, freed when its storage
    goes (torch keeps one Python object per live storage)."""
    def __init__(self):
        super().__init__()
        self.live, self.old, self.now, self.peak = {}, set(), 0, 0

    def free(self, key):
        self.now -= self.live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        for t in tree_leaves((args, kwargs)):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.live:
                self.old.add(t.untyped_storage().data_ptr())
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes():
                st = t.untyped_storage()
                if st.data_ptr() not in self.live and st.data_ptr() not in self.old:
                    self.live[st.data_ptr()] = st.nbytes()
                    self.now += st.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(st, self.free, st.data_ptr())
        return out


@pytest.mark.parametrize("C,I,L", [(128, 512, 4), (256, 1536, 2)])
def test_plan_bounds_the_peaks_measured_on_the_cpu(C, I, L):
    """At a small shape, op by op on the CPU: the update's transient (a bfloat16 model with float32 masters, one
    micro-batch of 16 rows x 32 tokens), one prefill forward of 16 x 33 tokens and one slice of 33 tokens attending
    to 545 slots each peak below the plan's bound, and above half of it."""
    cfg = Qwen2Config(vocab_size=128, hidden_size=C, intermediate_size=I, num_hidden_layers=L, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=1024)
    model = Qwen2.from_config(cfg, seed=0, dtype=torch.bfloat16)
    ghpo.dtype, ghpo.micro_batch, ghpo.grad_clip = "bfloat16", 16, 1e9
    policy = ghpo.make_policy(model)
    policy.optimizer.step = lambda: None  # AdamW's moments are resident in the plan
    n = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    rows = ghpo.pack_rows([dict(prompt=list(torch.randint(4, 128, (8,), generator=g)),
                                tokens=torch.randint(4, 128, (16, 25), generator=g),
                                mask=torch.ones(16, 25, dtype=torch.bool))])
    with LivePeak() as update:
        ghpo.policy_update(policy, rows, torch.randn(16, generator=g), "cpu")
    kv = model.eval().new_kv_cache(16, 1024)
    with torch.no_grad(), LivePeak() as prefill:
        model(torch.randint(0, 128, (16, 33), generator=g), kv_cache=kv, return_hidden=True)
    with torch.no_grad(), LivePeak() as part:
        model(torch.randint(0, 128, (1, 33), generator=g), kv_cache=(kv[0][:, :1], kv[1][:, :1]),
              pos=torch.tensor([512]), span=545, return_hidden=True)
    bounds = {update: rollout.update_bytes(cfg, torch.bfloat16, n, 16 * 32, masters=True),
              prefill: rollout.prefill_bytes(cfg, torch.bfloat16, 16 * 33),
              part: rollout.prefill_bytes(cfg, torch.bfloat16, 33, 545)}
    for measured, bound in bounds.items():
        assert bound / 2 < measured.peak <= bound, (measured.peak, bound)


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
