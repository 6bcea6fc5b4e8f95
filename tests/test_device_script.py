"""bench/device.sh, the CPU-side parts: its steps and their commands, argument errors, the refusal without a GPU, and
the RESULTS.md section it writes from a run's logs (the GPU steps themselves wait for a device)."""
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "bench", "device.sh")


def run(*args, env=None):
    return subprocess.run(["bash", SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})))


def test_list_names_each_step_with_its_limit_and_command():
    proc = run("--list")
    assert proc.returncode == 0, proc.stderr
    steps = [line.split("\t") for line in proc.stdout.strip().split("\n")]
    assert [s[0] for s in steps] == ["kernels", "kernel_bench", "decode", "engine_graphs", "eval_call", "memory",
                                     "real_shape"]
    cmd = {s[0]: s[2] for s in steps}
    assert cmd["kernels"].startswith("env -u TRITON_INTERPRET ") and "tests/test_kernels.py" in cmd["kernels"]
    for name in ("kernel_bench", "decode", "engine_graphs", "eval_call", "memory", "real_shape"):
        assert "--device cuda" in cmd[name]
    for name, text in cmd.items():  # each command names a file that exists
        assert any(os.path.isfile(os.path.join(REPO, w)) for w in text.split()), name


def test_dry_run_lists_every_step_the_files_to_carry_and_two_calls_within_the_device_limit():
    """Every step once, the tokenizer folder to carry, and the steps split into calls of at most 600 s of limits
    each (the device tool's limit a command) that cover every step once."""
    listed = {line.split("\t")[0]: int(line.split("\t")[1]) for line in run("--list").stdout.strip().split("\n")}
    proc = run("--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().split("\n")
    assert [line.split(" > out/device/")[1] for line in lines[:len(listed)]] == [f"{s}.log" for s in listed]
    carry = "out/real_shape/tokenizer"
    assert lines[len(listed)] == f"carry: {carry} (python data/qwen_tokenizer.py {carry})"
    calls = [line.split("--only ")[1].split("  #")[0].split(",") for line in lines[len(listed) + 1:]]
    assert len(calls) == 2 and sorted(s for c in calls for s in c) == sorted(listed)
    for call, line in zip(calls, lines[len(listed) + 1:]):
        assert sum(listed[s] for s in call) <= 600 and line.endswith(f"at most {sum(listed[s] for s in call)} s")


def test_dry_run_and_only():
    proc = run("--dry-run", "--only", "decode,kernels", "--logs", "/tmp/x")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().split("\n")[:2]
    assert lines[0].startswith("timeout 150 python bench/decode.py")
    assert lines[0].endswith("> /tmp/x/decode.log") and lines[1].startswith("timeout 90 env -u TRITON_INTERPRET")


@pytest.mark.parametrize("args, message", [(("--bogus",), "unknown argument '--bogus'"),
                                           (("--only", "decode,nope"), "--only: unknown step 'nope'"),
                                           (("--only",), "--only needs"),
                                           (("--write-results", "/nonexistent"), "device.txt: not found")])
def test_bad_arguments_are_one_line_errors(args, message):
    proc = run(*args)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1


def test_refuses_to_run_without_a_gpu():
    proc = run("--only", "decode", env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2 and "no CUDA device visible" in proc.stderr


def test_write_results_appends_a_section_naming_the_device(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "device.txt").write_text("NVIDIA H200\ntorch 2.13.0, CUDA 12.8\n")
    (logs / "kernels.log").write_text("....\n========= 19 passed in 31.20s =========\n")
    (logs / "kernel_bench.log").write_text("bf16 logp ...\nkernels: bf16_logp=0.012 fp32_logp=1.19\n")
    (logs / "decode.log").write_text("128 rows ...\ndecode: graph_vs_eager_128=4.10 roofline_256=0.610 ok=1\n")
    (logs / "memory.log").write_text("Traceback ...\nRuntimeError: out of memory\n")
    for step, rc, s in (("kernels", 0, 33), ("kernel_bench", 0, 50), ("decode", 0, 40), ("memory", 1, 12)):
        (logs / f"{step}.rc").write_text(f"{rc}\n")
        (logs / f"{step}.s").write_text(f"{s}\n")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n")
    proc = run("--results", str(results), "--write-results", str(logs))
    assert proc.returncode == 0, proc.stderr
    text = results.read_text()
    assert text.startswith("# Benchmark results\n") and "## GPU: NVIDIA H200" in text and "CUDA 12.8" in text
    rows = [line for line in text.split("\n") if line.startswith("| `")]
    assert len(rows) == 4  # real_shape did not run: no row
    assert "`19 passed in 31.20s`" in rows[0] and rows[0].endswith("| 0 | 33 |")
    assert "`kernels: bf16_logp=0.012 fp32_logp=1.19`" in rows[1]  # kernel_bench's line is named kernels
    assert "`decode: graph_vs_eager_128=4.10 roofline_256=0.610 ok=1`" in rows[2]
    assert "| `` | 1 | 12 |" in rows[3]  # a failed step: no figure, its exit status


@pytest.mark.parametrize("bench, args", [
    ("decode", ["--device", "cpu", "--shape", "tiny", "--dtype", "float32", "--rows", "16", "--new", "12",
                "--eager-new", "12"]),
    ("memory", ["--device", "cpu", "--shape", "tiny", "--new", "8", "--prompt-len", "12"]),
    ("engine", ["graphs", "--device", "cpu", "--shape", "tiny", "--rows", "32", "--new", "24"]),
    ("engine", ["eval", "--device", "cpu", "--shape", "tiny", "--new", "4"]),
])
def test_device_benches_run_on_the_cpu(bench, args, request):
    """The GPU steps' scripts in their CPU smoke mode (a tiny model): they run end to end and print their figure line,
    so a change elsewhere cannot break them unseen until the next GPU."""
    if "eval" in args:  # OlympiadBench's prompts by the real tokenizer
        args = args + ["--tokenizer", request.getfixturevalue("qwen_tokenizer_file")]
    proc = subprocess.run(["python", os.path.join(REPO, "bench", f"{bench}.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    last = proc.stdout.strip().split("\n")[-1]
    name = {"graphs": "engine_graphs", "eval": "eval_call"}.get(args[0], bench)
    assert last.startswith(f"{name}: ") and last.endswith("ok=1"), last
