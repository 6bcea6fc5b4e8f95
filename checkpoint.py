"""
Checkpoints of a ghpo.py run: out_dir/ckpt-NNNNNN after NNNNNN RL steps, filled in a temporary folder and renamed
into place, so a kill at any moment leaves the previous checkpoint or the new one, never a partial one. A killed run
started again with --resume=True continues from the newest one whose files can be read: weights, AdamW moments, every
RNG stream and the step (which fixes the data position and the learning rate), with metrics.jsonl cut back to that
step. Also where a run starts: out_dir holds one run (check_out_dir), and the weights are init_from's or, with
resume, the newest intact checkpoint's (load_start); and where it ends (finish).
"""
import contextlib
import json
import os
import random
import shutil
import tempfile
import time

import torch

from configurator import UsageError
from distributed import all_gather, close, rank_world
from model import Qwen2, load_tokenizer


class Unreadable(UsageError):
    """A checkpoint file that cannot be read (cut short, overwritten, not a checkpoint's)."""


def newest_first(out_dir):
    """The checkpoint folders in out_dir, newest first."""
    names = sorted((n for n in os.listdir(out_dir) if n.startswith("ckpt-")), reverse=True) \
        if os.path.isdir(out_dir) else []
    return [os.path.join(out_dir, n) for n in names]


RUN_FILES = ("metrics.jsonl", "summary.json", "model")  # with ckpt-* and .tmp-ckpt-*: a run's outputs in out_dir


def run_files(out_dir):
    """The names in out_dir that a run wrote (RUN_FILES, checkpoints and their temporary folders, a checkpoint's
    eval_only table), sorted."""
    names = os.listdir(out_dir) if os.path.isdir(out_dir) else []
    return sorted(n for n in names if n in RUN_FILES or n.startswith(("ckpt-", ".tmp-ckpt-", "eval-ckpt-")))


def check_out_dir(out_dir, resume, overwrite, rank=0):
    """Before any work: out_dir must be a writable folder (made if missing); a fresh run stops if it holds another
    run's files (with overwrite, rank 0 removes them), and resume needs a checkpoint there. Each a one-line error."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"out_dir: {out_dir!r} is a file, not a folder")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise UsageError(f"out_dir: cannot make the folder {out_dir!r} ({e.strerror})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UsageError(f"out_dir: the folder {out_dir!r} is not writable")
    found = run_files(out_dir)
    if resume and not newest_first(out_dir):
        raise UsageError(f"resume=True: no checkpoint (ckpt-NNNNNN) in {out_dir} to resume from; start without it")
    if found and not resume and not overwrite:
        raise UsageError(f"out_dir: {out_dir} holds another run's files ({', '.join(found)}): pass --resume=True to "
                         f"continue it, --overwrite=True to replace it, or choose another out_dir")
    if found and not resume and rank == 0:  # overwrite: nothing of the old run stays to mix with the new one
        for name in found:
            path = os.path.join(out_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def load_model(folder, dev, dtype):
    """A Hugging Face folder's model (model.py) in dtype; a missing or unreadable file is one line naming it."""
    try:
        return Qwen2.from_pretrained(folder, dtype=dtype, device=dev)
    except (OSError, ValueError) as e:
        raise UsageError(str(e)) from e


def open_tokenizer(folder):
    """A folder's tokenizer.json (model.py); a missing or unreadable file is one line naming it."""
    try:
        return load_tokenizer(folder)
    except (OSError, ValueError) as e:
        raise UsageError(str(e)) from e


def load_start(out_dir, resume, cfg, init_from, world, load):
    """The model RL starts from: init_from, or with resume the newest intact checkpoint in out_dir (skipping, with one
    line, any whose files cannot be read). load(folder): the model in a folder. Returns (model, checkpoint folder or
    None, its state or None)."""
    unreadable = []
    for ckpt in newest_first(out_dir) if resume else []:
        try:
            state = read_state(ckpt)  # Unreadable for a file that is not a checkpoint's
            model = load(os.path.join(ckpt, "model"))
        except UsageError as e:
            unreadable.append(str(e))
            continue
        check_state(ckpt, state, cfg, init_from, world)  # written by another run: an error, no fallback
        if unreadable and rank_world()[0] == 0:
            print(f"{unreadable[0]}: resuming from the newest intact checkpoint, {ckpt}")
        return model, ckpt, state
    if unreadable:
        raise UsageError(f"{unreadable[0]}; no intact checkpoint left in {out_dir} to resume from")
    return load(init_from), None, None


