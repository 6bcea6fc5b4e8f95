"""rollout.sample_groups: greedy parity with transformers' generate, log-probs against a full forward, mixed-length
batches, stop and length semantics, reproducibility, and bad input."""
import pytest
import torch
import torch.nn.functional as F

from model import Qwen2
from rollout import sample_groups

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
