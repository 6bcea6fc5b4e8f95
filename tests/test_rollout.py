"""rollout.sample_groups: greedy parity with transformers' generate, log-probs against a full forward, mixed-length
batches, stop and length semantics, reproducibility, the CUDA decode plan's logic run on the CPU, no whole-cache
copies, batches of rows, the memory arithmetic, and bad input."""
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from model import Qwen2, Qwen2Config
import rollout
from rollout import CPU_PLAN, CUDA_PLAN, kv_bytes_per_token, row_bytes, rows_that_fit, sample_groups

transformers = pytest.importorskip("transformers")  # test-only dependency (requirements-dev.txt)

VOCAB, CONTEXT = 97, 48


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: a second thread only adds synchronisation, which costs seconds per test when other
    processes share the CPU. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """transformers' Qwen2ForCausalLM with random weights (std 0.1, biases too) and model.Qwen2 loaded from it."""
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                                   max_position_embeddings=CONTEXT, rope_theta=10000.0)
    hf = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.1)
    path = tmp_path_factory.mktemp("ckpt")
    hf.save_pretrained(path)
    return hf, Qwen2.from_pretrained(path).eval()


def random_prompts(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lengths]


def full_forward_logprobs(model, prompt, completion):
    """log p(completion[t] | prompt, completion[:t]) from one forward over prompt + completion, no cache."""
    seq = torch.tensor([prompt + completion])  # (1, L + n)
    with torch.no_grad():
        logp = F.log_softmax(model(seq)[0].float(), -1)  # (L + n, V)
    return logp[len(prompt) - 1:-1].gather(1, torch.tensor(completion)[:, None])[:, 0]  # (n,)


def test_greedy_equals_transformers_generate(pair):
    hf, ours = pair
    prompts = random_prompts([5, 13, 2])
    out = sample_groups(ours, prompts, G=2, max_new_tokens=20, temperature=0)
    assert out["tokens"].shape == (6, 20) and out["mask"].all()
    assert out["prompt_index"].tolist() == [0, 0, 1, 1, 2, 2]
    for i, p in enumerate(prompts):
        with torch.no_grad():
            ref = hf.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                              max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)[0, len(p):]
        assert out["tokens"][2 * i].tolist() == ref.tolist()
        assert out["tokens"][2 * i + 1].tolist() == ref.tolist()
    assert len(set(map(tuple, out["tokens"].tolist()))) > 1  # the prompts do not all give one degenerate output


def test_mixed_length_batch_equals_each_prompt_alone(pair):
    _, ours = pair
    prompts = random_prompts([3, 17, 9, 1, 30], seed=1)
    batch = sample_groups(ours, prompts, G=3, max_new_tokens=12, temperature=0)
    for i, p in enumerate(prompts):
        alone = sample_groups(ours, [p], G=1, max_new_tokens=12, temperature=0)
        for row in range(3 * i, 3 * i + 3):
            assert batch["tokens"][row].tolist() == alone["tokens"][0].tolist()
            torch.testing.assert_close(batch["logprobs"][row], alone["logprobs"][0], rtol=0, atol=1e-5)