def save(out_dir, step, model, optimizer, master, generator, state, tok_folder, full=None):
    """Weights (and `master`, the float32 master weights of a bfloat16 run), AdamW moments, every rank's sampling
    generator, the python and torch RNGs, the step and `state` (the run's settings and base model). Called on every
    rank, written by rank 0; older checkpoints are removed once the new one is in place. An FSDP2 run passes `full`,
    the gathered plain copy of its model (written as model/), and every rank adds its own shards of the float32
    weights and AdamW moments to the same temporary folder with torch.distributed.checkpoint (DCP, dcp/)."""
    generators = all_gather(generator.get_state().cpu())
    final = os.path.join(out_dir, f"ckpt-{step:06d}")
    rank = rank_world()[0]
    if all_gather(os.path.isdir(final))[0]:  # rank 0's answer, so that every rank takes the same way
        return
    tmp = all_gather(tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=out_dir) if rank == 0 else None)[0]
    if full is not None:
        import torch.distributed.checkpoint as dcp  # FSDP2 runs only: 0.7 s to import, so not at the top
        dcp.save(sharded_state(model, optimizer), checkpoint_id=os.path.join(tmp, "dcp"))  # returns once all wrote
    if rank:
        return
    (model if full is None else full).save_pretrained(os.path.join(tmp, "model"))
    shutil.copy2(os.path.join(tok_folder, "tokenizer.json"), os.path.join(tmp, "model"))  # loadable as init_from
    if full is None:
        weights = {"optimizer": optimizer.state_dict(), "master": master and [m.detach().cpu() for m in master]}
    else:  # FSDP2: the float32 weights are the optimizer's own parameters, in dcp/ with its moments
        weights = {"optimizer": None, "master": None}
    torch.save(state | weights | {"step": step, "generators": generators, "python_rng": random.getstate(),
                                  "torch_rng": torch.get_rng_state()},
               os.path.join(tmp, "state.pt"))
    os.rename(tmp, final)
    for name in os.listdir(out_dir):  # older checkpoints, and temporary folders a killed run left behind
        if (name.startswith("ckpt-") and name < os.path.basename(final)) or name.startswith(".tmp-ckpt-"):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def sharded_state(model, optimizer):
    """The DCP state of an FSDP2 run: {"model", "optimizer"}, each rank's shards under full parameter names."""
    from torch.distributed.checkpoint.state_dict import get_state_dict
    weights, moments = get_state_dict(model, optimizer)
    return {"model": weights, "optimizer": moments}


def load_sharded(path, model, optimizer):
    """Put a checkpoint's DCP shards (float32 weights and AdamW moments) into an FSDP2 model and its optimizer; every
    rank reads its own shards."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict
    state = sharded_state(model, optimizer)
    dcp.load(state, checkpoint_id=os.path.join(path, "dcp"))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


STATE_KEYS = ("config", "base", "summary", "skipped_updates", "optimizer", "master", "step", "generators",
              "python_rng", "torch_rng")
RESUME_FREE = ("resume", "overwrite", "out_dir", "threads", "debug", "ckpt_interval", "eval_interval", "eval_only",
               "benchmarks", "bench_limit", "aime_samples", "eval_temperature", "gpqa_file", "wandb_log", "wandb_project",
               "wandb_run_name")  # the settings a resumed run may change


def read_state(path):
    """A checkpoint's state.pt; Unreadable (one line naming the file) when it cannot be read."""
    file = os.path.join(path, "state.pt")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # a cut or overwritten file fails in pickle, zipfile or torch, each with its own error
        first_line = (str(e).splitlines() or [""])[0][:200]
        raise Unreadable(f"{file}: not a readable checkpoint ({type(e).__name__}: {first_line})") from None
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise Unreadable(f"{file}: not a checkpoint of this program (no {', '.join(missing)})")
    return state


def check_state(path, state, settings, base_folder, world, free=RESUME_FREE):
    """Is this checkpoint's state this run's? The same settings (except the keys in free), the same base model and
    the same number of processes; else a UsageError that says which."""
    changed = [f"{k}={state['config'].get(k)!r} (now {v!r})" for k, v in settings.items()
               if k not in free and state["config"].get(k) != v]
    if changed:
        raise UsageError(f"{path}: written with other settings: {', '.join(changed)}; resume with the same ones")
    if state["base"] != base_folder:
        raise UsageError(f"{path}: trained from {state['base']}, this run's base model is {base_folder}")
    if len(state["generators"]) != world:
        raise UsageError(f"{path}: written by {len(state['generators'])} process(es), this run has {world}; "
                         f"resume with the same torchrun --nproc_per_node")


def restore(state, optimizer, master, generator, rank):
    """Put a checkpoint's AdamW state, master weights (into `master`, a bfloat16 run's) and RNG streams back; returns
    (step, skipped_updates)."""
    if state["optimizer"] is not None:  # None: an FSDP2 checkpoint, whose AdamW state load_sharded puts back
        optimizer.load_state_dict(state["optimizer"])
    with torch.no_grad():
        for m, saved in zip(master or [], state["master"] or []):
            m.copy_(saved)
    generator.set_state(state["generators"][rank])
    random.setstate(state["python_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["skipped_updates"]


def metrics_log(out_dir, start):
    """out_dir/metrics.jsonl opened for appending, keeping only the lines of steps before `start` (a resumed run
    drops what came after its checkpoint, and a line cut by the kill)."""
    path, kept = os.path.join(out_dir, "metrics.jsonl"), []
    if start and os.path.isfile(path):
        with open(path) as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    kept += [line] if json.loads(line)["step"] < start else []
    with open(path + ".tmp", "w") as f:
        f.writelines(kept)
    os.replace(path + ".tmp", path)
    return open(path, "a")


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


def finish(out_dir, summary, t_start, model=None, tok_folder=None, name=None):
    """The end of a run, on rank 0: out_dir/model (the model, if given, and tok_folder's tokenizer.json), the summary
    (summary.json, or name) and a last line naming every file in out_dir that this run wrote; then the ranks closed."""
    if rank_world()[0] == 0 and model is not None:  # under FSDP2 the gathered weights, in dtype
        model.save_pretrained(os.path.join(out_dir, "model"))
        shutil.copy2(os.path.join(tok_folder, "tokenizer.json"), os.path.join(out_dir, "model"))
    summary["wall_seconds"] = time.time() - t_start
    if rank_world()[0] == 0:
        write_json(os.path.join(out_dir, name or "summary.json"), summary)
        files = [n + "/" * os.path.isdir(os.path.join(out_dir, n)) for n in run_files(out_dir)]
        print(f"done in {summary['wall_seconds']:.0f}s -> {out_dir}: {', '.join(files)}")
    close()
    return summary
