"""
The CPU demo's base model (init_from = "scratch" in ghpo.py): a tiny Qwen2 trained by SFT on worked solutions of
the demo task (data/arith.py), cached under base_cache by a hash of every setting and line of code that defines it.

A real run starts from a pretrained checkpoint instead and never reads this file. The demo's base has to know the
task's format, the hint format and the easy levels, and to fail the hard levels in a way hints can help with:
docs/demo.md tells how each setting below was found. The settings are set like ghpo.py's, from a config file or
with --key=value (configurator.py).

The functions take `run`, the running ghpo module: its prompt format (prompt_text, solution_prefix, ...) and hint
settings, so the base reads exactly the prompts RL will show it.
"""
import hashlib
import inspect
import json
import math
import os
import random
import time

import torch
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# demo settings: like ghpo.py's, set in a config file or with --key=value
# the task's format (data/arith.py)
countdown = False             # each step line also says how many steps are left (`37+8=45, 4 left`)
wide_levels = ()              # levels whose addends have two digits (10..99) instead of one
# the scratch model
n_layer = 4                   # layers
n_embd = 128                  # width
n_head = 4                    # attention heads
n_kv_head = 2                 # key/value heads (grouped-query attention)
n_inner = 384                 # MLP width
# its SFT on the easy levels
base_seed = 0                 # seed of the base model's init and SFT data (shared by every method and RL seed)
base_steps = 400              # SFT steps of the base model
base_batch = 32               # SFT rows per step
base_row_len = 256            # SFT row length: several solved problems packed per row, so the base reads long texts
base_lr = 3e-3                # SFT peak learning rate (cosine, 30 warm-up steps)
base_hint_frac = 0.4          # fraction of SFT examples whose prompt carries a hint, so the base knows the hint format
base_partial_frac = 0.0       # fraction of SFT rows that end with a problem of base_partial_levels cut off early
base_partial_levels = (4, 5)  # levels whose first steps (never the last step or the answer) the base reads
base_partial_steps = 0        # at most this many first steps of those problems (0: up to all but the last)
base_tail_frac = 0.0          # fraction of SFT examples that are a base_partial_levels problem finished from late on:
base_tail_steps = 2           # its last base_tail_steps steps and answer learned, the steps before them read as a hint
base_slip_frac = 0.0          # fraction of SFT examples that are a base_slip_levels problem solved in full, with slips
base_slip_levels = (7, 8, 9)  # levels the base reads solved with slips (a step's result one too high, data/arith.py)
base_slip_rate = 0.6          # chance that a step slips: the base gets such a step right about 1 - this often
base_cache = "out/base"       # base models are cached here, keyed by a hash of the settings that define them
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str, tuple))]
# -----------------------------------------------------------------------------


def arith_splits(levels, eval_per_level):
    """(train, evals) of the demo task at these levels, in the configured format."""
    from data.arith import make_splits
    return make_splits(levels, eval_per_level, countdown=countdown, wide_levels=wide_levels)


def arith_task(train_levels, eval_levels, eval_per_level):
    """ghpo.py's task=arith: (training problems, {"L<level>": held-out problems}); the two never overlap."""
    train, _ = arith_splits(train_levels, eval_per_level)
    _, evals = arith_splits(eval_levels, eval_per_level)
    return train, {f"L{lv}": [p for p in evals if p["level"] == lv] for lv in eval_levels}