def test_logprobs_equal_full_forward(pair):
    _, ours = pair
    prompts = random_prompts([4, 11, 7], seed=2)
    out = sample_groups(ours, prompts, G=4, max_new_tokens=16, temperature=1.0, stop_ids=(3, 50), seed=5)
    for row in range(12):
        n, p = int(out["lengths"][row]), prompts[int(out["prompt_index"][row])]
        ref = full_forward_logprobs(ours, p, out["tokens"][row, :n].tolist())
        assert (out["logprobs"][row, :n] - ref).abs().max().item() <= 1e-4
        assert (out["logprobs"][row, n:] == 0).all()


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.7, 5, 1.0), (1.0, 0, 0.8), (1.3, 10, 0.6)])
def test_logprobs_under_filtered_distribution_match_transformers_warpers(pair, temperature, top_k, top_p):
    """Our temperature / top-k / top-p distribution equals transformers' logits warpers applied in the same order."""
    _, ours = pair
    prompts = random_prompts([6, 10], seed=3)
    out = sample_groups(ours, prompts, G=3, max_new_tokens=10, temperature=temperature, top_k=top_k, top_p=top_p,
                        seed=2)
    warpers = [transformers.TemperatureLogitsWarper(temperature)]
    warpers += [transformers.TopKLogitsWarper(top_k)] if top_k else []
    warpers += [transformers.TopPLogitsWarper(top_p)] if top_p < 1 else []
    for row in range(6):
        p, completion = prompts[int(out["prompt_index"][row])], out["tokens"][row].tolist()
        seq = torch.tensor([p + completion])
        with torch.no_grad():
            logits = ours(seq)[0, len(p) - 1:-1].float()  # (n, V) the logits each token was sampled from
        for w in warpers:
            logits = w(seq, logits)
        ref = F.log_softmax(logits, -1).gather(1, torch.tensor(completion)[:, None])[:, 0]
        assert torch.isfinite(ref).all()  # every sampled token is inside the top-k / top-p set
        assert (out["logprobs"][row] - ref).abs().max().item() <= 1e-4


def test_stop_tokens_and_mask(pair):
    _, ours = pair
    prompts = random_prompts([5, 9, 14, 2], seed=4)
    stop = tuple(range(0, VOCAB, 9))  # 11 of 97 ids: rows stop at many different steps, some never
    out = sample_groups(ours, prompts, G=6, max_new_tokens=15, stop_ids=stop, seed=3, pad_id=-1)
    assert out["tokens"].shape[1] == int(out["lengths"].max()) <= 15
    assert set(out["finish_reason"]) == {"stop", "length"}
    for row, reason in enumerate(out["finish_reason"]):
        n, toks = int(out["lengths"][row]), out["tokens"][row].tolist()
        assert out["mask"][row].tolist() == [True] * n + [False] * (len(toks) - n)
        assert all(t == -1 for t in toks[n:])  # pad after the end
        assert not any(t in stop for t in toks[:n - 1])  # the first stop token ends the row
        assert (toks[n - 1] in stop) == (reason == "stop")
        assert reason == "stop" or n == 15


def test_greedy_stop_ends_at_first_stop_token(pair):
    _, ours = pair
    prompt = random_prompts([8], seed=5)[0]
    free = sample_groups(ours, [prompt], G=1, max_new_tokens=20, temperature=0)["tokens"][0].tolist()
    stop_id = free[6]
    first = free.index(stop_id)
    out = sample_groups(ours, [prompt], G=2, max_new_tokens=20, temperature=0, stop_ids=[stop_id])
    assert out["lengths"].tolist() == [first + 1] * 2 and out["finish_reason"] == ["stop"] * 2
    assert out["tokens"][0].tolist() == free[:first + 1]


def test_context_limit_stops_with_length(pair):
    _, ours = pair
    prompts = random_prompts([CONTEXT - 4, CONTEXT - 1, 10], seed=6)
    out = sample_groups(ours, prompts, G=2, max_new_tokens=30, top_k=20)
    assert out["lengths"].tolist() == [4, 4, 1, 1, 30, 30]
    assert out["finish_reason"] == ["length"] * 6


def test_prefill_once_per_prompt_and_stop_when_all_finished(pair, monkeypatch):
    _, ours = pair
    shapes = []
    forward = type(ours).forward

    def recording_forward(self, idx, *args, **kwargs):
        shapes.append(tuple(idx.shape))
        return forward(self, idx, *args, **kwargs)
    monkeypatch.setattr(type(ours), "forward", recording_forward)
    prompts = random_prompts([4, 12, 7], seed=7)
    out = sample_groups(ours, prompts, G=5, max_new_tokens=40, stop_ids=tuple(range(0, VOCAB, 4)), seed=1,
                        compact_below=0.0)
    assert shapes[0] == (3, 12)  # one right-padded prefill of the 3 distinct prompts, not of 15 rows
    assert shapes[1:] == [(15, 1)] * (len(shapes) - 1)  # one token per row per step
    assert len(shapes) - 1 == int(out["lengths"].max()) - 1 < 39  # stopped as soon as every row had finished


