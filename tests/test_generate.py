"""abcmamba generate: conditioning, batched cached sampling, retries, CLI outputs."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from abcmamba import UserError
from abcmamba import generate as gen
from abcmamba.compat import cache_kwargs, output_cache
from abcmamba.generate import sampling
from abcmamba.kernels import decode

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tunes(data_tunes) -> list[str]:
    return data_tunes("generate_tunes.abc")


@pytest.fixture(scope="module")
def tokenizer(tunes):
    from abcmamba.tokenizer import train_tokenizer

    return train_tokenizer(tunes, vocab_size=400)


def _tiny(arch: str, tokenizer, seed: int = 0):
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MambaConfig,
        MambaForCausalLM,
    )

    torch.manual_seed(seed)
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch == "xlstm":
        from abcmamba.modeling import build_model

        return build_model("xlstm", "tiny", len(tokenizer), **special).eval()
    if arch == "mamba":
        config = MambaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            state_size=8,
            **special,
        )
        return MambaForCausalLM(config).eval()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, **special,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("tiny_mamba")
    _tiny("mamba", tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ---------------------------------------------------------------- conditioning


def test_field_conditions_canonical_and_errors():
    got = gen.field_conditions(
        key="E minor", meter="6/8", rhythm=" slip  jig ", unit="1/16"
    )
    assert got == {"R": "slip jig", "M": "6/8", "L": "1/16", "K": "Em"}
    assert list(got) == ["R", "M", "L", "K"]  # canonical header order
    with pytest.raises(UserError, match="accepted:.*Ador"):
        gen.field_conditions(key="H# major")
    with pytest.raises(UserError, match="accepted:.*6/8"):
        gen.field_conditions(meter="six-eight")
    with pytest.raises(UserError, match="1/8"):
        gen.field_conditions(unit="eighth")


def test_build_prompt_prefix_only_when_nothing_optional_precedes():
    # C and R lead the header: they become the prompt
    text, pending = gen.build_prompt({"C": "bach", "R": "jig", "K": "D"})
    assert text == "X:1\nC:bach\nR:jig\n" and pending == [("K", "D")]
    # M may be preceded by optional C:/R: lines: written when reached instead
    text, pending = gen.build_prompt({"M": "6/8"})
    assert text == "X:1\n" and pending == [("M", "6/8")]
    # free text (composer, rhythm) always joins the prompt, even past an optional C:
    text, pending = gen.build_prompt({"R": "jig", "K": "D"})
    assert text == "X:1\nR:jig\n" and pending == [("K", "D")]
    # a raw prompt keeps its fields; conflicts and impossible orders are errors
    text, pending = gen.build_prompt({"M": "6/8"}, "X:1\nR:jig\n")
    assert text == "X:1\nR:jig\nM:6/8\n" and pending == []
    with pytest.raises(UserError, match="M:3/4"):
        gen.build_prompt({"M": "6/8"}, "X:1\nM:3/4\n")
    with pytest.raises(UserError, match="after the prompt"):
        gen.build_prompt({"R": "jig"}, "X:1\nM:6/8\nK:D\n|:A")


def _run_guard(prompt, pending, pieces):
    guard = gen.HeaderGuard(prompt, pending, {f for f, _ in pending})
    text = prompt
    for piece in pieces:
        replacement = guard.check(piece)
        text += piece if replacement is None else replacement
    return text, guard


def test_guard_injects_field_when_model_moves_past_it():
    # the model writes an optional R:, then starts L: before the pending M: -> its L:
    # line is replaced by M:, and the model (here scripted) writes L: again after it
    pieces = ["R:reel\n", "L:1/8\n", "L:1/8\n", "K:D\n", "|:A"]
    text, guard = _run_guard("X:1\n", [("M", "6/8")], pieces)
    assert text == "X:1\nR:reel\nM:6/8\nL:1/8\nK:D\n|:A"
    assert not guard.pending and not guard.in_header


def test_guard_replaces_model_key_and_handles_pieces_across_lines():
    # pieces that span a newline, and a model-written K: replaced by the requested one
    text, _ = _run_guard(
        "X:1\n", [("M", "3/4"), ("K", "Gm")], ["M", ":6/8\nL:1/", "8\nK:", "D\n"]
    )
    assert text.startswith("X:1\nM:3/4\n")
    text, guard = _run_guard("X:1\nM:3/4\n", [("K", "Gm")], ["L:1/8\nK", "abc|"])
    assert text == "X:1\nM:3/4\nL:1/8\nK:Gm\nabc|"
    assert not guard.in_header


def test_guard_note_line_in_header_counts_as_body():
    # "E2x" starts a body line (E is a note, not a field): the pending fields go first
    text, guard = _run_guard("X:1\nR:reel\n", [("M", "6/8"), ("K", "D")], ["E2x |F\n"])
    assert text == "X:1\nR:reel\nM:6/8\nK:D\nE2x |F\n"
    assert not guard.in_header


def test_guard_body_before_header_done_injects_all():
    text, _ = _run_guard("X:1\n", [("R", "jig"), ("K", "D")], ["|:", "AB"])
    assert text == "X:1\nR:jig\nK:D\n|:AB"


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize("arch", ["mamba", "llama"])
def test_constrained_sampling_is_valid_and_honours_fields(arch, tokenizer):
    """An untrained model writes valid tunes that say exactly what was asked."""
    from abcmamba.abc import parse_header, validate

    model = _tiny(arch, tokenizer)
    tunes, reasons = gen.generate_tunes(
        model, tokenizer, 6, meter="6/8", key="Ador", rhythm="jig", unit="1/8",
        seed=1, max_new_tokens=120, batch_size=3, retries=0,
    )  # fmt: skip
    assert len(tunes) == 6 and not reasons
    for t in tunes:
        assert t.valid and t.finished and t.new_tokens <= 120
        assert validate(t.abc) == []
        header = parse_header(t.abc).fields
        fields = dict(header)
        assert (fields["M"], fields["K"], fields["R"], fields["L"]) == (
            "6/8",
            "Ador",
            "jig",
            "1/8",
        )
        letters = [f for f, _ in header]
        assert letters == sorted(letters, key=gen.ORDER.get)  # canonical order


def test_min_new_tokens_keeps_a_tune_going_past_its_end(tokenizer):
    """A model that wants to end at once writes tunes of at least min_new_tokens."""
    from abcmamba.abc import validate

    model = _tiny("llama", tokenizer)
    eos = tokenizer.eos_token_id

    def prefer_eos(module, inputs, output):
        output[..., eos] += 30.0  # EOS wherever the grammar allows it
        return output

    model.lm_head.register_forward_hook(prefer_eos)
    common = dict(meter="4/4", seed=3, max_new_tokens=200, batch_size=3, retries=0)
    short, _ = gen.generate_tunes(model, tokenizer, 3, **common)
    long, reasons = gen.generate_tunes(
        model, tokenizer, 3, min_new_tokens=120, **common
    )
    assert min(t.new_tokens for t in short) < 120  # one ends as soon as it may
    assert not reasons
    for t in long:
        assert t.valid and t.finished and 120 <= t.new_tokens <= 200
        assert validate(t.abc) == []
    with pytest.raises(UserError, match="--min-new-tokens"):
        gen.generate_tunes(model, tokenizer, 1, min_new_tokens=200, **common)


def test_sampling_builds_no_autograd_graph(tokenizer):
    model = _tiny("llama", tokenizer)
    grad_on = []
    model.register_forward_pre_hook(lambda *_: grad_on.append(torch.is_grad_enabled()))
    gen.generate_tunes(model, tokenizer, 2, seed=0, max_new_tokens=40, batch_size=2)
    assert grad_on and not any(grad_on)


def test_unconstrained_sampling_keeps_requested_header(tokenizer, monkeypatch):
    from abcmamba.abc import parse_header

    monkeypatch.setattr("abcmamba.abc.validate", lambda abc: [])
    model = _tiny("mamba", tokenizer)
    tunes, _ = gen.generate_tunes(
        model, tokenizer, 4, meter="6/8", key="D", seed=1, max_new_tokens=60,
        batch_size=2, retries=0, constrained=False,
    )  # fmt: skip
    reached = [t for t in tunes if "\nK:" in t.abc]
    assert reached  # an untrained model still gets through the guarded header
    for t in reached:
        header = parse_header(t.abc)
        assert header.get("M") == "6/8" and header.get("K") == "D"


def test_seed_reproducible_and_seeds_differ(tokenizer):
    model = _tiny("mamba", tokenizer)

    def sample(seed):
        tunes, _ = gen.generate_tunes(
            model, tokenizer, 2, key="D", seed=seed, max_new_tokens=40, retries=0
        )
        return [t.abc for t in tunes]

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_check_tune_flags_missing_and_changed_fields(monkeypatch):
    monkeypatch.setattr("abcmamba.abc.validate", lambda abc: [])
    wanted = {"M": "6/8", "K": "D"}
    good = "X:1\nM:6/8\nL:1/8\nK:D\n|:dfa afd|[K:D]dfa afd:|\n"
    assert gen.check_tune(good, wanted, finished=True) == []
    changed = "X:1\nM:6/8\nL:1/8\nK:D\n|:dfa afd|\nM:2/4\ndf af:|\n"
    assert gen.check_tune(changed, wanted, True) == [
        "requested M:6/8 changed in the body"
    ]
    missing = "X:1\nM:3/4\nL:1/8\nK:D\nd2 f2 a2|\n"
    assert gen.check_tune(missing, wanted, False) == [
        "unfinished: max_new_tokens reached",
        "requested M:6/8 missing",
    ]


def test_invalid_tunes_are_retried_and_reasons_counted(tokenizer, monkeypatch):
    calls = Counter()

    def fake_validate(abc):  # reject every first attempt of each tune
        calls["n"] += 1
        return ["bar 1 too long"] if calls["n"] <= 3 else []

    monkeypatch.setattr("abcmamba.abc.validate", fake_validate)
    model = _tiny("mamba", tokenizer)
    tunes, reasons = gen.generate_tunes(
        model,
        tokenizer,
        3,
        seed=0,
        max_new_tokens=20,
        batch_size=3,
        retries=1,
        temperature=0.0,
        constrained=False,
    )
    assert reasons["bar 1 too long"] == 3
    assert [t.attempts for t in tunes] == [2, 2, 2]


def _count_calls(monkeypatch, name: str) -> Counter:
    """Count the calls of abcmamba.kernels.decode's function ``name`` (still run)."""
    calls: Counter = Counter()
    original = getattr(decode, name)

    def counting(*args):
        calls[name] += 1
        return original(*args)

    monkeypatch.setattr(decode, name, counting)
    return calls


