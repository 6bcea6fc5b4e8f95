"""
Checkpoints of a ghpo.py run: out_dir/ckpt-NNNNNN after NNNNNN RL steps, filled in a temporary folder and renamed
into place, so a kill at any moment leaves the previous checkpoint or the new one, never a partial one. A killed run
started again with --resume=True continues from the latest one: weights, AdamW moments, every RNG stream and the
step (which fixes the data position and the learning rate), with metrics.jsonl cut back to that step.
"""
import contextlib
import json
import os
import random
import shutil
import tempfile

import torch

from configurator import UsageError
from distributed import all_gather, rank_world


def latest(out_dir):
    names = sorted(n for n in os.listdir(out_dir) if n.startswith("ckpt-")) if os.path.isdir(out_dir) else []
    return os.path.join(out_dir, names[-1]) if names else None


def save(out_dir, step, model, optimizer, generator, state, tok_folder, full=None):
    """Weights (and the float32 master weights of a bfloat16 run), AdamW moments, every rank's sampling generator, the
    python and torch RNGs, the step and `state` (the run's settings and base model). Called on every rank, written by
    rank 0; older checkpoints are removed once the new one is in place. An FSDP2 run passes `full`, the gathered
    plain copy of its model (written as model/), and every rank adds its own shards of the float32 weights and AdamW
    moments to the same temporary folder with torch.distributed.checkpoint (DCP, dcp/)."""
    generators = all_gather(generator.get_state().cpu())
    final = os.path.join(out_dir, f"ckpt-{step:06d}")
    rank = rank_world()[0]
    if all_gather(os.path.isdir(final))[0]:  # rank 0's answer, so that every rank takes the same way
        return
    tmp = all_gather(tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=out_dir) if rank == 0 else None)[0]
    if full is not None:
        import torch.distributed.checkpoint as dcp
        dcp.save(sharded_state(model, optimizer), checkpoint_id=os.path.join(tmp, "dcp"))  # returns once all wrote
    if rank:
        return
    (model if full is None else full).save_pretrained(os.path.join(tmp, "model"))
    shutil.copy2(os.path.join(tok_folder, "tokenizer.json"), os.path.join(tmp, "model"))  # loadable as init_from
    if full is None:
        master = optimizer.param_groups[0]["params"]
        master = None if master[0] is next(model.parameters()) else [m.detach().cpu() for m in master]
        weights = {"optimizer": optimizer.state_dict(), "master": master}
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


RESUME_FREE = ("resume", "out_dir", "threads", "debug", "ckpt_interval", "eval_interval", "probe_per_level",
               "eval_only", "benchmarks", "bench_limit", "aime_samples", "eval_temperature",
               "gpqa_file")  # the settings a resumed run may change


def load(path, settings, base_folder, world, free=RESUME_FREE):
    """The state of a checkpoint, after checking it belongs to this run: the same settings (except the keys in
    free), the same base model and the same number of processes."""
    state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=True)
    changed = [f"{k}={state['config'].get(k)!r} (now {v!r})" for k, v in settings.items()
               if k not in free and state["config"].get(k) != v]
    if changed:
        raise UsageError(f"{path}: written with other settings: {', '.join(changed)}; resume with the same ones")
    if state["base"] != base_folder:
        raise UsageError(f"{path}: trained from {state['base']}, this run's base model is {base_folder}")
    if len(state["generators"]) != world:
        raise UsageError(f"{path}: written by {len(state['generators'])} process(es), this run has {world}; "
                         f"resume with the same torchrun --nproc_per_node")
    return state


def restore(state, optimizer, weights, generator, rank):
    """Put a checkpoint's AdamW state, master weights and RNG streams back; returns (step, skipped_updates)."""
    if state["optimizer"] is not None:  # None: an FSDP2 checkpoint, whose AdamW state load_sharded puts back
        optimizer.load_state_dict(state["optimizer"])
    with torch.no_grad():
        for m, saved in zip(weights, state["master"] or []):
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
