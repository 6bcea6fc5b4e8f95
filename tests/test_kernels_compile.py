"""Every Triton kernel the CUDA launchers issue, compiled ahead of time for A100 (sm_80) and H100 (sm_90) on a machine
without a GPU, at real models' head sizes (H 896, 1536, 3584 for Qwen2.5 0.5B, 1.5B, 7B; V 151,936), in bfloat16 and
float32, over row counts whose chunks start at every alignment the chunk loop produces.

The launchers themselves run, on meta tensors (shapes, dtypes and the byte offset of every slice, no data), with each
kernel's launch recorded instead of run. Triton's own binder then specialises each recorded launch as a launch on a GPU
would (argument types, constexprs, num_warps / num_stages, 16-byte alignment of pointers and divisibility of integers:
a meta tensor's data_ptr is its byte offset, and CUDA allocations are aligned far beyond 16 bytes), triton.compile
builds every distinct specialisation for the target, and the -v log of the ptxas that compile ran (the one in triton's
wheel) gives registers and spills. A variant fails on a compile error, on more than 1 KB of spills (stores + loads,
per thread), or on more shared memory than the card gives one block. Each target compiles in a subprocess of its own,
with TRITON_INTERPRET unset and an empty kernel cache of its own (so every variant really compiles; none is kept).

    python tests/test_kernels_compile.py 80 90   # the table: registers, spills and shared memory of every variant
"""
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}  # bytes of shared memory one block may opt in to: A100, H100
SPILL_LIMIT = 1024  # bytes of spill stores + loads per thread
HIDDEN = (896, 1536, 3584)  # Qwen2.5-0.5B, 1.5B, 7B
VOCAB = 151936
# rows: a thousand (chunks of 441 start at 441 and 882: int64 and float32 slices lose 16-byte alignment), an 8192-token
# micro-batch (19 chunks, every start offset mod 4), a 32-row last chunk (row count divisible by 16), a single row (1 is
# a constexpr to triton)
ROWS = (1000, 8192, 473, 1)