def test_compaction_changes_nothing_but_the_work(pair):
    _, ours = pair
    prompts = random_prompts([4, 12, 7, 20], seed=8)
    kw = dict(G=5, max_new_tokens=25, stop_ids=tuple(range(0, VOCAB, 5)), seed=11, top_k=30)
    kept, compacted = sample_groups(ours, prompts, compact_below=0.0, **kw), \
        sample_groups(ours, prompts, compact_below=1.0, **kw)  # 1.0: drop rows as soon as any finishes
    assert torch.equal(kept["tokens"], compacted["tokens"]) and torch.equal(kept["mask"], compacted["mask"])
    torch.testing.assert_close(kept["logprobs"], compacted["logprobs"], rtol=0, atol=1e-5)
    assert kept["finish_reason"] == compacted["finish_reason"]


def test_same_seed_same_samples_different_seed_different(pair):
    _, ours = pair
    prompts = random_prompts([5, 8], seed=9)
    kw = dict(G=4, max_new_tokens=12, top_k=40, top_p=0.95)
    a, b = sample_groups(ours, prompts, seed=1, **kw), sample_groups(ours, prompts, seed=1, **kw)
    assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["logprobs"], b["logprobs"])
    c = sample_groups(ours, prompts, seed=2, **kw)
    assert not torch.equal(a["tokens"], c["tokens"])
    assert len(set(map(tuple, a["tokens"].tolist()))) > 1  # a group's G rows differ from each other
    d = sample_groups(ours, prompts, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(a["tokens"], d["tokens"])


def test_bfloat16_model_runs(pair, tmp_path):
    hf, _ = pair
    hf.save_pretrained(tmp_path)
    ours16 = Qwen2.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    out = sample_groups(ours16, random_prompts([6, 3], seed=10), G=2, max_new_tokens=8, top_k=20)
    assert out["tokens"].shape == (4, 8) and out["logprobs"].dtype == torch.float32
    assert torch.isfinite(out["logprobs"]).all() and (out["logprobs"] <= 0).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompts=[]), "prompts is empty"),
    (dict(prompts=[[1, 2], []]), r"prompts\[1\] is empty"),
    (dict(prompts=[[1] * CONTEXT]), r"prompts\[0\] has 48 tokens.*max_position_embeddings=48"),
    (dict(prompts=[[1, VOCAB]]), r"prompts\[0\] holds token id 97"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(G=0), "G must be"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(stop_ids=[VOCAB + 3]), "stop_ids"),
])
def test_bad_input_names_the_argument(pair, kwargs, match):
    _, ours = pair
    args = dict(prompts=[[1, 2, 3]], G=2, max_new_tokens=4) | kwargs
    with pytest.raises(ValueError, match=match):
        sample_groups(ours, **args)


# the CUDA plan without the graph capture (the CPU has none): bucketed spans, rare checks, padded compaction. Small
# buckets and a short check interval so that these tiny runs cross several of each.
CUDA_LOGIC = CUDA_PLAN._replace(cuda_graphs=False, span_bucket=8, check_every=3, row_multiple=4, prefill_tokens=20)


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(top_k=30), dict(temperature=0.7, top_p=0.9)],
                         ids=["greedy", "top_k", "top_p"])
