"""
The CPU demo's base model: a tiny Qwen2 trained by SFT on worked solutions of the demo task (data/arith.py), made by
a command of its own before any RL, as nanoGPT prepares its data before training.

    python -m data.demo_base                          # the shipped base's recipe -> out/base/<key>/ (printed)
    python -m data.demo_base --base_seed=1            # another base of the same recipe
    python ghpo.py --init_from=out/base/<key>         # RL from it
    python -m data.demo_base --help                   # every setting below

The repository ships one such base, data/small_base/ (ghpo.py's default init_from), made by this recipe at 1 thread
on an AVX-512 Xeon. A base made on another machine has other weights: another CPU, BLAS or thread count sums SFT's
floats in another order, and what a 0.8M-parameter model picks up in 800 steps depends on it (docs/demo.md).

What the base reads (docs/demo.md, "Design: a base that half-knows the hard levels"): levels 1-3 solved,
base_hint_frac of them after a hint of one of RL's ratios, so that it knows the hint format; and, in base_slip_frac
of its examples, a level 7-9 problem solved by a careless student whose every step slips (one too high) with
probability base_slip_rate, so that it gets a hard step right about 1 - base_slip_rate of the time, whatever its
float sums. The prompts are made by prompts.py from the settings it shares with ghpo.py (easy_levels,
eval_per_level, hint_*): they must be the RL run's, and ghpo.py says so when they are not.

A base is trained into out_dir, or by default into base_cache/<key>, the key a hash of the settings and of the data
that decide the base (its tokenizer and first SFT batch), where a later run with the same recipe finds it. Beside the
weights, made.json records the settings, the machine, the weights' sha256 and ghpo.py's evaluation of the base (no
hints); ghpo.py prints that record beside its own evaluation when it starts from the base.
"""
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import configurator
import prompts
from configurator import UsageError
from data.arith import build_tokenizer, make_splits, save_tokenizer, slip_solution
from model import Qwen2, Qwen2Config

# -----------------------------------------------------------------------------
# settings: set like ghpo.py's, in a config file or with --key=value
# the model
n_layer = 4                   # layers
n_embd = 128                  # width
n_head = 4                    # attention heads
n_kv_head = 2                 # key/value heads (grouped-query attention)
n_inner = 384                 # MLP width
# its SFT
base_seed = 0                 # seed of the base model's init and SFT data (shared by every method and RL seed)
base_steps = 800              # SFT steps
base_batch = 32               # SFT rows per step
base_row_len = 256            # SFT row length: several solved problems packed per row, so the base reads long texts
base_lr = 2e-3                # SFT peak learning rate (cosine, 30 warm-up steps)
base_hint_frac = 0.5          # fraction of easy examples whose prompt carries a hint, so the base knows the hint format
base_slip_frac = 0.3          # fraction of examples that are a base_slip_levels problem solved in full, with slips
base_slip_levels = (7, 8, 9)  # levels the base reads solved with slips (a step's result one too high, data/arith.py)
base_slip_rate = 0.6          # chance that a step slips: the base gets such a step right about 1 - this often
# shared with ghpo.py: the prompts the base learns are the RL run's (compare.py passes these to both commands)
easy_levels = (1, 2, 3)       # the levels the base learns solved correctly
eval_per_level = 100          # held-out problems per level, never trained on (the RL run's evaluation problems)
hint_ratios = (0.25, 0.5, 0.75)  # the hints of base_hint_frac's examples: one of these ratios each
hint_in_answer = True         # the hint opens the answer (False: after hint_template in the user message)
hint_template = prompts.HINT_TEMPLATE  # the words before a hint in the user message (the released code's), also
                              # put in the base's vocabulary
# where it goes
out_dir = ""                  # the base's folder ("": base_cache/<key of the settings and data>, reused when there)
base_cache = "out/base"       # where bases are kept by key
threads = 0                   # torch CPU threads (0: torch's default); the base's float sums depend on it
config_keys = [k for k, v in globals().items() if k.islower() and not k.startswith("_")
               and isinstance(v, (int, float, bool, str, tuple))]
# -----------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = "made.json"
NOT_RECIPE = ("out_dir", "base_cache", "threads")  # settings that do not change what is trained
SHARED = ("easy_levels", "eval_per_level", "hint_ratios", "hint_in_answer", "hint_template")  # ghpo.py has them too


def configure(argv):
    """Apply `--config FILE.py` and `--key=value` to these settings; returns {key: value}."""
    return configurator.configure(argv, [globals()], ROOT)