def sft_batch(tok, train, hard_train, rng, run, slip_train=()):
    """One SFT batch of the base model: inputs, targets and loss mask (base_batch, base_row_len) each. Each row packs
    solved easy problems (the prompt read, the solution and its end learned; base_hint_frac of the prompts carry a
    hint), and with probability base_partial_frac ends with a problem of base_partial_levels cut off after 1 to n-1 of
    its n steps (at most base_partial_steps). With probability base_tail_frac a packed example is a problem of
    base_partial_levels instead, its first n - base_tail_steps steps read as an answer-opening hint and the rest
    learned: the base can finish a hard problem from late on, not from its start. With probability base_slip_frac a
    packed example is a problem of slip_train (base_slip_levels), its hint (if any) read as written and the rest of
    its solution learned as a careless student writes it: each step slips with probability base_slip_rate."""
    from data.arith import slip_solution
    end, eot = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
    x = torch.full((base_batch, base_row_len + 1), eot)
    m = torch.zeros(base_batch, base_row_len + 1)
    for b in range(base_batch):
        partial = []  # with probability base_partial_frac the row ends with the first steps of a hard problem
        if rng.random() < base_partial_frac:
            p = rng.choice(hard_train)
            steps = run.step_lines(p)
            a = tok.encode(run.prompt_text(p)).ids
            k = rng.randint(1, min(len(steps) - 1, base_partial_steps or len(steps)))
            partial = (a, tok.encode(run.first_steps(p, k)).ids)
        room = base_row_len + 1 - sum(map(len, partial))
        t = 0
        while True:
            if base_tail_frac and rng.random() < base_tail_frac:  # a hard problem, its early steps given: finish it
                p = rng.choice(hard_train)
                read = run.first_steps(p, max(0, len(run.step_lines(p)) - base_tail_steps))
                prompt, rest = run.prompt_text(p) + read, p["solution"][len(read):]
            else:  # an easy problem, or with probability base_slip_frac a long one solved with slips
                slips = base_slip_frac and rng.random() < base_slip_frac
                p = rng.choice(slip_train if slips else train)
                ratio = rng.choice(run.hint_ratios) if rng.random() < base_hint_frac else 0.0
                read = run.solution_prefix(p, ratio) if run.hint_in_answer else ""
                solution = slip_solution(p, read.count("\n"), base_slip_rate, rng) if slips else p["solution"]
                prompt, rest = run.prompt_text(p, ratio), solution[len(read):]
            a, c = tok.encode(prompt).ids, tok.encode(rest).ids + [end, eot]
            if t + len(a) + len(c) > room:
                break
            x[b, t:t + len(a) + len(c)] = torch.tensor(a + c)
            m[b, t + len(a):t + len(a) + len(c) - 1] = 1.0  # learn the solution and its end, not the problem
            t += len(a) + len(c)
        if partial:
            a, c = partial
            x[b, t:t + len(a) + len(c)] = torch.tensor(a + c)
            m[b, t + len(a):t + len(a) + len(c)] = 1.0  # the steps, and no end: the row just stops
    return x[:, :-1], x[:, 1:], m[:, 1:]


def train_base(folder, run):
    """Supervised learning of a tiny Qwen2 on worked solutions of the easy levels only (run.easy_levels), several
    examples packed per row; a fraction of the prompts carry a hint so the base knows the hint format. With
    base_partial_frac > 0 a fraction of the rows end with a problem of base_partial_levels whose solution is cut off
    after 1 to n-1 steps (no answer, no end token): the base reads hard problem texts and early steps, but never
    finishes one (docs/demo.md: a base that never read a problem's length fails on its first step, leaving hints
    nothing to train). Saves model and tokenizer.json to `folder` (atomically)."""
    from data.arith import build_tokenizer, save_tokenizer
    from model import Qwen2, Qwen2Config
    tok = build_tokenizer([run.hint_template], countdown)
    end = tok.token_to_id("<|im_end|>")
    train, _ = arith_splits(run.easy_levels, run.eval_per_level)
    hard_train, _ = arith_splits(base_partial_levels, run.eval_per_level)  # held-out problems never enter training
    slip_train = arith_splits(base_slip_levels, run.eval_per_level)[0] if base_slip_frac else []
    config = Qwen2Config(vocab_size=tok.get_vocab_size(), hidden_size=n_embd, intermediate_size=n_inner,
                         num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_kv_head,
                         max_position_embeddings=1024, rope_theta=10000.0, tie_word_embeddings=True,
                         eos_token_id=end)
    model = Qwen2.from_config(config, seed=base_seed)
    rng = random.Random(base_seed)
    opt = torch.optim.AdamW(model.parameters(), lr=base_lr, betas=(0.9, 0.95), weight_decay=0.0)
    t0 = time.time()
    for it in range(base_steps):
        x, y, m = sft_batch(tok, train, hard_train, rng, run, slip_train)  # (base_batch, base_row_len) each
        for group in opt.param_groups:
            group["lr"] = base_lr * min(1.0, (it + 1) / 30) * 0.5 * (1 + math.cos(math.pi * it / base_steps))
        loss = (F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none") * m.flatten()).sum() / m.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if it % 50 == 0 or it == base_steps - 1:
            print(f"base sft step {it:4d} | loss {loss.item():.4f} | {time.time() - t0:.0f}s", flush=True)
    model.save_pretrained(folder)
    save_tokenizer(tok, folder)


def base_settings(run):
    """Everything that defines the base model: this file's settings, the run settings its data depend on, and a hash
    of the task's, the SFT's and the prompt format's code (a change to any of them retrains)."""
    keys = ("task", "easy_levels", "eval_per_level", "hint_ratios", "hint_template", "hint_in_answer",
            "chat_template", "system_prompt")
    code = [sft_batch, train_base, arith_splits, run.prompt_text, run.hint_text, run.solution_prefix,
            run.first_steps, run.step_lines]
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "arith.py"), "rb") as f:
        task_code = hashlib.sha1(f.read() + "".join(inspect.getsource(fn) for fn in code).encode()).hexdigest()
    return {k: globals()[k] for k in config_keys if k != "base_cache"} | {k: getattr(run, k) for k in keys} | \
        {"task_code": task_code}