@pytest.fixture(scope="module")
def compiles(tmp_path_factory):
    """Both targets' subprocesses, started together (each compiles on a core of its own where there are two)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = {}
    for capability in SHARED_LIMIT:
        folder = tmp_path_factory.mktemp(f"sm{capability}")
        with open(folder / "stdout", "w") as out, open(folder / "stderr", "w") as err:
            procs[capability] = folder, subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), str(capability)], env=env, stdout=out, stderr=err)
    yield procs
    for _, proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("capability", list(SHARED_LIMIT))
def test_every_launched_kernel_compiles_without_spills(capability, compiles):
    folder, proc = compiles[capability]
    proc.wait(timeout=400)
    stdout, stderr = (folder / "stdout").read_text(), (folder / "stderr").read_text()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    variants = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    kernels = {v["kernel"] for v in variants}
    assert kernels == set(launched_kernel_names()), kernels  # every kernel the modules define is launched
    for dtype in ("bfloat16", "float32"):  # each dot kernel compiled for each operand dtype
        assert {"_logprob_kernel", "_logits_kernel"} <= {v["kernel"] for v in variants if dtype in v["dtypes"]}
    for v in variants:
        line = table_line(v)
        assert v["spill_bytes"] <= SPILL_LIMIT, line
        assert v["shared_bytes"] <= SHARED_LIMIT[capability], line
        assert 0 < v["registers"] <= 255, line


def launched_kernel_names():
    """The @triton.jit functions of kernels/ whose names start with '_' (the launched kernels; the others are device
    functions they call), read from the source so that a kernel added there must also be launched here."""
    names = []
    for module in ("logprob", "loss"):
        with open(os.path.join(ROOT, "kernels", f"{module}.py")) as f:
            names += re.findall(r"@triton\.jit\ndef (_\w+)\(", f.read())
    return names

# -----------------------------------------------------------------------------
# the subprocess: run the launchers on meta tensors, specialise and compile what they launch


def record_launches(kernels):
    """Replace each kernel's run (what kernel[grid](...) calls) by a recorder: returns the list it appends
    (kernel, args, kwargs) to."""
    launches = []
    for k in kernels:
        k.run = lambda *args, grid, warmup, _k=k, **kwargs: launches.append((_k, args, kwargs))
    return launches


def drive_launchers(rows, hidden_sizes):
    """Every launch the CUDA paths of fused_logprobs and policy_loss issue at these shapes, in bfloat16 and float32,
    with and without old and reference log-probs. Yields (kernel, args, kwargs, label)."""
    import torch
    from kernels import logprob, loss
    kernels = [getattr(m, name) for m in (logprob, loss) for name in launched_kernel_names() if hasattr(m, name)]
    launches = record_launches(kernels)
    meta = lambda *shape, dtype=torch.float32: torch.empty(*shape, dtype=dtype, device="meta")
    for dtype in (torch.bfloat16, torch.float32):
        for H in hidden_sizes:
            weight = meta(VOCAB, H, dtype=dtype)
            for M in rows:  # fresh tensors, as policy_loss's gather of completion tokens and the model's output are
                hidden, targets = meta(M, H, dtype=dtype), meta(M, dtype=torch.int64)
                label = f"{str(dtype)[6:]} H={H} M={M}"
                logprob.logprobs_triton(hidden, weight, targets, 0.7, return_entropy=True)
                for old, ref in ((None, None), (meta(M), None), (None, meta(M)), (meta(M), meta(M))):
                    loss.fused_forward(hidden, weight, targets, meta(M), meta(M), old, ref, 0.2, 0.28, 0.04, 0.7,
                                       use_triton=True)
                for k, args, kwargs in launches:
                    yield k, args, kwargs, label
                launches.clear()


def ptxas_usage(log):
    """Registers, spill bytes (stores + loads) and static shared memory from a `ptxas -v` log of one kernel."""
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    smem = re.search(r"(\d+) bytes smem", log)
    if regs is None or spills is None:
        raise RuntimeError(f"no register / spill counts in the ptxas log:\n{log}")
    return int(regs.group(1)), int(spills.group(1)) + int(spills.group(2)), int(smem.group(1)) if smem else 0


def compile_variants(capability, rows=ROWS, hidden_sizes=HIDDEN):
    """Specialise every recorded launch with triton's binder for cuda:capability, compile each distinct variant once;
    yields one dict per variant."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature
    target = GPUTarget("cuda", capability, 32)
    backend = make_backend(target)
    binders, variants = {}, {}
    for kernel, args, kwargs, label in drive_launchers(rows, hidden_sizes):
        if kernel not in binders:
            binders[kernel] = create_function_from_signature(kernel.signature, kernel.params, backend)
        bound, specialization, options = binders[kernel](*args, **kwargs)
        options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
        key = (kernel.__name__, str(signature), str(constexprs), str(attrs), str(options))
        if key in variants:
            variants[key]["dtypes"].add(label.split()[0])
            variants[key]["shapes"].append(label)
            continue
        t0 = time.perf_counter()
        log = io.StringIO()
        with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG prints the log of the ptxas it runs
            compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                                      options=options.__dict__)
        registers, spill_bytes, static_smem = ptxas_usage(log.getvalue())
        names = list(kernel.arg_names)
        variants[key] = dict(
            kernel=kernel.__name__, capability=capability, dtypes={label.split()[0]}, shapes=[label],
            constexprs={names[k[0]]: v for k, v in constexprs.items()}, num_warps=options.num_warps,
            num_stages=options.num_stages, pointers={n: t for n, t in signature.items() if t.startswith("*")},
            aligned=[names[k[0]] for k, a in attrs.items() if a], registers=registers, spill_bytes=spill_bytes,
            shared_bytes=compiled.metadata.shared + static_smem, seconds=round(time.perf_counter() - t0, 2))
    for v in variants.values():
        yield dict(v, dtypes=sorted(v["dtypes"]))


def table_line(v):
    c = " ".join(f"{k}={x}" for k, x in v["constexprs"].items())
    return (f"sm_{v['capability']} {v['kernel']:<26} {'/'.join(v['dtypes']):<17} {c} warps={v['num_warps']} "
            f"stages={v['num_stages']}: {v['registers']} registers, {v['spill_bytes']} B spilled, "
            f"{v['shared_bytes']} B shared ({len(v['shapes'])} launches, first {v['shapes'][0]}; "
            f"{len(v['aligned'])} args 16-aligned; {v['seconds']} s)")


if __name__ == "__main__":  # python tests/test_kernels_compile.py CAPABILITY...: a JSON line (stdout) and a table line
    # (stderr) per variant. Compiled kernels, not the interpreter; triton prints each ptxas log; an empty cache.
    os.environ.pop("TRITON_INTERPRET", None)  # before triton is imported (kernels imports it)
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    sys.path.insert(0, ROOT)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRITON_CACHE_DIR"] = cache
        for capability in map(int, sys.argv[1:]):
            for variant in compile_variants(capability):
                print(json.dumps(variant))
                print(table_line(variant), file=sys.stderr, flush=True)
