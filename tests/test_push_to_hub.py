"""push_to_hub.py: staging, validation, secret refusal and the exact Hub calls (no network)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(
    0, str(ROOT)
)  # push_to_hub.py is a top-level script, not in the package
import push_to_hub  # noqa: E402

FAKE_TOKEN = "hf_" + "Zq7" * 12  # shaped like a real token; must never be printed
RUN_RECORD = {
    "train_config": {"arch": "mamba", "preset": "tiny", "learning_rate": 0.003, "max_new_tokens": 512,
                     "init_from": "someone/abc-base", "data": "data/corpus"},
    "metrics": {"val_bpc": 1.2345, "val_loss": 0.8765, "validity_rate": 0.62, "n_samples": 50,
                "steps": 1200, "tokens_per_s": 5321.5},
    "data_manifest": {"sources": ["music21:folk", "hf:someone/abc-tunes"],
                      "counts": {"total": 13007, "splits": {"train": 12100, "validation": 450, "test": 457}},
                      "per_source": {"music21:folk": {"train": 11000, "validation": 400, "test": 410},
                                     "hf:someone/abc-tunes": {"train": 1100, "validation": 50, "test": 47}},
                      "rejects": {"total": 321}},
    "params": 81234,
    "arch": "mamba",
    "preset": "tiny",
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tunes(data_tunes) -> list[str]:
    return data_tunes("generate_tunes.abc")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tunes):
    """A run folder as train.py writes it, with a tiny random Mamba model."""
    from transformers import GenerationConfig, MambaConfig, MambaForCausalLM

    from abcmamba.tokenizer import train_tokenizer

    run = tmp_path_factory.mktemp("runs") / "mamba-tiny"
    final = run / "final"
    tokenizer = train_tokenizer(tunes, vocab_size=400)
    torch.manual_seed(0)
    config = MambaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, state_size=8,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    MambaForCausalLM(config).save_pretrained(final)
    tokenizer.save_pretrained(final)
    GenerationConfig(
        do_sample=True, max_new_tokens=512, eos_token_id=tokenizer.eos_token_id
    ).save_pretrained(final)
    (final / "abcmamba_run.json").write_text(json.dumps(RUN_RECORD))
    (final / "optimizer.pt").write_bytes(b"not for the hub")
    (final / ".env").write_text("HF_TOKEN=" + FAKE_TOKEN)
    (run / "samples.abc").write_text("\n".join(tunes[:4]))
    return run


@pytest.fixture(scope="module")
def staged(run_dir, tmp_path_factory):
    stage_dir = tmp_path_factory.mktemp("stage") / "hub"
    left_out = push_to_hub.stage(
        run_dir, stage_dir, "someone/abc-mamba-tiny", n_samples=2
    )
    return stage_dir, left_out


def test_stage_holds_model_and_nothing_else(staged, tunes):
    from transformers import AutoTokenizer

    stage_dir, left_out = staged
    names = {
        p.relative_to(stage_dir).as_posix() for p in stage_dir.rglob("*") if p.is_file()
    }
    for required in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json",
                     "README.md", "training_manifest.json", "eval_results.json", "samples/tune_1.abc"):  # fmt: skip
        assert required in names
    assert "optimizer.pt" in left_out and ".env" in left_out
    assert not {"optimizer.pt", ".env"} & names
    gc = json.loads((stage_dir / "generation_config.json").read_text())
    eos = AutoTokenizer.from_pretrained(stage_dir).eos_token_id
    assert gc["do_sample"] is True and gc["max_new_tokens"] == 512
    assert gc["eos_token_id"] == eos
    assert (
        json.loads((stage_dir / "eval_results.json").read_text())["metrics"]["val_bpc"]
        == 1.2345
    )
    assert (stage_dir / "samples/tune_1.abc").read_text() == tunes[0]
    assert push_to_hub.check_files(stage_dir) == []


def test_staged_folder_loads_with_pipeline_and_automodel(staged):
    from transformers import AutoModelForCausalLM, pipeline

    stage_dir, _ = staged
    model = AutoModelForCausalLM.from_pretrained(stage_dir)
    assert type(model).__name__ == "MambaForCausalLM"
    out = pipeline("text-generation", model=str(stage_dir))("X:1\n", max_new_tokens=5)
    assert out[0]["generated_text"].startswith("X:1\n")


def test_card_parses_and_holds_the_runs_figures(staged):
    from huggingface_hub import ModelCard

    stage_dir, _ = staged
    card = ModelCard.load(stage_dir / "README.md")
    data = card.data.to_dict()
    assert (
        data["library_name"] == "transformers"
        and data["pipeline_tag"] == "text-generation"
    )
    assert {"music", "abc-notation", "mamba", "symbolic-music"} <= set(data["tags"])
    assert data["base_model"] == "someone/abc-base" and data["datasets"] == [
        "someone/abc-tunes"
    ]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"bpc": 1.2345, "loss": 0.8765, "validity": 0.62}
    text = card.text
    assert f"a {len(_tokens(stage_dir)):,}-token" in text
    for figure in ("1.234", "0.62", "81,234", "11,000", "13,007", "321", "5322"):
        assert figure in text, figure
    assert "$" not in re.sub(
        r"```.*?```", "", text, flags=re.S
    )  # no unfilled placeholder
    assert 'pipeline("text-generation", model="someone/abc-mamba-tiny")' in text
    assert push_to_hub.check_card(stage_dir) == []


def _tokens(stage_dir):
    return json.loads((stage_dir / "tokenizer.json").read_text())["model"]["vocab"]


def test_usage_snippet_runs_as_written(staged, tunes, monkeypatch, tmp_path):
    stage_dir, _ = staged
    snippet = re.search(
        r"```python\n(.*?)```", (stage_dir / "README.md").read_text(), re.S
    ).group(1)
    # the card's repo id, pointed at the staged copy of that repo; fewer tokens for speed
    code = snippet.replace("someone/abc-mamba-tiny", str(stage_dir)).replace(
        "512", "24"
    )
    generate, convert = code.split("score = ")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(generate, "card-snippet", "exec"), scope)
    assert scope["abc"].startswith("X:1\nM:6/8\nL:1/8\nK:D\n")
    # an untrained model may write ABC music21 rejects: convert a real tune instead
    scope["abc"] = tunes[0]
    exec(compile("score = " + convert, "card-snippet", "exec"), scope)
    assert (tmp_path / "tune.mid").read_bytes().startswith(b"MThd")


def test_check_files_refuses_secrets_and_training_state(tmp_path):
    (tmp_path / ".env").write_text("A=1")
    (tmp_path / "id_rsa").write_text("x")
    (tmp_path / "notes.json").write_text(json.dumps({"auth": FAKE_TOKEN}))
    (tmp_path / "key.txt").write_text("-----BEGIN RSA PRIVATE KEY-----\nabc")
    (tmp_path / "optimizer.pt").write_bytes(b"0")
    (tmp_path / "big.bin").write_bytes(b"0" * (11 * 2**20))
    (tmp_path / "tokenizer.json").write_text(
        "{}"
    )  # allowed despite "token" in the name
    problems = "\n".join(push_to_hub.check_files(tmp_path))
    for name in (".env", "id_rsa", "notes.json", "key.txt", "optimizer.pt", "big.bin"):
        assert name in problems
    assert "tokenizer.json" not in problems
    assert FAKE_TOKEN not in problems


def _argv(run_dir, tmp_path, *extra):
    return [str(run_dir), "--repo-id", "someone/abc-mamba-tiny", "--stage-dir", str(tmp_path / "stage"),
            "--n-samples", "1", "--validation-max-new-tokens", "8", *extra]  # fmt: skip


@pytest.fixture
def hub_calls(monkeypatch):
    calls = []

    def record(name):
        def fake(self, *args, **kwargs):
            calls.append((name, kwargs))
            return None

        return fake

    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(huggingface_hub.HfApi, name, record(name))
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    return calls


def test_upload_makes_exactly_the_expected_calls(
    run_dir, tmp_path, hub_calls, capsys, caplog
):
    rc = push_to_hub.main(_argv(run_dir, tmp_path, "--private", "--revision", "dev",
                                "--commit-message", "first model", "--allow-invalid-sample"))  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    stage_dir = tmp_path / "stage"
    assert hub_calls == [
        ("create_repo", {"repo_id": "someone/abc-mamba-tiny", "private": True, "exist_ok": True, "repo_type": "model"}),
        ("create_branch", {"repo_id": "someone/abc-mamba-tiny", "branch": "dev", "exist_ok": True}),
        ("upload_folder", {"repo_id": "someone/abc-mamba-tiny", "folder_path": str(stage_dir),
                           "commit_message": "first model", "revision": "dev",
                           "ignore_patterns": [push_to_hub.STAGE_MARKER]}),
    ]  # fmt: skip
    assert "https://huggingface.co/someone/abc-mamba-tiny/tree/dev" in out.out
    everything = (
        out.out
        + out.err
        + caplog.text
        + "".join(
            p.read_text(errors="ignore") for p in stage_dir.rglob("*") if p.is_file()
        )
    )
    assert FAKE_TOKEN not in everything


def test_strict_validation_refuses_an_invalid_sample(
    run_dir, tmp_path, hub_calls, capsys
):
    rc = push_to_hub.main(_argv(run_dir, tmp_path))
    assert rc == 2
    assert "not a valid tune" in capsys.readouterr().err
    assert hub_calls == []


def test_dry_run_uploads_nothing(run_dir, tmp_path, hub_calls, capsys):
    rc = push_to_hub.main(
        _argv(run_dir, tmp_path, "--dry-run", "--allow-invalid-sample")
    )
    out = capsys.readouterr().out
    assert rc == 0 and hub_calls == []
    assert "would upload" in out and "model.safetensors" in out and "README.md" in out


def test_no_token_exits_2_with_login_hint(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    rc = push_to_hub.main(_argv(run_dir, tmp_path, "--allow-invalid-sample"))
    err = capsys.readouterr().err
    assert rc == 2 and "login" in err and len(err.strip().splitlines()) == 1


def test_hub_failure_exits_1_and_keeps_stage(
    run_dir, tmp_path, hub_calls, monkeypatch, capsys
):
    from huggingface_hub.errors import HfHubHTTPError

    def refuse(self, **kwargs):
        try:  # the HTTP client huggingface_hub builds its responses with
            import httpx2 as httpx
        except ImportError:
            import httpx

        request = httpx.Request(
            "POST", "https://huggingface.co/api/models/someone/abc-mamba-tiny"
        )
        response = httpx.Response(
            403, request=request, json={"error": "You cannot write here"}
        )
        raise HfHubHTTPError(
            f"403 Forbidden: token {FAKE_TOKEN} cannot write", response=response
        )

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", refuse)
    rc = push_to_hub.main(_argv(run_dir, tmp_path, "--allow-invalid-sample"))
    out = capsys.readouterr()
    assert rc == 1
    assert "403 Forbidden" in out.err and "staged folder kept" in out.err
    assert FAKE_TOKEN not in out.out + out.err
    assert (tmp_path / "stage" / "model.safetensors").is_file()


def test_secret_in_run_record_is_refused(run_dir, tmp_path, hub_calls, capsys):
    leaky = tmp_path / "leaky"
    import shutil

    shutil.copytree(run_dir, leaky)
    record = dict(
        RUN_RECORD,
        train_config=dict(
            RUN_RECORD["train_config"], report_url="https://x?t=" + FAKE_TOKEN
        ),
    )
    (leaky / "final" / "abcmamba_run.json").write_text(json.dumps(record))
    rc = push_to_hub.main(_argv(leaky, tmp_path, "--allow-invalid-sample"))
    out = capsys.readouterr()
    assert (
        rc == 2 and "refusing to upload" in out.err and "eval_results.json" in out.err
    )
    assert FAKE_TOKEN not in out.out + out.err and hub_calls == []