def prompt_format():
    return prompts.PromptFormat(hint_in_answer=hint_in_answer, hint_template=hint_template)

# -----------------------------------------------------------------------------
# the SFT data


def sft_batch(tok, easy, slipped, rng):
    """One SFT batch: inputs, targets and loss mask, (base_batch, base_row_len) each. Each row packs examples until the
    next does not fit: an easy problem solved (base_hint_frac of them after a hint), or with probability
    base_slip_frac a problem of `slipped` (base_slip_levels) solved with slips after its hint, if any, as written. The
    prompt and hint are read, the rest of the solution and its end are learned."""
    fmt = prompt_format()
    end, eot = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
    x = torch.full((base_batch, base_row_len + 1), eot)
    m = torch.zeros(base_batch, base_row_len + 1)
    for b in range(base_batch):
        rng.random()  # a draw that a retired option made for each row (docs/history.md): kept, so bases remake exactly
        t = 0
        while True:
            slips = base_slip_frac and rng.random() < base_slip_frac
            p = rng.choice(slipped if slips else easy)
            ratio = rng.choice(hint_ratios) if rng.random() < base_hint_frac else 0.0
            read = prompts.solution_prefix(p["solution"], ratio, fmt) if hint_in_answer else ""
            solution = slip_solution(p, read.count("\n"), base_slip_rate, rng) if slips else p["solution"]
            a, c = tok.encode(prompts.prompt_text(p, ratio, fmt)).ids, tok.encode(solution[len(read):]).ids + [end, eot]
            if t + len(a) + len(c) > base_row_len + 1:
                break
            x[b, t:t + len(a) + len(c)] = torch.tensor(a + c)
            m[b, t + len(a):t + len(a) + len(c) - 1] = 1.0  # learn the solution and its end, not the problem
            t += len(a) + len(c)
    return x[:, :-1], x[:, 1:], m[:, 1:]


def sft_data():
    """The tokenizer and the problems SFT draws from: (tok, easy, slipped). Held-out problems never enter them."""
    tok = build_tokenizer([hint_template])
    easy, _ = make_splits(easy_levels, eval_per_level)
    slipped = make_splits(base_slip_levels, eval_per_level)[0] if base_slip_frac else []
    return tok, easy, slipped


def base_key():
    """The cache key of these settings: a hash of every setting that changes what is trained, of the tokenizer and of
    the first SFT batch (which shows the task, the prompt format and the packing)."""
    tok, easy, slipped = sft_data()
    h = hashlib.sha1(json.dumps({k: globals()[k] for k in config_keys if k not in NOT_RECIPE}, sort_keys=True).encode())
    h.update(tok.to_str().encode())
    for t in sft_batch(tok, easy, slipped, random.Random(base_seed)):
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:10]


def base_folder():
    """Where these settings put their base: out_dir, or base_cache/<key>."""
    return out_dir or os.path.join(base_cache, base_key())


def is_trained(folder):
    return os.path.isfile(os.path.join(folder, RECORD))

# -----------------------------------------------------------------------------
# SFT, and the record of what was made


def train_base(folder):
    """SFT of a tiny Qwen2 from a random init (seed base_seed); saves the weights and tokenizer.json to folder."""
    tok, easy, slipped = sft_data()
    config = Qwen2Config(vocab_size=tok.get_vocab_size(), hidden_size=n_embd, intermediate_size=n_inner,
                         num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_kv_head,
                         max_position_embeddings=1024, rope_theta=10000.0, tie_word_embeddings=True,
                         eos_token_id=tok.token_to_id("<|im_end|>"))
    model = Qwen2.from_config(config, seed=base_seed)
    rng = random.Random(base_seed)
    opt = torch.optim.AdamW(model.parameters(), lr=base_lr, betas=(0.9, 0.95), weight_decay=0.0)
    t0 = time.time()
    for it in range(base_steps):
        x, y, m = sft_batch(tok, easy, slipped, rng)  # (base_batch, base_row_len) each
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


def machine():
    """The CPU, the instruction set torch dispatches to, the torch version and the thread count: what changes a
    model's float sums from one machine to the next."""
    name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?") \
        if os.path.isfile("/proc/cpuinfo") else "?"
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def evaluate_base(folder):
    """ghpo.py's evaluation of the base (no hints), run as that command with the settings it shares with this one."""
    shared = [f"--{k}={globals()[k]}" for k in SHARED + ("threads",)]
    out = os.path.join(folder, ".eval")
    cmd = [sys.executable, os.path.join(ROOT, "ghpo.py"), f"--init_from={folder}", "--eval_only=True",
           f"--out_dir={out}", *shared]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"evaluating the base failed ({' '.join(cmd)}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    with open(os.path.join(out, "summary.json")) as f:
        evaluation = json.load(f)["eval"]
    for name in os.listdir(out):
        os.remove(os.path.join(out, name))
    os.rmdir(out)
    return evaluation


