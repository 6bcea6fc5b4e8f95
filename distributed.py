"""
torch.distributed plumbing for ghpo.py under torchrun: each rank samples and trains on its own slice of the step's
prompts, and these few collectives put the step back together. On one process every function is the identity.
Two ways to train: replicated (every rank holds the whole model; sync_grads sums the gradients) or, with fsdp=True,
FSDP2 (shard: each rank holds 1/world of the weights, gradients and AdamW state; full_state gathers the weights for
sampling, evaluation and saving).
"""
import os
import sys

import torch
import torch.distributed as dist


def rank_world():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def all_sum(*xs):
    """The sums over ranks of a few numbers (themselves on one process)."""
    if not dist.is_initialized():
        return xs
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl reduces CUDA tensors only
    t = torch.tensor(xs, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return tuple(t.tolist())


def all_gather(obj):
    """[every rank's obj] in rank order ([obj] on one process)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def even_rows(rows, advantages, pad_row):
    """Under FSDP2 every forward and backward is a collective, so every rank must run as many micro-batches as the
    busiest one: copies of pad_row, a row without a loss token, pad the others, with zero advantages."""
    pad = max(all_gather(len(rows))) - len(rows)
    advantages = torch.zeros(0) if advantages is None else advantages
    return rows + [pad_row] * pad, torch.cat([advantages, advantages.new_zeros(pad)])


def sync_grads(model, params=None):
    """Sum the gradients of params (default: the model's) over ranks. Every rank divides its loss by the global
    normaliser, so the sum is the single-process gradient of the whole batch."""
    if not dist.is_initialized():
        return
    from torch.distributed.fsdp import FSDPModule  # torchrun runs only: 0.6 s to import, so not at the top
    if isinstance(model, FSDPModule):  # FSDP2 has summed them already: reduce-scattered during the backward
        return
    for p in params or model.parameters():
        if p.grad is None:  # a rank with no rows this step still takes part
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)


def shard(model, compute_dtype):
    """FSDP2 (torch.distributed.fsdp.fully_shard) over all ranks: each decoder block is one unit, the root (embeddings,
    final norm, lm_head) another. Parameters stay float32 shards, which AdamW updates directly (they are the master
    weights); each unit is all-gathered in compute_dtype for its forward and backward and freed after it, and its
    gradients are reduce-scattered in float32 during the backward. In place; returns the model."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
    mesh = init_device_mesh("cuda" if dist.get_backend() == "nccl" else "cpu", (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for block in model.model.layers:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)  # the root keeps its weights gathered from forward to backward,
    for unit in model.modules():                     # so the loss can read lm_head.weight after the forward
        if isinstance(unit, FSDPModule):  # each rank's loss is already divided by the global count: sum, not mean
            unit.set_gradient_divide_factor(1.0)
            unit.set_force_sum_reduction_for_comms(True)
    return model


def full_state(model, dtype):
    """{name: full tensor in dtype} of an FSDP2 model, gathered one parameter at a time (a collective: every rank
    calls it and gets the whole model); a tied weight is gathered once and appears under both names."""
    out, done = {}, {}
    with torch.no_grad():
        for name, p in model.state_dict(keep_vars=True).items():  # the parameters themselves: tied ones are one
            if id(p) not in done:
                done[id(p)] = p.to(dtype).full_tensor()
            out[name] = done[id(p)]
    return out


def setup(device):
    """(rank, world size): joins the process group when launched by torchrun, one process per GPU or CPU slice."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return rank_world()


def close():
    """Leave the process group together: a rank that tears its gloo connections down while another is still
    writing the final model can abort at exit ("terminate called without an active exception")."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_process(code):
    """sys.exit(code), except under torchrun: there the process ends without interpreter teardown, where a gloo rank
    that has finished its work (and left the group in close()) can still abort in a C++ thread's destructor
    ("terminate called without an active exception"), turning a complete run into a failed one."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
