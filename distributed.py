"""
torch.distributed plumbing for ghpo.py under torchrun: each rank samples and trains on its own slice of the step's
prompts, and these few collectives put the step back together. On one process every function is the identity.
"""
import os

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


def sync_grads(model):
    """Sum the gradients over ranks. Every rank divides its loss by the global normaliser, so the sum is the
    single-process gradient of the whole batch."""
    if not dist.is_initialized():
        return
    for p in model.parameters():
        if p.grad is None:  # a rank with no rows this step still takes part
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)


def setup(device):
    """(rank, world size): joins the process group when launched by torchrun, one process per GPU or CPU slice."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return rank_world()


def close():
    if dist.is_initialized():
        dist.destroy_process_group()