@pytest.mark.parametrize("plan", [CUDA_LOGIC, CUDA_PLAN._replace(cuda_graphs=False)], ids=["small-buckets", "cuda"])
def test_cuda_plan_samples_what_the_cpu_plan_samples(pair, sampling, plan):
    """Rows of several prompt lengths that stop at different steps: the same tokens for the same generator, whatever
    the span buckets, check interval and padded compaction (a row's sample depends on its own logits and uniform)."""
    _, ours = pair
    prompts = random_prompts([3, 17, 9, 30, 1], seed=12)
    kw = dict(G=3, max_new_tokens=16, stop_ids=tuple(range(0, VOCAB, 6)), seed=4, **sampling)
    cpu, cuda = sample_groups(ours, prompts, plan=CPU_PLAN, **kw), sample_groups(ours, prompts, plan=plan, **kw)
    assert len(set(cpu["lengths"].tolist())) > 2  # rows finished at different steps
    assert torch.equal(cpu["tokens"], cuda["tokens"]) and torch.equal(cpu["mask"], cuda["mask"])
    assert cpu["finish_reason"] == cuda["finish_reason"]
    torch.testing.assert_close(cpu["logprobs"], cuda["logprobs"], rtol=0, atol=1e-5)


class LargestNewTensor(TorchFunctionMode):
    """Records the bytes of the largest tensor any torch call returns that owns memory of its own (not a view of
    an existing tensor), leaving out the KV cache's own allocation (new_kv_cache's zeros)."""
    def __init__(self, cache_numel):
        super().__init__()
        self.cache_numel, self.largest = cache_numel, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in list(args) + list((kwargs or {}).values()) if isinstance(a, torch.Tensor)]
        for t in out if isinstance(out, tuple) else (out,):
            if not isinstance(t, torch.Tensor) or func is torch.zeros and t.numel() == self.cache_numel:
                continue
            if all(t.untyped_storage().data_ptr() != a.untyped_storage().data_ptr() for a in inputs):
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


def test_no_copy_of_the_whole_cache(pair):
    """Prefill writes each prompt into the first of its G rows and copies it to the others in place, and compaction
    moves rows one layer at a time: no tensor as large as one layer's share of the cache is made besides the cache
    (the sampler before this one copied the whole cache after prefill and at every compaction)."""
    _, ours = pair
    rollout.ENGINES.pop(ours, None)  # the engine's cache is allocated in this call (and left out of the record)
    prompts, G, new = random_prompts([12, 30], seed=13), 8, 16
    c = ours.config
    cache_numel = c.num_hidden_layers * len(prompts) * G * c.num_key_value_heads * (30 + new) * c.head_dim
    cache_bytes = cache_numel * 4
    for plan in (CPU_PLAN, CUDA_LOGIC):
        with LargestNewTensor(cache_numel) as mode:
            out = sample_groups(ours, prompts, G, new, stop_ids=tuple(range(0, VOCAB, 3)), seed=3, plan=plan)
        assert out["lengths"].min() < new / 2 and out["lengths"].max() > new / 2  # compaction happened
        assert 0 < mode.largest < cache_bytes / c.num_hidden_layers, (plan, mode.largest, cache_bytes)


def test_max_rows_decodes_whole_groups_in_batches(pair):
    _, ours = pair
    prompts = random_prompts([5, 9, 2, 14, 7], seed=14)
    kw = dict(G=3, max_new_tokens=10, stop_ids=(0, 1, 2), top_k=20)
    whole = sample_groups(ours, prompts, generator=torch.Generator().manual_seed(5), **kw)
    gen = torch.Generator().manual_seed(5)
    split = sample_groups(ours, prompts, generator=gen, max_rows=7, **kw)  # 7 rows: 2 prompts (6 rows) a batch
    gen = torch.Generator().manual_seed(5)
    parts = [sample_groups(ours, prompts[i:i + 2], generator=gen, **kw) for i in (0, 2, 4)]
    assert split["tokens"].shape[0] == 15 and split["prompt_index"].tolist() == [i for i in range(5) for _ in "GGG"]
    assert split["finish_reason"] == [r for p in parts for r in p["finish_reason"]]
    for key in ("tokens", "mask", "logprobs"):
        T = split[key].shape[1]
        assert T == max(p[key].shape[1] for p in parts) == whole[key].shape[1] or T <= 10
        for i, p in enumerate(parts):
            rows = slice(6 * i, 6 * i + len(p["lengths"]))
            assert torch.equal(split[key][rows, :p[key].shape[1]], p[key])
            assert not split["mask"][rows, p[key].shape[1]:].any()