def _stepped_logits(model, ids: torch.Tensor, prefix: int) -> torch.Tensor:
    """Logits of a prefill of ``prefix`` tokens, then one cached step per token."""
    with torch.no_grad():
        out = model(ids[:, :prefix], use_cache=True)
        cache, rows = output_cache(out), [out.logits[:, -1:]]
        for t in range(prefix, ids.shape[1]):
            out = model(ids[:, t : t + 1], **cache_kwargs(cache), use_cache=True)
            rows.append(out.logits)
    return torch.cat(rows, 1)


@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("batch", [3, 9])  # the loop, and BLAS from 8 rows
def test_fused_decode_step_matches_stock_path(tokenizer, monkeypatch, use_bias, batch):
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(1)
    config = MambaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        state_size=16,
        use_bias=use_bias,  # in_proj and out_proj biases
    )
    model = MambaForCausalLM(config).eval()
    ids = torch.randint(3, len(tokenizer), (batch, 10))
    with decode.stock_decode():
        stock = _stepped_logits(model, ids, 4)
    calls = _count_calls(monkeypatch, "layer_step")
    fast = _stepped_logits(model, ids, 4)
    assert calls["layer_step"] == 2 * 6  # every layer, every cached step
    assert torch.allclose(stock, fast, atol=1e-5, rtol=0)