def make_base(argv):
    """`python -m data.demo_base [--key=value ...]`: train the base these settings define into its folder (unless it
    is there already), record how it was made and what it scores in made.json, and return the folder."""
    configure(argv)
    if threads:
        torch.set_num_threads(threads)
    folder = base_folder()
    if is_trained(folder):
        print(f"base model: {folder} (made already)")
        return folder
    print(f"training the base model -> {folder}")
    train_base(folder)
    made = {"command": " ".join(["python -m data.demo_base", *argv]), "machine": machine(),
            "settings": {k: globals()[k] for k in config_keys if k not in NOT_RECIPE},
            "sha256": sha256(os.path.join(folder, "model.safetensors")), "eval_before": evaluate_base(folder)}
    with open(os.path.join(folder, RECORD + ".tmp"), "w") as f:
        json.dump(made, f, indent=1)
    os.replace(os.path.join(folder, RECORD + ".tmp"), os.path.join(folder, RECORD))  # the folder is complete
    print(f"base model -> {folder}: easy {made['eval_before']['easy']:.3f} hard {made['eval_before']['hard']:.3f} "
          f"({made['machine']})")
    return folder


def check_record(folder, evaluation, run_settings, tol=0.03):
    """For a base with a made.json (ghpo.py calls this before RL with its evaluation and settings): print the
    recorded accuracy beside this run's, whether these are the recorded weights, and the SHARED settings in which the
    run differs from the base. Returns the largest accuracy difference (None for a folder without a record)."""
    path = os.path.join(folder, RECORD)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            made = json.load(f)
        recorded, digest, where = made["eval_before"], made["sha256"], made["machine"]
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path}: not a base model's record ({type(e).__name__}: {e})") from None
    worst = max([abs(evaluation[k] - v) for k, v in recorded.items() if k in evaluation], default=0.0)
    same_file = sha256(os.path.join(folder, "model.safetensors")) == digest
    base_settings = made.get("settings", {})
    levels = lambda acc: sorted(k for k in acc if k.startswith("L"))
    same_problems = levels(recorded) == levels(evaluation) and \
        base_settings.get("eval_per_level") == run_settings.get("eval_per_level")
    if not same_problems:  # another evaluation: only the weights can be compared
        verdict = (f"{'the recorded weights (sha256 as in made.json)' if same_file else 'NOT the recorded weights'}; "
                   f"evaluated on other problems (eval_per_level={run_settings.get('eval_per_level')}, levels "
                   f"{','.join(levels(evaluation))}; the record: {base_settings.get('eval_per_level')}, "
                   f"{','.join(levels(recorded))}), so the accuracies are not comparable"
                   + ("; and past the record's first problems of each level, the base trained on them" if
                      run_settings.get("eval_per_level", 0) > base_settings.get("eval_per_level", 0) else ""))
    else:
        verdict = ("the recorded model" if worst <= tol and same_file else
                   f"NOT the recorded model ({'weights changed; ' if not same_file else ''}accuracy differs by up to "
                   f"{worst:.3f}): docs/demo.md's numbers do not describe this run")
    splits = [k for k in ("easy", "hard") if k in recorded and k in evaluation]
    print(f"base {folder}, made on {where}: recorded {' '.join(f'{k} {recorded[k]:.3f}' for k in splits)}; here "
          f"{' '.join(f'{k} {evaluation[k]:.3f}' for k in splits)}: {verdict}")
    differ = [f"{k}={run_settings[k]!r} (base: {base_settings[k]!r})" for k in SHARED if k in base_settings
              and k != "eval_per_level"  # which problems were held out: the verdict above says what it changes
              and k in run_settings and json.loads(json.dumps(run_settings[k])) != base_settings[k]]
    if differ:
        print(f"base {folder} learned other prompts than this run shows: {', '.join(differ)}")
    return worst


if __name__ == "__main__":
    if "--help" in sys.argv or "-h" in sys.argv:
        print(configurator.help_text([sys.modules[__name__]], __doc__.strip()))
        sys.exit(0)
    try:
        make_base(sys.argv[1:])
    except UsageError as e:
        print(f"demo_base: error: {e}", file=sys.stderr)
        sys.exit(2)