def test_kv_bytes_per_token_is_what_the_cache_allocates():
    """The arithmetic against the allocation it describes, and Qwen2.5-1.5B's figure by hand: 28 layers x (keys +
    values) x 2 KV heads x 128 dims x 2 bytes = 28,672 bytes a token."""
    qwen15 = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2)
    assert kv_bytes_per_token(qwen15, torch.bfloat16) == 28_672
    config = Qwen2Config(vocab_size=50, hidden_size=48, intermediate_size=32, num_hidden_layers=3,
                         num_attention_heads=6, num_key_value_heads=3)
    model = Qwen2.from_config(config, dtype=torch.bfloat16)
    k, v = model.new_kv_cache(5, 11)
    assert k.nbytes + v.nbytes == 5 * 11 * kv_bytes_per_token(config, torch.bfloat16)
    # a row of the 1.5B config at 2,048 + 400 tokens: 70.2 MB of cache and 2.4 MB of logits working set
    assert row_bytes(qwen15, torch.bfloat16, 2448) == 28_672 * 2448 + 16 * 151936


def test_rows_that_fit():
    config = Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    per_row = 2 * 2 * 2 * 16 * 4 * 100 + 16 * 1000  # keys + values of 2 layers, 2 heads of 16, float32, 100 slots
    assert rows_that_fit(config, torch.float32, 100, free_bytes=37 * per_row + 5, G=8) == 32  # whole groups only
    assert rows_that_fit(config, torch.float32, 100, free_bytes=8 * per_row, G=8) == 8
    with pytest.raises(ValueError, match=r"one group of 8 rows x 100 cache slots needs .* GiB .* are free"):
        rows_that_fit(config, torch.float32, 100, free_bytes=8 * per_row - 1, G=8)


def test_prefill_in_chunks_gives_the_logits_and_cache_of_one_prefill(pair):
    """Prompts a forward bounded by a token budget, and a prompt longer than the budget in slices that attend to the
    slots before them: the same last-token logits and the same filled cache slots as one prefill of all."""
    _, ours = pair
    prompts, G = random_prompts([3, 17, 9, 30, 1], seed=15), 2
    whole = ours.new_kv_cache(len(prompts) * G, 40)
    expect = rollout.prefill(ours, prompts, G, whole, 0)  # (P, V)
    for budget in (30, 64, 7):  # 1 prompt a forward; 2 a forward; slices of 7 tokens (every prompt but the last)
        kv = ours.new_kv_cache(len(prompts) * G, 40)
        torch.testing.assert_close(rollout.prefill(ours, prompts, G, kv, budget), expect, rtol=0, atol=1e-5)
        for i, p in enumerate(prompts):
            for c, w in zip(kv, whole):
                torch.testing.assert_close(c[:, i * G, :, :len(p)], w[:, i * G, :, :len(p)], rtol=0, atol=1e-5)