def test_fused_decode_follows_weights_changed_in_place(tokenizer):
    model = _tiny("mamba", tokenizer)
    ids = torch.randint(3, len(tokenizer), (1, 6))
    before = _stepped_logits(model, ids, 2)
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.mixer.A_log.add_(0.5)  # A = -exp(A_log) is derived: must be redone
            layer.mixer.out_proj.weight.mul_(2.0)
    with decode.stock_decode():
        stock = _stepped_logits(model, ids, 2)
    fast = _stepped_logits(model, ids, 2)
    assert not torch.allclose(before, stock, atol=1e-3)
    assert torch.allclose(stock, fast, atol=1e-5, rtol=0)


def test_plain_generate_takes_the_fused_step(tokenizer, monkeypatch):
    """After `import abcmamba`, model.generate on the CPU decodes through fast_step."""
    from transformers import MambaForCausalLM

    assert hasattr(MambaForCausalLM.forward, "_abcmamba_stock")
    model = _tiny("mamba", tokenizer)
    ids = torch.randint(3, len(tokenizer), (2, 5))
    settings = dict(max_new_tokens=7, min_new_tokens=7, do_sample=False)
    with decode.stock_decode():
        stock = model.generate(ids, **settings)
    calls = _count_calls(monkeypatch, "fast_step")
    fast = model.generate(ids, **settings)
    assert calls["fast_step"] == 6  # the first new token comes from the prefill
    assert torch.equal(stock, fast)