def base_path(run):
    """Where the cache keeps the base model these settings define (trained or not)."""
    key = hashlib.sha1(json.dumps(base_settings(run), sort_keys=True).encode()).hexdigest()[:10]
    return os.path.join(base_cache, key)


def is_trained(folder):
    return os.path.isfile(os.path.join(folder, "tokenizer.json"))


def base_folder(run):
    """The cached base model's folder, trained first if this cache has none for these settings."""
    folder = base_path(run)
    if not is_trained(folder):
        print(f"training the base model -> {folder}")
        train_base(folder, run)
    else:
        print(f"base model: cached {folder}")
    return folder

# -----------------------------------------------------------------------------
# the shipped bases: data/small_base/ (configs/small.py) and data/small_bridge_base/ (configs/small_bridge.py) each
# hold one base model made by this file's recipe with that config's settings, so that every machine starts RL from
# the same weights (a base trained elsewhere differs: another CPU, BLAS or thread count changes the float sums of SFT,
# and the skills a 0.8M-parameter model picks up in 800 steps depend on them; docs/demo.md). made.json records how it
# was made and what it scored there, and ghpo.py prints that beside what it scores here.

RECORD = "made.json"


def machine():
    """The CPU, the instruction set torch dispatches to, the torch version and the thread count: what changes a
    model's float sums from one machine to the next."""
    name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?") \
        if os.path.isfile("/proc/cpuinfo") else "?"
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def check_recorded(folder, eval_before, tol=0.03):
    """For a shipped base (made.json beside the weights): print its recorded accuracy beside this machine's, and say
    whether this is the model that was measured. Returns the largest difference (None for any other folder)."""
    path = os.path.join(folder, RECORD)
    if not os.path.isfile(path):
        return None
    made = json.load(open(path))
    worst = max(abs(eval_before[k] - v) for k, v in made["eval_before"].items() if k in eval_before)
    same_file = sha256(os.path.join(folder, "model.safetensors")) == made["sha256"]
    verdict = ("the recorded model" if worst <= tol and same_file else
               f"NOT the recorded model ({'weights changed; ' if not same_file else ''}accuracy differs by up to "
               f"{worst:.3f}): the README's numbers do not describe this run")
    print(f"shipped base {folder}, made on {made['machine']}: recorded easy {made['eval_before']['easy']:.3f} hard "
          f"{made['eval_before']['hard']:.3f}; here easy {eval_before['easy']:.3f} hard {eval_before['hard']:.3f}: "
          f"{verdict}")
    return worst


def ship(target, argv):
    """Train (or take from the cache) the base model these settings define, copy it to `target` and record there how
    it was made and what it scores (ghpo.py's evaluation, no hints)."""
    import shutil
    import tempfile
    import ghpo
    ghpo.configure(list(argv) + ["--init_from=scratch"])
    if ghpo.threads:
        torch.set_num_threads(ghpo.threads)
    folder = base_folder(ghpo)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-base-", dir=os.path.dirname(os.path.abspath(target)))
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy2(os.path.join(folder, name), tmp)
    summary = ghpo.main(list(argv) + [f"--init_from={tmp}", "--eval_only=True", f"--out_dir={tmp}/eval"])
    shutil.rmtree(os.path.join(tmp, "eval"))
    made = {"command": "python -m data.demo_base " + " ".join([target, *argv]), "machine": machine(),
            "settings": base_settings(ghpo), "sha256": sha256(os.path.join(tmp, "model.safetensors")),
            "eval_before": summary["eval"]}
    with open(os.path.join(tmp, RECORD), "w") as f:
        json.dump(made, f, indent=1)
    if os.path.isdir(target):
        shutil.rmtree(target)
    os.rename(tmp, target)
    print(f"shipped base -> {target} ({made['machine']})")


if __name__ == "__main__":  # python -m data.demo_base data/small_base --config small.py [--key=value ...]
    import sys
    from data import demo_base  # the module ghpo.py configures, not this __main__ copy of it
    demo_base.ship(sys.argv[1], sys.argv[2:])