def test_engine_is_kept_between_calls_and_gives_what_a_fresh_one_gives(pair):
    """Several calls in a row (greedy and sampled, rows stopping apart, compaction, more rows than the first call)
    reuse the model's engine and its cache, and sample what each call with a fresh engine samples; a bigger engine,
    reserved ahead, changes nothing either."""
    _, ours = pair
    calls = [dict(prompts=random_prompts([3, 17, 9], seed=16), G=3, temperature=0.0),
             dict(prompts=random_prompts([12, 30], seed=17), G=4, top_k=30),
             dict(prompts=random_prompts([5, 8, 2, 20, 7], seed=18), G=3, temperature=0.7, top_p=0.9),
             dict(prompts=random_prompts([3, 17, 9], seed=16), G=3, temperature=0.0)]
    kw = dict(max_new_tokens=14, stop_ids=tuple(range(0, VOCAB, 6)), seed=2)
    fresh = []
    for call in calls:
        rollout.ENGINES.pop(ours, None)
        fresh.append(sample_groups(ours, **call, **kw))
    rollout.ENGINES.pop(ours, None)
    for reserve in (0, 64):
        rollout.engine(ours, reserve, reserve and CONTEXT)
        first = rollout.engine(ours)
        for call, want in zip(calls, fresh):
            got = sample_groups(ours, **call, **kw)
            assert rollout.engine(ours) is first or not reserve  # only a too-small engine grows
            for key in ("tokens", "mask", "logprobs", "lengths"):
                assert torch.equal(got[key], want[key]), key
        assert rollout.engine(ours).rows >= 15 and len(set(fresh[2]["lengths"].tolist())) > 2
        rollout.ENGINES.pop(ours, None)


def test_a_new_model_object_gets_its_own_engine_and_a_dropped_one_frees_its_own(pair):
    """FSDP2's sampling model is a new object for each rollout: it gets an engine (and captures) of its own, and the
    engine goes when the model does; an update in place keeps the engine, and sampling sees the new weights."""
    _, ours = pair
    copy = Qwen2.from_state_dict(ours.config, {k: v.clone() for k, v in ours.state_dict().items()}).eval()
    a = sample_groups(ours, [[1, 2, 3]], 2, 6, temperature=0.0)
    b = sample_groups(copy, [[1, 2, 3]], 2, 6, temperature=0.0)
    assert torch.equal(a["tokens"], b["tokens"]) and rollout.engine(copy) is not rollout.engine(ours)
    kept = rollout.engine(copy)
    with torch.no_grad():
        copy.lm_head.weight.mul_(-1)  # in place, as the optimizer does
    c = sample_groups(copy, [[1, 2, 3]], 2, 6, temperature=0.0)
    assert rollout.engine(copy) is kept and not torch.equal(c["tokens"], a["tokens"])
    n = len(rollout.ENGINES)
    del copy, kept
    assert len(rollout.ENGINES) == n - 1


def fake_cuda_graph(step, pool):
    """rollout.cuda_graph's contract on the CPU: the step's outputs are static tensors that replay() refreshes."""
    out = step()
    replay = lambda: [o.copy_(x) for o, x in zip(out, step())]
    return type("Graph", (), {"replay": staticmethod(replay)})(), out


def test_graphs_are_captured_once_per_shape_for_the_whole_run(pair, monkeypatch):
    """The CUDA plan's graph bookkeeping with a stand-in graph: over several calls, each (rows, span, sampling)
    key is captured once and replayed after, and the tokens are the CPU plan's."""
    _, ours = pair
    monkeypatch.setattr(rollout, "cuda_graph", fake_cuda_graph)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: "pool")
    rollout.ENGINES.pop(ours, None)
    rollout.engine(ours, 16, CONTEXT)  # reserved ahead, as the memory plan does: the engine never grows
    prompts = random_prompts([3, 17, 9, 30, 1], seed=19)
    kw = dict(G=3, max_new_tokens=16, stop_ids=tuple(range(0, VOCAB, 6)), top_k=30)
    graphs = CUDA_LOGIC._replace(cuda_graphs=True)
    for call in range(3):
        want = sample_groups(ours, prompts, seed=call, plan=CPU_PLAN, **kw)
        got = sample_groups(ours, prompts, seed=call, plan=graphs, **kw)
        assert torch.equal(got["tokens"], want["tokens"])
        torch.testing.assert_close(got["logprobs"], want["logprobs"], rtol=0, atol=1e-5)
        if call == 0:
            first = rollout.engine(ours).captures
        assert rollout.engine(ours).captures == len(rollout.engine(ours).graphs)  # once per key
    assert 0 < first <= rollout.engine(ours).captures < 3 * first  # later calls replay (new keys only if new shapes)
    rollout.ENGINES.pop(ours, None)