def test_fused_decode_leaves_float64_to_the_stock_path(tokenizer, monkeypatch):
    model = _tiny("mamba", tokenizer).double()
    ids = torch.randint(3, len(tokenizer), (2, 6))
    calls = _count_calls(monkeypatch, "layer_step")
    with decode.stock_decode():
        stock = _stepped_logits(model, ids, 3)
    assert torch.allclose(_stepped_logits(model, ids, 3), stock, atol=1e-5, rtol=0)
    assert calls["layer_step"] == 0


def test_generate_prefill_runs_the_numba_scan_for_that_call_only(tokenizer):
    from transformers.models.mamba.modeling_mamba import MambaMixer

    model = _tiny("mamba", tokenizer)
    mixer = model.backbone.layers[0].mixer
    seen = []
    mixer.register_forward_pre_hook(lambda m, args: seen.append(type(m).__name__))
    ids = torch.randint(3, len(tokenizer), (1, 9))
    model.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert seen == ["CpuKernelMambaMixer"]  # the prefill; the steps skip the mixers
    assert type(mixer) is MambaMixer  # a scan path chosen for training is kept
    seen.clear()
    model(ids)  # with gradients: the stock path, untouched
    assert seen == ["MambaMixer"]


def test_import_abcmamba_installs_fast_decode_without_importing_torch():
    import subprocess
    import sys

    code = (
        "import sys, abcmamba\n"
        "assert 'torch' not in sys.modules\n"
        "from transformers import MambaForCausalLM\n"
        "print(hasattr(MambaForCausalLM.forward, '_abcmamba_stock'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[-1] == "True"


def test_cache_is_used_one_token_per_step(tokenizer, monkeypatch):
    monkeypatch.setattr("abcmamba.abc.validate", lambda abc: [])
    model = _tiny("mamba", tokenizer)
    lengths = []
    original = model.forward

    def spy(*args, **kwargs):
        lengths.append(kwargs["input_ids"].shape[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    gen.generate_tunes(
        model, tokenizer, 1, seed=0, max_new_tokens=20, retries=0, temperature=0.0
    )
    assert lengths[0] > 1 and set(lengths[1:]) == {1}


# ---------------------------------------------------------------- loading and CLI


def test_load_model_errors_and_run_folders(tmp_path, model_dir, tokenizer):
    import shutil

    from abcmamba.generate.loading import resolve_model

    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    (no_tok / "config.json").write_text((model_dir / "config.json").read_text())
    with pytest.raises(UserError, match="no tokenizer"):
        gen.load_model(str(no_tok))
    with pytest.raises(UserError, match="no such model folder"):
        gen.load_model(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="expected config.json or final/config.json"):
        gen.load_model(str(tmp_path))
    # a training run folder stands for its final/ model
    shutil.copytree(model_dir, tmp_path / "run" / "final")
    assert resolve_model(str(tmp_path / "run")) == str(tmp_path / "run" / "final")
    model, loaded = gen.load_model(str(tmp_path / "run"), fast=False)
    assert type(model).__name__ == "MambaForCausalLM"
    assert loaded.get_vocab() == tokenizer.get_vocab()


@pytest.mark.parametrize(
    "name, hub",
    [
        ("someone/abc-mamba", True),
        ("some.one/abc_mamba.v2", True),
        ("abc-mamba", False),
        ("a/b/c", False),
        ("./runs", False),
        ("-a/b", False),
        ("a/.b", False),
        ("~/model", False),
    ],
)
def test_hub_id_spelling(name, hub):
    from abcmamba import is_hub_id

    assert is_hub_id(name) is hub


def test_load_model_unreachable_hub_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    from abcmamba.cli import main

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="nobody-here/no-such-model"):
        gen.load_model("nobody-here/no-such-model")
    assert main(["generate", "--model", "nobody-here/no-such-model", "--out", "x"]) == 2


def test_cli_writes_tunes_and_summary(tmp_path, model_dir, monkeypatch, capsys):
    from abcmamba.cli import main

    out = tmp_path / "out"
    rc = main([
        "generate", "--model", str(model_dir), "--meter", "6/8", "--key", "D", "-n", "3",
        "--max-new-tokens", "80", "--batch-size", "2", "--retries", "1", "--out", str(out),
    ])  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["requested"] == 3
    assert summary["settings"]["meter"] == "6/8"
    assert summary["settings"]["batch_size"] == 2
    # constrained (the default): an untrained model's tunes are all valid at once
    assert summary["counts"]["valid"] == 3 and summary["counts"]["attempts"] == 3
    for record in summary["tunes"]:
        abc = (out / record["file"]).read_text()
        assert abc.startswith("X:1\n") and "\nM:6/8\n" in abc and "\nK:D\n" in abc
        assert {"abc", "mid", "musicxml"} <= set(record["formats"]), record["skipped"]
        assert (out / record["file"]).with_suffix(".mid").stat().st_size > 0
    table = capsys.readouterr().out
    assert "tune_1.abc" in table and "3/3 valid" in table
    assert (
        main(["generate", "--model", str(model_dir), "--key", "Q", "--out", str(out)])
        == 2
    )
    assert "accepted" in capsys.readouterr().err


def test_cli_unconstrained_counts_rejected_attempts(tmp_path, model_dir):
    from abcmamba.cli import main

    out = tmp_path / "out"
    rc = main([
        "generate", "--model", str(model_dir), "-n", "2", "--max-new-tokens", "8",
        "--retries", "1", "--unconstrained", "--out", str(out),
    ])  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    # 8 tokens cannot finish a tune: every attempt is rejected and retried once
    assert summary["counts"]["attempts"] == 4
    assert summary["retry_reasons"]["unfinished: max_new_tokens reached"] == 4


def test_cli_impossible_requests_exit_2(tmp_path, model_dir, capsys):
    from abcmamba.cli import main

    base = ["generate", "--model", str(model_dir), "--out", str(tmp_path / "o")]
    assert main([*base, "--max-new-tokens", "3"]) == 2
    assert "too small" in capsys.readouterr().err
    assert main([*base, "--prompt", "X:1\\nK:D\\n|A4|]"]) == 2
    assert "prompt" in capsys.readouterr().err


def test_composer_and_rhythm_match_the_corpus_spelling(tmp_path, model_dir, capsys):
    from abcmamba.cli import main

    known = {
        "composer": {"Bach": 363, "Palestrina": 1161},
        "rhythm": {"reel": 395, "Reel": 157, "jig": 214},
    }
    assert gen.field_conditions(composer="bach", known=known) == {"C": "Bach"}
    assert gen.field_conditions(rhythm="REEL", known=known) == {"R": "reel"}
    with pytest.raises(UserError, match="closest known: Bach"):
        gen.field_conditions(composer="Bahc", known=known)
    folder = tmp_path / "model"
    folder.mkdir()
    for f in model_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "conditioning.json").write_text(json.dumps(known))
    out = tmp_path / "out"
    args = ["generate", "--model", str(folder), "-n", "1", "--max-new-tokens", "60"]
    assert main([*args, "--composer", "bach", "--out", str(out)]) == 0
    assert (out / "tune_1.abc").read_text().startswith("X:1\nC:Bach\n")
    assert main([*args, "--composer", "Palestina", "--out", str(out)]) == 2
    assert "closest known: Palestrina" in capsys.readouterr().err


def test_write_formats_converts_a_valid_tune_and_logs_skips(
    tmp_path, monkeypatch, caplog, tunes
):
    from abcmamba import convert

    tune = next(t for t in tunes if "M:6/8" in t)
    written, skipped = gen.write_formats(tune, tmp_path / "tune_1")
    for fmt in written:
        assert (tmp_path / f"tune_1.{fmt}").stat().st_size > 0
    assert set(written) | set(skipped) == set(gen.FORMATS)
    assert "mid" in written and "musicxml" in written, skipped

    def broken(abc, path):
        raise RuntimeError("verovio exploded")

    monkeypatch.setattr(convert, "abc_to_svg", broken)
    written, skipped = gen.write_formats(tune, tmp_path / "tune_2")
    assert skipped["svg"] == "verovio exploded" and skipped["png"] == "no SVG to render"
    assert "mid" in written and "verovio exploded" in caplog.text


@pytest.mark.parametrize("arch", ["mamba", "llama", "xlstm"])
def test_finished_rows_leave_the_cache_without_disturbing_others(
    arch, tokenizer, monkeypatch
):
    model = _tiny(arch, tokenizer, seed=2)
    gen_ = torch.Generator().manual_seed(0)
    alone = gen.sample_batch(
        model,
        tokenizer,
        "X:1\n",
        [],
        set(),
        1,
        gen_,
        temperature=0.0,
        max_new_tokens=25,
    )
    calls = Counter()
    original = sampling._sample

    def first_row_stops(logits, *args):
        calls["n"] += 1
        picked = original(logits, *args)
        if (
            calls["n"] == 3
        ):  # row 0 ends at step 3; rows 1 and 2 go on in a smaller batch
            picked[0] = tokenizer.eos_token_id
        return picked

    monkeypatch.setattr(sampling, "_sample", first_row_stops)
    batch = gen.sample_batch(
        model,
        tokenizer,
        "X:1\n",
        [],
        set(),
        3,
        gen_,
        temperature=0.0,
        max_new_tokens=25,
    )
    assert batch[0][2] is True and batch[0][1] == 3  # finished after 3 tokens
    assert batch[1] == alone[0] and batch[2] == alone[0]


# ---------------------------------------------------------------- the logits processor


def test_logits_processor_with_plain_generate(tokenizer):
    """Two lines make plain `model.generate` write only valid tunes, ended in budget."""
    from abcmamba.abc import validate

    model = _tiny("mamba", tokenizer, seed=4)
    torch.manual_seed(0)
    prompt = tokenizer(["X:1\n"] * 4, return_tensors="pt")
    processor = gen.AbcLogitsProcessor(tokenizer, {"M": "3/4"}, max_new_tokens=90)
    out = model.generate(
        **prompt, do_sample=True, max_new_tokens=90, logits_processor=[processor],
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    for row in out:
        new = row[prompt.input_ids.shape[1] :].tolist()
        assert tokenizer.eos_token_id in new  # ended (EOS) inside the budget
        abc = tokenizer.decode(row, skip_special_tokens=True)
        assert validate(abc) == [] and "\nM:3/4\n" in abc


def test_masks_are_shared_by_constraints_with_the_same_request(tokenizer, monkeypatch):
    """A second processor's masks come from the first's work; another request's do not."""
    from abcmamba.generate import constrained

    six_eight, three_four = "X:1\nM:6/8\nL:1/8\nK:D\n", "X:1\nM:3/4\nL:1/8\nK:D\n"
    first = constrained.AbcConstraint(tokenizer, {"M": "6/8"})
    state = first.start(six_eight)
    mask = first.mask(state)
    again = constrained.AbcConstraint(tokenizer, {"M": "6/8"})
    assert again.mask(again.start(six_eight)) is mask
    other = constrained.AbcConstraint(tokenizer, {"M": "3/4"})
    assert other.mask(other.start(three_four)) is not mask
    # the cache stays bounded, over all requests: the oldest mask goes first
    monkeypatch.setattr(constrained, "MASK_CACHE_SIZE", 1)
    first.mask(first.advance(state, int(mask.nonzero()[0])))
    assert len(first.vocab.masks) == 1
    assert again.mask(state) is not mask  # computed anew, equal
    assert torch.equal(again.mask(state), mask)


def test_random_token_walks_never_dead_end(tokenizer):
    """Any allowed token keeps a valid ending reachable, whatever the scores say."""
    from abcmamba.abc import validate
    from abcmamba.generate.constrained import AbcConstraint, ConstrainedRow

    rng = torch.Generator().manual_seed(0)
    requests = [{}, {"M": "6/8", "K": "D"}, {"L": "1/16", "M": "4/4"}]
    for i in range(6):
        constraint = AbcConstraint(tokenizer, requests[i % 3])
        budget = (40, 120)[i % 2]
        row = ConstrainedRow(constraint, "X:1\n", budget)
        text, steps = "X:1\n", 0
        while not row.done:
            scores = torch.randn(len(tokenizer), generator=rng) * 4
            row.restrict(scores)
            token = int(torch.multinomial(scores.softmax(-1), 1, generator=rng))
            row.take(token)
            steps += 1
            if token != tokenizer.eos_token_id:
                text += tokenizer.decode([token])
        assert steps <= budget
        assert validate(text) == [], text
