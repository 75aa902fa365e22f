"""Tests of train.py, abcmamba.training and abcmamba.modeling: tiny preset, tiny
real corpus, CPU."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset, DatasetDict

from abcmamba import UserError, kernels, modeling
from abcmamba.generate.defaults import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TOP_P
from abcmamba.tokenizer import load_tokenizer, train_tokenizer
from abcmamba.training.config import (
    TrainConfig,
    parse_config,
    resolve_mixed_precision,
)
from abcmamba.training.data import Blocks, group_texts, tokenize_tunes
from abcmamba.training.schedule import (
    CosineSchedule,
    TimeBudget,
    plan_steps,
    short_run_warning,
)
from abcmamba.training.threads import LAUNCHER_MARK, choose_cpu_threads, usable_cores
from abcmamba.training.tracking import resolve_trackers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # train.py is a top-level script, not in the package
import train  # noqa: E402

# tiny, fast and deterministic: stock Mamba with the mambapy scan
FAST = [
    "--preset", "tiny", "--block-size", "32", "--batch-size", "4", "--lr", "1e-2",
    "--warmup-steps", "2", "--max-minutes", "0", "--eval-every", "0",
    "--final-eval-tunes", "6", "--report-to", "none", "--scan-path", "mambapy",
    "--threads", "1",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _env() -> dict[str, str]:
    # one thread: on a shared 2-core box two spinning threads are ~10x slower
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def baseline(corpus, tmp_path_factory) -> Path:
    """An uninterrupted 16-step tiny run (in-process)."""
    run = tmp_path_factory.mktemp("runs") / "a"
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-steps", "16"]
    assert train.main(args + ["--save-every", "4", "--n-samples", "2"]) == 0
    return run


def run_record(run: Path) -> dict:
    return json.loads((run / "final" / train.RUN_FILE).read_text())


# ---------------------------------------------------------------- schedule


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    config = TrainConfig(warmup_steps=4, min_lr_ratio=0.1)
    schedule = CosineSchedule(config, total=100, processes=1)
    assert [schedule(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    # halfway through the cosine (steps 4..100), halfway down to the floor
    assert schedule(52) == pytest.approx(0.55, rel=1e-12)
    assert schedule(28) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert schedule(100) == 0.1 and schedule(500) == 0.1
    # the warm-up is capped at 10% of the run
    short = CosineSchedule(config, total=20, processes=1)
    assert [short(0), short(1), short(2)] == [0.5, 1.0, 1.0]


def test_cosine_schedule_divides_by_the_processes():
    config = TrainConfig(warmup_steps=4, min_lr_ratio=0.1)
    one = CosineSchedule(config, total=100, processes=1)
    two = CosineSchedule(config, total=100, processes=2)
    # Accelerate steps the scheduler once per process per optimizer step
    assert [two(2 * s) for s in (0, 3, 52, 100)] == [one(s) for s in (0, 3, 52, 100)]
    assert two(1) == 0.375  # half-way between optimizer steps 0 and 1


def test_plan_steps_from_epochs_and_max_steps():
    config = TrainConfig(batch_size=4, block_size=32, grad_accum=2, epochs=1.5)
    plan = plan_steps(config, batches=40, processes=2)
    assert (plan.steps_per_epoch, plan.epoch_steps, plan.total) == (10, 15, 15)
    assert plan.tokens_per_step == 4 * 32 * 2 * 2
    config.max_steps = 7
    assert plan_steps(config, batches=40, processes=2).total == 7


def test_time_budget_fits_total_steps_to_the_budget():
    budget = TimeBudget(seconds=100.0, max_total=10**9)
    assert budget.fit(4, elapsed=8.0, total=10**9) is None
    # step 5 after 10 s: 2 s/step, 90 s left -> 45 more steps
    assert budget.fit(5, elapsed=10.0, total=10**9) == 50
    assert budget.state() == {"calibrated": False, "t5": 10.0, "s_per_step": 2.0}
    assert budget.fit(10, elapsed=17.5, total=50) is None
    # steps 5..25 took 30 s: 1.5 s/step, 60 s left -> 40 more steps
    assert budget.fit(25, elapsed=40.0, total=50) == 65
    assert budget.state() == {"calibrated": True, "t5": 10.0, "s_per_step": 1.5}
    assert budget.fit(25, elapsed=40.0, total=65) is None  # calibrated once only


def test_time_budget_bounds():
    # the --epochs bound caps the fit, and a run past its budget still takes a step
    assert TimeBudget(100.0, max_total=30).fit(5, 10.0, total=30 + 1) == 30
    assert TimeBudget(100.0, max_total=10**9).fit(5, 200.0, total=10**9) == 6
    # no budget, or already at the end: nothing to fit
    assert TimeBudget(math.inf, max_total=10**9).fit(5, 10.0, total=10**9) is None
    assert TimeBudget(100.0, max_total=10**9).fit(5, 10.0, total=5) is None


# ---------------------------------------------------------------- packing


def test_group_texts_drops_the_remainder():
    blocks = group_texts([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block_size=4)
    assert blocks.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert group_texts([[1, 2, 3]], block_size=4).shape == (0, 4)
    item = Blocks(blocks)[1]
    assert item["input_ids"].tolist() == item["labels"].tolist() == [5, 6, 7, 8]


def test_each_tune_is_bos_tune_eos(corpus):
    tokenizer = load_tokenizer(corpus / "tokenizer")
    tunes = ["X:1\nK:D\nDEF|\n", "X:2\nK:G\nGAB|\n"]
    for tune, ids in zip(tunes, tokenize_tunes(tunes, tokenizer), strict=True):
        body = tokenizer(tune, add_special_tokens=False)["input_ids"]
        assert ids == [tokenizer.bos_token_id, *body, tokenizer.eos_token_id]
        assert tokenizer.decode(ids, skip_special_tokens=True) == tune


# ---------------------------------------------------------------- runs


@pytest.mark.parametrize("preset", list(modeling.PRESETS))
def test_llama_within_10_percent_of_mamba(preset):
    sizes = {}
    for arch in modeling.ARCHS:
        with torch.device("meta"):
            sizes[arch] = modeling.count_params(
                modeling.build_model(arch, preset, 4096)
            )
    assert abs(sizes["llama"] - sizes["mamba"]) / sizes["mamba"] < 0.10
    assert abs(sizes["mamba2"] - sizes["mamba"]) / sizes["mamba"] < 0.10
    if preset == "tiny":
        assert sizes["mamba"] < 1_000_000


def test_llama_takes_blocks_longer_than_its_preset_limit(corpus):
    from abcmamba.tokenizer import load_tokenizer
    from abcmamba.training.model import build_or_load_model

    tokenizer = load_tokenizer(corpus / "tokenizer")
    limit = modeling.PRESETS["tiny"].max_position_embeddings
    long = TrainConfig(arch="llama", preset="tiny", block_size=2 * limit)
    model = build_or_load_model(long, tokenizer)
    assert model.config.max_position_embeddings == 2 * limit
    short = TrainConfig(arch="llama", preset="tiny", block_size=64)
    assert build_or_load_model(short, tokenizer).config.max_position_embeddings == limit
    ids = torch.randint(0, len(tokenizer), (1, limit + 8))
    assert model(ids).logits.shape == (1, limit + 8, model.config.vocab_size)


def test_loss_falls_and_run_record(baseline):
    record = run_record(baseline)
    metrics = record["metrics"]
    assert metrics["train_loss"] < metrics["first_train_loss"] - 0.5
    assert metrics["steps"] == 16 and metrics["scan_path"] == "mambapy"
    assert metrics["mixed_precision"] == resolve_mixed_precision("auto")
    assert metrics["n_samples"] == 2
    assert record["arch"] == "mamba" and record["params"] < 1_000_000
    assert record["data_manifest"] == {"sources": ["test fixture"]}
    assert record["train_config"]["max_steps"] == 16
    # keep_last=2 and no half-written checkpoint left behind
    names = sorted(p.name for p in (baseline / "checkpoints").iterdir())
    assert names == ["step_0000012", "step_0000016"]


def test_val_bpc_is_bits_per_character_of_the_final_model(baseline, saved_bpc):
    metrics = run_record(baseline)["metrics"]
    again = saved_bpc(baseline)
    assert metrics["val_bpc"] == pytest.approx(again["bpc"], rel=1e-5)
    assert metrics["val_loss"] == pytest.approx(
        again["bits_per_token"] * math.log(2), rel=1e-5
    )
    assert (metrics["val_tokens"], metrics["val_chars"]) == (
        again["tokens"],
        again["characters"],
    )
    # block size 32 < the tunes: the 6 tunes were scored in several windows each
    assert metrics["val_tunes"] == 6 and metrics["val_tokens"] > 6 * 32


def test_final_folder_loads_in_pipeline(baseline, corpus):
    from transformers import pipeline

    final = baseline / "final"
    gen = json.loads((final / "generation_config.json").read_text())
    eos = load_tokenizer(corpus / "tokenizer").eos_token_id
    assert gen["do_sample"] and gen["eos_token_id"] == eos
    assert (gen["top_p"], gen["max_new_tokens"]) == (
        DEFAULT_TOP_P,
        DEFAULT_MAX_NEW_TOKENS,
    )
    pipe = pipeline("text-generation", model=str(final), device="cpu")
    out = pipe("X:1\nM:6/8\n", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert out.startswith("X:1\nM:6/8\n")
    assert pipe.tokenizer("X:1\n")["input_ids"][0] == pipe.tokenizer.bos_token_id


def test_sigkill_and_resume_matches_uninterrupted(baseline, corpus, tmp_path):
    run = tmp_path / "b"
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-steps", "16"]
    args += ["--save-every", "4", "--n-samples", "2"]
    cmd = [sys.executable, str(ROOT / "train.py"), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step_0000004").is_dir():
        assert proc.poll() is None, "train.py ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "final").exists(), "killed too late to test resuming"
    done = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=_env(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    a, b = run_record(baseline)["metrics"], run_record(run)["metrics"]
    assert b["steps"] == a["steps"] == 16
    assert abs(a["train_loss"] - b["train_loss"]) < 1e-4
    assert abs(a["val_loss"] - b["val_loss"]) < 1e-4


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--preset", "huge"], "unknown preset"),
        (["--arch", "rwkv"], "unknown arch"),
        (["--data", "{tmp}/missing"], "does not exist"),
        (["--data", "{tmp}/empty"], "empty"),
    ],
)
def test_bad_input_is_one_line(extra, message, tmp_path, capsys):
    DatasetDict(
        {
            "train": Dataset.from_dict({"abc": []}),
            "validation": Dataset.from_dict({"abc": []}),
        }
    ).save_to_disk(str(tmp_path / "empty"))
    (tmp_path / "empty" / "tokenizer").mkdir()
    capsys.readouterr()  # drop the progress bars of save_to_disk
    args = FAST + ["--data", "{tmp}/missing", "--out", str(tmp_path / "run")] + extra
    rc = train.main([a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("train.py: error:") and message in err[0]


def test_existing_run_needs_overwrite(baseline, corpus, capsys):
    before = (baseline / "final" / "model.safetensors").stat().st_mtime_ns
    rc = train.main(
        FAST + ["--data", str(corpus), "--out", str(baseline), "--max-steps", "1"]
    )
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert (baseline / "final" / "model.safetensors").stat().st_mtime_ns == before


def test_corrupt_checkpoint_on_resume(baseline, corpus, tmp_path, capsys):
    run = tmp_path / "c"
    shutil.copytree(baseline / "checkpoints", run / "checkpoints")
    newest = run / "checkpoints" / "step_0000016"
    (newest / "model.safetensors").write_bytes(b"not a safetensors file")
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-steps", "20"]
    rc = train.main(args + ["--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "corrupt" in err[0]


def test_init_from_with_foreign_tokenizer_is_refused(
    baseline, corpus, tmp_path, capsys
):
    other = tmp_path / "tok"
    train_tokenizer(["X:1\nK:C\nCDEF|GABc|\n"] * 5, vocab_size=300).save_pretrained(
        str(other)
    )
    args = FAST + [
        "--data",
        str(corpus),
        "--out",
        str(tmp_path / "ft"),
        "--max-steps",
        "2",
    ]
    rc = train.main(args + ["--init-from", str(baseline), "--tokenizer", str(other)])
    assert rc == 2 and "--init-from" in capsys.readouterr().err


def test_init_from_fine_tunes(baseline, corpus, tmp_path):
    run = tmp_path / "ft"
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-steps", "2"]
    assert train.main(args + ["--init-from", str(baseline), "--n-samples", "0"]) == 0
    # starting from trained weights, the first loss is already far below ln(512)
    assert run_record(run)["metrics"]["first_train_loss"] < 5.0


class _ReportsCuda(torch.nn.Parameter):
    """A parameter that says it sits on a GPU while its data stays in CPU memory,
    so the ops still run on this GPU-less machine: the device a scan path is
    chosen for and described by (``A_log.device``)."""

    @property
    def device(self) -> torch.device:
        return torch.device("cuda")


def test_scan_path_is_chosen_on_the_device_prepare_puts_the_model_on(
    corpus, tmp_path, monkeypatch, caplog
):
    """A simulated GPU machine: torch.cuda.is_available() once the Accelerator
    exists, and accelerator.prepare moves the model "to cuda" (its mixers' weights
    report cuda). The CPU kernel does not run on a GPU: the log line and the run
    record must name the path a forward pass on cuda takes, not one picked on the
    CPU before the move."""
    from accelerate import Accelerator

    make, prepare, prepared = train.make_accelerator, Accelerator.prepare, []

    def gpu_machine(*args):
        accelerator = make(*args)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        return accelerator

    def prepare_to_cuda(self, *objects):
        out = prepare(self, *objects)
        model = self.unwrap_model(out[0])
        for mixer in kernels.mamba_mixers(model):
            mixer.A_log.__class__ = _ReportsCuda
        prepared.append(model)
        return out

    monkeypatch.setattr(train, "make_accelerator", gpu_machine)
    monkeypatch.setattr(Accelerator, "prepare", prepare_to_cuda)
    run = tmp_path / "gpu"
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-steps", "2"]
    args += ["--scan-path", "auto", "--n-samples", "0", "--save-every", "0"]
    with caplog.at_level(logging.INFO, logger="train"):
        assert train.main(args) == 0
    (model,) = prepared
    runs = kernels.describe_scan_path(model)  # what a forward pass on cuda takes
    assert run_record(run)["metrics"]["scan_path"] == runs
    assert f"scan path: {runs}," in caplog.text
    # without mamba-ssm, auto on a GPU is mambapy: the CPU kernel cannot run there
    assert runs == "mambapy"


def test_final_weights_come_from_get_state_dict_and_samples_from_them(
    corpus, tmp_path, monkeypatch
):
    """As under FSDP, where the main process's own module holds only its shard:
    here accelerator.get_state_dict, called by every process, returns weights
    that differ from the module's (a norm scaled by 1.5). The final folder must
    hold those, as Accelerate's save recipe does, and the tunes in samples.abc
    must come from them, not from the module on the main process."""
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM

    from abcmamba.training.final import generation_config, sample_validity

    get_state_dict, gathered = Accelerator.get_state_dict, {}

    def gather(self, model, unwrap=True):
        state = dict(get_state_dict(self, model, unwrap))
        state["backbone.norm_f.weight"] = state["backbone.norm_f.weight"] * 1.5
        gathered.update(state)
        return state

    monkeypatch.setattr(Accelerator, "get_state_dict", gather)
    run = tmp_path / "gathered"
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-steps", "2"]
    args += ["--n-samples", "2", "--max-new-tokens", "48", "--save-every", "0"]
    assert train.main(args) == 0
    assert gathered, "the final save did not call accelerator.get_state_dict"
    saved = AutoModelForCausalLM.from_pretrained(str(run / "final"))
    for name, tensor in saved.state_dict().items():
        assert torch.equal(tensor, gathered[name]), name
    tokenizer = load_tokenizer(run / "final")
    _, tunes = sample_validity(
        saved, tokenizer, 2, generation_config(tokenizer, 48), seed=42
    )
    # samples.abc: the constrained tunes, a blank line between two
    expected = "\n".join(t.rstrip("\n") + "\n" for t in tunes)
    assert (run / "samples.abc").read_text() == expected


def test_fsdp_on_cpu_processes_is_one_line_error(corpus, tmp_path, monkeypatch, capsys):
    """`accelerate launch --use_fsdp` on CPU processes: Accelerate 1.x either fails
    (sync_module_states on cpu) or silently trains plain DDP; train.py says so."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what --use_fsdp sets
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")  # its default
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = FAST + ["--data", str(corpus), "--out", str(tmp_path / "fsdp")]
    assert train.main(args + ["--max-steps", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train.py: error: FSDP needs GPUs")


def test_help_documents_every_field(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    for name in train.TrainConfig.__dataclass_fields__:
        assert f"--{name}" in out


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(corpus, saved_bpc, tmp_path):
    run = tmp_path / "ddp"
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-steps", "4"]
    # `--cpu --num_processes 2` starts ONE process in Accelerate 1.x (its simple
    # launcher); torchrun via --multi_gpu gives two, which train.py runs on gloo
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    cmd += ["--num_processes", "2"]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    # its own session, so a hung worker is killed with the launcher on timeout
    proc = subprocess.Popen(
        cmd + [str(ROOT / "train.py"), *args, "--n-samples", "0"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr.decode()[-3000:]
    metrics = run_record(run)["metrics"]
    assert metrics["num_processes"] == 2 and metrics["steps"] == 4
    assert metrics["train_loss"] < metrics["first_train_loss"]
    # the two processes scored half the windows each and summed their bits
    assert metrics["val_bpc"] == pytest.approx(saved_bpc(run)["bpc"], rel=1e-5)


@pytest.mark.parametrize(
    "requested,processes,env,wanted",
    [
        (0, 1, {"OMP_NUM_THREADS": "1", LAUNCHER_MARK: "no"}, 8),  # launcher's default
        (0, 2, {"OMP_NUM_THREADS": "1", LAUNCHER_MARK: "no"}, 4),  # shared by 2
        (0, 1, {"OMP_NUM_THREADS": "1"}, 1),  # plain python: the user's choice
        (0, 1, {"OMP_NUM_THREADS": "3", LAUNCHER_MARK: "no"}, 3),
        (0, 1, {}, 8),
        (0, 16, {}, 1),  # never 0
        (2, 1, {"OMP_NUM_THREADS": "1", LAUNCHER_MARK: "no"}, 2),  # --threads wins
        (0, 1, {"OMP_NUM_THREADS": "junk"}, 8),
    ],
)
def test_cpu_threads(requested, processes, env, wanted):
    threads, why = choose_cpu_threads(requested, processes, environ=env, cores=8)
    assert threads == wanted and why


# three blocks a round, 4 MiB each in the first and 1 MiB more every round:
# glibc's own thresholds mmap each round's blocks afresh (each is larger than
# any freed before), kept ones let the heap grow once to about 39 MiB
_CHURN = """
import resource, sys
import torch
from abcmamba.training.malloc import keep_freed_memory
if sys.argv[1] == "kept":
    print(keep_freed_memory(), file=sys.stderr)
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for mib in range(4, 14):
    blocks = [torch.ones(mib * 2**18) for _ in range(3)]
    del blocks
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
@pytest.mark.parametrize(
    "setting,env,faults",
    [
        ("glibc", {}, "every round"),
        ("kept", {}, "heap growth"),
        # the user's choice wins: every block mmapped
        ("kept", {"MALLOC_MMAP_THRESHOLD_": "131072"}, "every round"),
    ],
)
def test_freed_blocks_are_kept_for_the_next_step(setting, env, faults):
    """train.py raises glibc's thresholds: a step's freed tensors are reused,
    not faulted in again (20-40k page faults per step of the small preset)."""
    run = subprocess.run(
        [sys.executable, "-c", _CHURN, setting],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env),
        cwd=ROOT,
        check=True,
    )
    count = int(run.stdout.split()[-1])
    # every round afresh: 3 x (4 + ... + 13) MiB = 65,280 pages; a heap that
    # grows to 39 MiB (9,984 pages) measured 14-20k with fragmentation
    assert count > 60_000 if faults == "every round" else count < 30_000, run.stderr
    kept = setting == "kept" and not env
    assert ("kept for the next step" in run.stderr) == kept, run.stderr


def test_accelerate_launch_default_does_not_pin_training_to_one_thread(
    corpus, tmp_path, monkeypatch, caplog
):
    """`accelerate launch train.py` hands the script OMP_NUM_THREADS=1: the run
    still uses the usable cores (it trained at half speed on 2 cores)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(LAUNCHER_MARK, "no")
    args = FAST[: FAST.index("--threads")] + FAST[FAST.index("--threads") + 2 :]
    args += ["--data", str(corpus), "--out", str(tmp_path / "t"), "--max-steps", "1"]
    args += ["--n-samples", "0", "--save-every", "0", "--final-eval-tunes", "1"]
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="train"):
            assert train.main(args) == 0
        assert torch.get_num_threads() == usable_cores()
    finally:
        torch.set_num_threads(before)
    assert f"CPU threads per process: {usable_cores()}" in caplog.text


def test_time_budget_stops_training(corpus, tmp_path):
    run = tmp_path / "budget"
    # a later --max-minutes overrides the one in FAST
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-minutes", "0.05"]
    assert (
        train.main(args + ["--epochs", "50", "--n-samples", "0", "--save-every", "0"])
        == 0
    )
    metrics = run_record(run)["metrics"]
    # 50 epochs are ~4500 steps: only the 3-second budget can have stopped it
    assert 1 <= metrics["steps"] < 4000
    assert metrics["train_seconds"] < 3 + 10


# ---------------------------------------------------------------- short runs


def test_max_steps_alone_has_no_time_budget():
    assert parse_config(["--report-to", "none"]).max_minutes == 30
    # --max-steps is the same model on any machine: no default budget cuts it
    assert parse_config(["--max-steps", "5", "--report-to", "none"]).max_minutes == 0
    given = parse_config(
        ["--max-steps", "5", "--max-minutes", "2", "--report-to", "none"]
    )
    assert given.max_minutes == 2


def test_short_run_warning_names_steps_and_speed():
    state = {"step": 264, "total_steps": 1244, "train_seconds": 1800.0}
    assert short_run_warning({**state, "step": 1244}, minutes=30) is None
    assert short_run_warning({**state, "step": 700}, minutes=30) is None
    assert short_run_warning(state, minutes=0) is None  # --max-steps runs end on plan
    message = short_run_warning({**state, "s_per_step": 1.45}, minutes=30)
    assert "264 of 1244 planned optimizer steps (21%)" in message
    assert "slower than calibrated (6.82 s/step against 1.45 s/step" in message
    assert "--max-steps 1244" in message
    assert "before the speed was calibrated" in short_run_warning(state, minutes=30)


def test_run_that_got_under_half_its_steps_warns_and_records_it(
    corpus, tmp_path, monkeypatch, caplog
):
    """A mocked clock: 1 s/step while the budget calibrates (steps 5..25), then
    the machine gets 20 times slower; the 2-minute budget planned 120 steps."""
    calls = 0

    def clock() -> float:
        nonlocal calls
        calls += 1  # two calls per optimizer step, one before the loop
        fast = min(calls, 53)
        return 0.5 * fast + 10.0 * (calls - fast)

    monkeypatch.setattr(train, "time", SimpleNamespace(time=clock))
    run = tmp_path / "short"
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-minutes", "2"]
    args += ["--epochs", "50", "--n-samples", "0", "--save-every", "0"]
    with caplog.at_level(logging.WARNING):
        assert train.main(args) == 0
    metrics = run_record(run)["metrics"]
    assert metrics["planned_steps"] == 120
    assert 26 < metrics["steps"] < 60
    warning = metrics["short_run_warning"]
    assert f"{metrics['steps']} of 120 planned optimizer steps" in warning
    assert "slower than calibrated" in warning and "1.00 s/step" in warning
    assert "--max-steps 120" in warning
    last = [r for r in caplog.records if r.levelno == logging.WARNING][-1]
    assert last.getMessage() == f"SHORT RUN: {warning}"


def test_run_on_plan_records_no_warning(baseline):
    metrics = run_record(baseline)["metrics"]
    assert metrics["short_run_warning"] is None and metrics["planned_steps"] == 16


# ---------------------------------------------------------------- trackers


@pytest.mark.parametrize(
    "report_to, message",
    [
        ("wandb", "the wandb package is not installed; pip install wandb"),
        ("tensorboard,comet_ml", "the comet-ml package is not installed"),
        ("neptune", "unknown --report-to 'neptune'"),
    ],
)
def test_missing_tracker_is_one_line_error(
    report_to, message, corpus, tmp_path, monkeypatch, capsys
):
    # whether or not wandb / comet_ml are installed here, Accelerate and
    # train.py must both see them missing
    find_spec = importlib.util.find_spec
    hidden = {"wandb", "comet_ml"}
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in hidden else find_spec(name, *a),
    )
    run = tmp_path / "run"
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-steps", "2"]
    rc = train.main(args + ["--report-to", report_to])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("train.py: error:") and message in err[0]
    assert not run.exists()  # refused before anything started


def test_mlflow_without_its_store_libraries_is_an_error(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="pip install -e '.[tracking]'")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sqlalchemy" else find_spec(name, *a),
    )
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UserError, match="local store needs sqlalchemy; pip install"):
        resolve_trackers("tensorboard,mlflow")
    with pytest.raises(UserError, match="needs sqlalchemy"):
        resolve_trackers("mlflow", tracking_dir=str(tmp_path))
    # a tracking server needs no local database
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_trackers("tensorboard,mlflow") == ["tensorboard", "mlflow"]


def test_tensorboard_logs_the_loss(corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    run = tmp_path / "tb"
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-steps", "3"]
    args += ["--log-every", "1", "--n-samples", "0", "--save-every", "0"]
    assert train.main(args + ["--report-to", "tensorboard"]) == 0
    # the scalars' events file; the hyperparameters have their own subfolder
    logs = EventAccumulator(str(run / "logs" / "abcmamba"))
    logs.Reload()
    assert [e.step for e in logs.Scalars("train/loss")] == [1, 2, 3]
    bpc = logs.Scalars("final/val_bpc")[0].value
    assert bpc == pytest.approx(run_record(run)["metrics"]["val_bpc"], rel=1e-6)


def test_mlflow_logs_metrics_and_params_to_a_local_store(corpus, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="pip install -e '.[tracking]'")
    pytest.importorskip("sqlalchemy", reason="pip install -e '.[tracking]'")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder
    run = tmp_path / "ml"
    args = FAST + ["--data", str(corpus), "--out", str(run), "--max-steps", "4"]
    args += ["--log-every", "1", "--n-samples", "0", "--save-every", "2"]
    assert train.main(args + ["--report-to", "mlflow"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml"]
    metrics = run_record(run)["metrics"]

    store = run / "mlflow" / "mlflow.db"
    assert store.is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("abcmamba")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "ml" and logged.info.status == "FINISHED"
    params = logged.data.params
    assert params["preset"] == "tiny" and params["max_steps"] == "4"
    assert params["report_to"] == "mlflow" and params["block_size"] == "32"
    history = client.get_metric_history(logged.info.run_id, "train/loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert history[-1].value == pytest.approx(metrics["train_loss"], rel=1e-6)
    final = logged.data.metrics
    assert final["final/val_bpc"] == pytest.approx(metrics["val_bpc"], rel=1e-6)
    assert final["final/steps"] == 4

    # --resume from step 2 logs steps 3 and 4 again, into the same MLflow run
    shutil.rmtree(run / "checkpoints" / "step_0000004")
    assert train.main(args + ["--report-to", "mlflow", "--resume"]) == 0
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == logged.info.run_id
    assert again.data.params["resume"] == "False"  # the first start's parameters
    history = client.get_metric_history(logged.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 3, 4, 4]


@pytest.mark.parametrize(
    "caps, wanted",
    [
        ({"avx512_bf16": True, "amx_bf16": False}, "bf16"),
        ({"avx512_bf16": False, "amx_bf16": True}, "bf16"),
        ({"avx512_bf16": False, "amx_bf16": False, "avx512_f": True}, "no"),
    ],
)
def test_auto_precision_on_cpu_is_bf16_only_where_the_cpu_has_it(
    monkeypatch, caps, wanted
):
    """auto: bf16 autocast where the CPU multiplies bf16 natively (there it
    trained 1.4x faster to the same val bpc), fp32 where bf16 is emulated."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    assert resolve_mixed_precision("auto") == wanted
    assert resolve_mixed_precision("no") == "no"
    assert resolve_mixed_precision("bf16") == "bf16"
