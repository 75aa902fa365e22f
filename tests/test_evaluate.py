"""Tests of abcmamba.evaluate: metrics on hand-checked examples, bpc, plagiarism, the CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from abcmamba.evaluate.metrics import (
    NoteArray,
    average_inter_onset_interval,
    average_pitch_interval,
    compare_sets,
    intra_set_distances,
    kl_divergence,
    note_count,
    note_length_histogram,
    notes_from_stream,
    overlap_area,
    piece_features,
    pitch_class_histogram,
    pitch_class_transition_matrix,
    pitch_count,
    pitch_range,
)
from abcmamba.evaluate.structure import (
    BarIndex,
    bar_texts,
    has_repeats,
    self_similarity,
)

C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tunes(data_tunes) -> list[str]:
    """18 folk tunes (airdsAirs, then essenFolksong from index 12)."""
    return data_tunes("evaluate_tunes.abc")


# ---------------------------------------------------------------- features


def test_c_major_scale_pitch_features():
    notes = NoteArray.from_notes(C_MAJOR)
    hist = pitch_class_histogram(notes)
    expected = np.zeros(12)
    expected[[0, 2, 4, 5, 7, 9, 11]] = [2, 1, 1, 1, 1, 1, 1]
    np.testing.assert_allclose(hist, expected / 8)
    assert pitch_count(notes) == 8  # C4 and C5 are different pitches
    assert pitch_range(notes) == 12
    assert note_count(notes) == 8
    # steps: 2 2 1 2 2 2 1 semitones
    assert average_pitch_interval(notes) == pytest.approx(12 / 7)
    assert average_inter_onset_interval(notes) == 1.0
    tm = pitch_class_transition_matrix(notes)
    assert tm[0, 2] == pytest.approx(1 / 7) and tm[11, 0] == pytest.approx(1 / 7)
    assert tm.sum() == pytest.approx(1.0)


def test_known_interval_sequence_and_lengths():
    # C4 up a fifth, down a third, up an octave, down a semitone
    notes = NoteArray.from_notes(
        [60, 67, 63, 75, 74], duration=[1.0, 0.5, 0.5, 1.5, 1 / 3]
    )
    assert average_pitch_interval(notes) == pytest.approx((7 + 4 + 12 + 1) / 4)
    assert average_inter_onset_interval(notes) == pytest.approx(
        (1 + 0.5 + 0.5 + 1.5) / 4
    )
    hist = note_length_histogram(notes)
    # classes: 0 whole, 1 half, 2 quarter, 3 eighth, ..., 6 dotted quarter, 11 eighth triplet
    assert hist[2] == pytest.approx(0.2) and hist[3] == pytest.approx(0.4)
    assert hist[6] == pytest.approx(0.2) and hist[11] == pytest.approx(0.2)


def test_intervals_stay_within_a_voice():
    # two voices sounding together: no interval is taken across voices
    notes = NoteArray.from_notes(
        [60, 62, 48, 50], onset=[0, 1, 0, 1], duration=[1, 1, 1, 1], voice=[0, 0, 1, 1]
    )
    assert average_pitch_interval(notes) == 2.0
    assert average_inter_onset_interval(notes) == 1.0


def test_notes_from_music21_stream_of_abc():
    import music21

    score = music21.converter.parse(
        "X:1\nM:4/4\nL:1/4\nK:C\nC D E F|G A B c|\n", format="abc"
    )
    notes = notes_from_stream(score)
    assert notes.pitch.tolist() == C_MAJOR
    assert notes.onset.tolist() == [float(i) for i in range(8)]
    assert piece_features(notes)["pitch_class_histogram"][0] == pytest.approx(0.25)


# ---------------------------------------------------------------- set comparison


def test_overlap_and_kl_of_identical_and_disjoint_sets():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 300)
    assert overlap_area(a, a.copy()) == pytest.approx(1.0, abs=1e-6)
    assert kl_divergence(a, a.copy()) == pytest.approx(0.0, abs=1e-9)
    far = rng.normal(50, 1, 300)
    assert overlap_area(a, far) < 1e-3
    assert kl_divergence(a, far) > 5
    near = rng.normal(0.5, 1, 300)
    assert 0.5 < overlap_area(a, near) < 1.0
    # constant samples (singular for gaussian_kde) still work
    assert overlap_area(np.zeros(5), np.zeros(5)) == pytest.approx(1.0, abs=1e-6)


def test_intra_set_distances_and_compare_sets():
    assert intra_set_distances(np.array([[0.0], [3.0], [4.0]])).tolist() == [
        3.0,
        4.0,
        1.0,
    ]
    scales = [
        piece_features(NoteArray.from_notes([p + s for p in C_MAJOR])) for s in range(6)
    ]
    jumps = [
        piece_features(NoteArray.from_notes([40, 90, 40, 90, 41 + s, 95]))
        for s in range(6)
    ]
    same = compare_sets(scales, scales)
    other = compare_sets(scales, jumps)
    assert same["pitch_range"]["overlap_area"] > other["pitch_range"]["overlap_area"]
    assert other["average_pitch_interval"]["overlap_area"] < 0.05
    assert same["note_count"]["inter_mean"] == 0.0


# ---------------------------------------------------------------- structure


def test_bars_repeats_and_self_similarity():
    abc = "X:1\nM:4/4\nL:1/8\nK:D\n|:A2FA DAFA|B2GB dBGB|A2 FA DAFA|1 BcdB A4:|2 BcdB A2FG|]\n"
    assert bar_texts(abc) == ["A2FADAFA", "B2GBdBGB", "A2FADAFA", "BcdBA4", "BcdBA2FG"]
    assert has_repeats(abc)
    assert not has_repeats("X:1\nM:4/4\nL:1/8\nK:D\nABcd efga|[CEG]2 z6|]\n")
    assert has_repeats("X:1\nM:4/4\nK:D\nABcd efga|[1 g8:|[2 f8|]\n")
    assert self_similarity(bar_texts(abc)) == pytest.approx(1 / 5)


def test_plagiarism_finds_copied_phrase_not_unrelated_tune(tunes):
    index = BarIndex(tunes)
    source = 1
    bars = bar_texts(tunes[source])
    assert len(bars) >= 10
    copied = "X:1\nM:6/8\nL:1/8\nK:Em\nz6|" + "|".join(bars[1:9]) + "|z3 z3|]\n"
    match = index.longest_match(copied)
    assert match.length == 8 and match.tune_index == source and match.tune_start == 1
    unrelated = (
        "X:1\nM:3/4\nL:1/8\nK:Bb\n" + "|".join(f"_B{i}c" for i in range(1, 9)) + "|]\n"
    )
    assert index.longest_match(unrelated).length == 0
    # bars of rests only are never a copied phrase
    silence = "X:1\nM:4/4\nL:1/8\nK:C\n" + "z8|" * 12 + "[V:2]z4 z4|]\n"
    assert BarIndex([silence]).longest_match(silence).length == 0


def test_plagiarism_index_is_fast():
    import time

    rng = np.random.default_rng(0)
    notes = list("ABCDEFGabcdefg")

    def tune(n_bars: int) -> str:
        bars = ["".join(rng.choice(notes, 4)) for _ in range(n_bars)]
        return "X:1\nM:4/4\nL:1/8\nK:C\n" + "|".join(bars) + "|]\n"

    start = time.perf_counter()
    index = BarIndex([tune(32) for _ in range(2000)])
    samples = [tune(32) for _ in range(200)]
    lengths = [index.longest_match(s).length for s in samples]
    assert time.perf_counter() - start < 20
    assert max(lengths) <= 2


# ---------------------------------------------------------------- validity, conditioning


def test_failures_are_counted_not_dropped(tunes):
    from abcmamba.evaluate.samples import analyse_tunes, validity_summary

    good = tunes[0]
    broken = "X:1\nM:4/4\nL:1/8\nK:C\nthis is ]] not (( music\n"
    analyses = analyse_tunes([good, broken], finished=[True, False])
    summary = validity_summary(analyses)
    assert summary["count"] == 2 and summary["valid"] == 1
    assert analyses[0].features is not None and analyses[1].features is None
    assert any(r.startswith("unfinished") for r in summary["reasons"])
    assert sum(summary["reasons"].values()) == len(analyses[1].reasons) >= 2


TWO_VOICES = """X:1
T:Two voices and a silent one
M:4/4
L:1/4
V:1
V:2 clef=bass
V:3
K:C
[V:1]c d e f |[V:2]C, D, E, F, |[V:3]z4 |
[V:1]g a b c' |[V:2]G, A, B, C |[V:3]z4 |
"""


def test_voices_are_counted_and_measured_one_by_one():
    from abcmamba.evaluate.samples import analyse_tune, voice_summary

    a = analyse_tune(TWO_VOICES, midi=False)
    assert a.reasons == [] or all("voice" not in r for r in a.reasons)
    # the rest-only voice has no notes to lose
    assert (a.voices_with_notes, a.parts_with_notes) == (2, 2)
    assert a.every_voice_sounds and len(a.voice_features) == 2
    upper, lower = a.voice_features
    # per voice: 8 notes over an octave each; the piece spans c' (84) to C, (48)
    assert upper["note_count"][0] == lower["note_count"][0] == 8
    assert upper["pitch_range"][0] == lower["pitch_range"][0] == 12
    assert a.features["note_count"][0] == 16 and a.features["pitch_range"][0] == 36
    one = analyse_tune("X:1\nM:4/4\nL:1/4\nK:C\nc d e f|g a b c'|\n", midi=False)
    assert one.voice_features == [] and one.voices_with_notes == 1
    summary = voice_summary([a, one])
    assert summary["multi_voice"] == summary["every_voice_sounds"] == 1
    assert summary["voices_compared"] == 2


def test_conditioning_accuracy_checks_header_and_music(tunes):
    from abcmamba.evaluate.samples import analyse_tune, conditioning_summary

    analyses = [analyse_tune(tunes[0], midi=False), analyse_tune(tunes[2], midi=False)]
    own = [{"meter": "2/4", "key": "G"}, {"meter": "6/8", "key": "G"}]
    result = conditioning_summary(own, analyses)
    assert (
        result["all"] == 1.0
        and result["key_music"] == 1.0
        and result["meter_music"] == 1.0
    )
    wrong = [
        {"meter": "3/4", "key": "Bb", "rhythm": "reel"},
        {"meter": "6/8", "key": "G"},
    ]
    result = conditioning_summary(wrong, analyses)
    assert result["key"] == 0.5 and result["meter"] == 0.5 and result["rhythm"] == 0.0
    assert result["all"] == 0.5


# ---------------------------------------------------------------- bpc


def _tiny_lm(tunes: list[str]):
    """A tokenizer trained on ``tunes`` and a random tiny Mamba."""
    from transformers import MambaConfig, MambaForCausalLM

    from abcmamba.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(tunes, vocab_size=320, min_frequency=1)
    torch.manual_seed(0)
    config = MambaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        state_size=4,
        num_hidden_layers=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return MambaForCausalLM(config).eval(), tokenizer


@pytest.fixture(scope="module")
def tiny_lm(tunes):
    return _tiny_lm(tunes)


def test_bpc_matches_hand_computation(tiny_lm, tunes):
    from abcmamba.evaluate.bpc import bits_per_character

    model, tokenizer = tiny_lm
    texts = tunes[:5]
    sources = ["airds", "airds", "essen", "airds", "essen"]
    total_bits, total_tokens = 0.0, 0
    per_source: dict[str, list[float]] = {}
    for text, source in zip(texts, sources, strict=True):
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        assert ids[0] == tokenizer.bos_token_id
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]  # (L, V)
        logp = torch.log_softmax(logits.double(), -1)
        bits = -sum(float(logp[i - 1, ids[i]]) for i in range(1, len(ids))) / math.log(
            2
        )
        total_bits += bits
        total_tokens += len(ids) - 1
        acc = per_source.setdefault(source, [0.0, 0])
        acc[0] += bits
        acc[1] += len(text)
    result = bits_per_character(
        model, tokenizer, texts, sources, batch_size=2, progress=False
    )
    assert result["bpc"] == pytest.approx(total_bits / sum(map(len, texts)), rel=1e-4)
    assert result["bits_per_token"] == pytest.approx(
        total_bits / total_tokens, rel=1e-4
    )
    assert result["tokens"] == total_tokens and result["tunes"] == 5
    for source, (bits, chars) in per_source.items():
        assert result["per_source"][source]["bpc"] == pytest.approx(
            bits / chars, rel=1e-4
        )
    # a random model knows nothing: close to log2(vocab) bits per token
    assert abs(result["bits_per_token"] - math.log2(len(tokenizer))) < 1.0

    # long tunes are scored in windows; every token still counted once
    windowed = bits_per_character(
        model, tokenizer, texts[:2], max_length=16, progress=False
    )
    assert windowed["tokens"] == sum(len(tokenizer(t)["input_ids"]) for t in texts[:2])


# ---------------------------------------------------------------- the CLI


@pytest.fixture()
def tiny_run(tmp_path, tiny_lm, tunes):
    """A saved tiny model and a tiny corpus DatasetDict."""
    from datasets import Dataset, DatasetDict

    from abcmamba.abc import parse_header

    model, tokenizer = tiny_lm
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    def records(items: list[tuple[int, str]]) -> dict:
        rows = []
        for i, abc in items:
            header = parse_header(abc)
            rows.append(
                {
                    "id": f"t{i}",
                    "abc": abc,
                    "source": "essen" if i >= 12 else "airds",
                    "rhythm": header.get("R", ""),
                    "meter": header.get("M", ""),
                    "unit_note_length": header.get("L", ""),
                    "key": header.get("K", ""),
                }
            )
        return Dataset.from_list(rows)

    numbered = list(enumerate(tunes))
    corpus = DatasetDict(
        train=records(numbered[0:9] + numbered[12:15]),
        validation=records(numbered[9:10]),
        test=records(numbered[10:12] + numbered[15:18]),
    )
    corpus.save_to_disk(str(tmp_path / "corpus"))
    return model_dir, tmp_path / "corpus"


def test_cli_writes_report(tmp_path, tiny_run, tiny_lm, tunes):
    from abcmamba.cli import main
    from abcmamba.evaluate.bpc import bits_per_character

    model_dir, corpus = tiny_run
    out = tmp_path / "report"
    argv = ["evaluate", "--model", str(model_dir), "--data", str(corpus), "-n", "4"]
    assert main(argv + ["--out", str(out), "--max-new-tokens", "32"]) == 0
    report = json.loads((out / "report.json").read_text())
    entry = report["models"]["model"]
    model, tokenizer = tiny_lm
    held_out = [tunes[i] for i in (10, 11, 15, 16, 17)]  # the test split, in order
    sources = ["airds", "airds", "essen", "essen", "essen"]
    want = bits_per_character(model, tokenizer, held_out, sources, progress=False)
    assert entry["bpc"]["tunes"] == 5
    assert entry["bpc"]["bpc"] == pytest.approx(want["bpc"], rel=1e-5)
    for source in ("airds", "essen"):
        assert entry["bpc"]["per_source"][source]["bpc"] == pytest.approx(
            want["per_source"][source]["bpc"], rel=1e-5
        )
    for kind in ("validity_unconditioned", "validity_conditioned"):
        # the grammar makes every tune valid, even an untrained model's
        assert entry[kind]["count"] == entry[kind]["valid"] == 4
        assert entry[kind]["reasons"] == {}
        # its own text in 32 tokens never is one, and the report says why
        free = report["models"]["model (unconstrained)"][kind]
        assert free["count"] == 4 and free["valid"] == 0 and free["reasons"]
    # valid tunes parse into notes: features of all 4 + 4 samples
    assert entry["features_computed_on"] == 8 and entry["features_not_computed"] == 0
    assert report["real"]["features_computed_on"] == 4
    assert len(entry["samples"]["conditioned"]) == 4
    assert (out / "report.md").read_text().startswith("# abcmamba evaluation")
    assert len(list((out / "samples" / "model").glob("conditioned-*.abc"))) == 4
    assert len(list((out / "samples" / "real").glob("real-*.abc"))) == 4
    for png in ("features.png", "overlap.png", "bpc_per_source.png", "n_bars.png"):
        assert (out / png).stat().st_size > 1000


def test_cli_missing_model_or_corpus_is_one_line(tmp_path, tiny_run, capsys):
    from abcmamba.cli import main

    model_dir, corpus = tiny_run
    assert (
        main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(corpus)])
        == 2
    )
    assert (
        main(["evaluate", "--model", str(model_dir), "--data", str(tmp_path / "none")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(
        line.startswith("abcmamba evaluate: error:") for line in err
    )


def test_compare_benchmark_table_from_run_folders(tmp_path, tiny_run, tiny_lm, capsys):
    from transformers import LlamaConfig, LlamaForCausalLM

    compare = _compare_module()

    model_dir, corpus = tiny_run
    mamba, tokenizer = tiny_lm
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=256,
        )
    )
    runs = []
    for name, model in (("mamba-tiny", mamba), ("llama-tiny", llama)):
        final = tmp_path / "runs" / name / "final"
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)
        runs += ["--run", str(final.parent)]
    argv = runs + ["--data", str(corpus), "-n", "2", "--contexts", "32,64"]
    out = tmp_path / "compare"
    argv += ["--new-tokens", "2", "--max-new-tokens", "12", "--out", str(out)]
    argv += ["--speed-repeats", "2"]
    assert compare.main(argv) == 0
    table = capsys.readouterr().out
    assert "| parameters |" in table and "decode tokens/s at 64 context" in table
    per_arch = json.loads((out / "compare.json").read_text())["per_arch"]
    assert list(per_arch) == ["mamba", "llama"]
    decode = per_arch["llama"]["metrics"]["decode tokens/s at 32 context"]
    assert decode["n"] == 2 and decode["mean"] > 0 and decode["ci95"] is not None
    # one run each: a mean, no interval, no test
    assert per_arch["mamba"]["metrics"]["test bpc"]["ci95"] is None
    assert "| test bpc | " in table
    assert (out / "evaluate" / "report.json").is_file()
    assert (
        compare.main(["--run", str(tmp_path / "missing"), "--data", str(corpus)]) == 2
    )


def _compare_module():
    """benchmarks/compare.py, imported once (its dataclass needs it in sys.modules)."""
    import importlib.util

    name = "benchmarks_compare"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parent.parent / "benchmarks" / "compare.py"
        )
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def test_compare_intervals_and_welch_test():
    from scipy import stats

    compare = _compare_module()
    summary = compare.mean_ci([1.0, 2.0, 3.0])
    # sd 1, sem 1/sqrt(3), t(0.975, 2) = 4.303
    assert summary["mean"] == 2.0 and summary["ci95"] == pytest.approx(2.484, abs=1e-3)
    assert compare.mean_ci([5.0])["ci95"] is None
    assert compare.mean_ci([None, float("nan")])["mean"] is None
    a, b = compare.mean_ci([1.0, 1.1, 0.9]), compare.mean_ci([2.0, 2.2, 1.9])
    expected = stats.ttest_ind([1.0, 1.1, 0.9], [2.0, 2.2, 1.9], equal_var=False)
    assert compare.welch(a, b) == pytest.approx(expected.pvalue)
    assert compare.welch(a, compare.mean_ci([3.0])) is None


def test_compare_sweep_picks_lowest_validation_bpc(tmp_path):
    compare = _compare_module()
    base = tmp_path / "runs" / "compare-tiny"
    for lr, bpc in (("0.001", 1.3), ("0.002", 1.1), ("0.004", 1.2)):
        final = base / f"mamba-lr{lr}-s0" / "final"
        final.mkdir(parents=True)
        (final / "config.json").write_text("{}")
        record = {"arch": "mamba", "metrics": {"val_bpc": bpc}}
        (final / compare.RUN_FILE).write_text(json.dumps(record))
    args = compare.parse_args(
        ["--preset", "tiny", "--archs", "mamba", "--lrs", "1e-3,2e-3,4e-3"]
        + ["--seeds", "0,7", "--runs-dir", str(tmp_path / "runs")]
    )
    # the best rate's other seed is missing, and only that one
    with pytest.raises(compare.UserError, match="mamba-lr0.002-s7"):
        compare.sweep_and_seeds(args)
    final = base / "mamba-lr0.002-s7" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    runs, sweep = compare.sweep_and_seeds(args)
    assert [(r.lr, r.seed) for r in runs] == [(0.002, 0), (0.002, 7)]
    assert sweep["best_lr"] == {"mamba": 0.002}
    assert sweep["val_bpc"]["mamba"] == {"0.001": 1.3, "0.002": 1.1, "0.004": 1.2}


# ---------------------------------------------------------------- composer classifier


@pytest.fixture(scope="module")
def composer_tunes(data_tunes) -> tuple[list[str], list[str]]:
    """Excerpts of 8 Bach, 8 Palestrina and 8 O'Carolan pieces and their composers."""
    from abcmamba.abc import parse_header

    tunes = data_tunes("composer_tunes.abc")
    return tunes, [parse_header(t).get("C") for t in tunes]


def test_composer_classifier_names_held_out_pieces(composer_tunes):
    from abcmamba.evaluate.composer import accuracy_summary, train_classifier

    tunes, labels = composer_tunes
    train = [i for i in range(len(tunes)) if i % 8 < 5]
    held = [i for i in range(len(tunes)) if i % 8 >= 5]
    classifier = train_classifier(
        [tunes[i] for i in train], [labels[i] for i in train], min_pieces=5
    )
    assert classifier.composers == ["Bach", "Palestrina", "O'Carolan"]
    assert classifier.trained_on == {"Bach": 5, "Palestrina": 5, "O'Carolan": 5}
    predicted = classifier.predict([tunes[i] for i in held])
    summary = accuracy_summary(
        [labels[i] for i in held], predicted, classifier.composers
    )
    # chance is 1/3; the three styles differ in voices, meter and note lengths
    assert summary["count"] == 9 and summary["accuracy"] >= 7 / 9
    assert summary["balanced_accuracy"] >= 7 / 9 and summary["chance"] == 1 / 3
    assert sum(sum(row) for row in summary["confusion"]["matrix"]) == 9
    assert {c: r["count"] for c, r in summary["per_composer"].items()} == {
        "Bach": 3,
        "Palestrina": 3,
        "O'Carolan": 3,
    }


def test_composer_features_never_read_the_composer_line(composer_tunes):
    from abcmamba.evaluate.composer import FEATURE_NAMES, tune_features

    tune = composer_tunes[0][0]
    assert "C:Bach\n" in tune
    features = tune_features(tune)
    assert features.shape == (len(FEATURE_NAMES),)
    np.testing.assert_array_equal(features, tune_features(tune.replace("C:Bach\n", "")))
    np.testing.assert_array_equal(
        features, tune_features(tune.replace("C:Bach", "C:Palestrina"))
    )
    assert features[FEATURE_NAMES.index("voices")] == 4


def test_composer_classifier_skips_unreadable_tunes(composer_tunes):
    from abcmamba.evaluate.composer import (
        conditioning_summary,
        featurize,
        train_classifier,
    )

    tunes, labels = composer_tunes
    silent = "X:1\nC:Bach\nM:4/4\nL:1/4\nK:C\nz4|z4|]\n"
    broken = "X:1\nC:Bach\nM:4/4\nL:1/8\nK:C\nthis is ]] not (( music\n"
    X, kept, skipped = featurize([tunes[0], silent, broken])
    assert kept == [0] and X.shape[0] == 1
    assert skipped[1] == "fewer than 2 notes"
    assert set(skipped) == {1, 2} and skipped[2]
    # in training they are left out and counted; in samples they count as misses
    classifier = train_classifier(
        tunes + [silent, broken], labels + ["Bach"] * 2, min_pieces=8
    )
    assert classifier.trained_on["Bach"] == 8 and sum(classifier.skipped.values()) == 2
    assert classifier.predict([silent, tunes[0]]) == [None, "Bach"]
    result = conditioning_summary(classifier, {"Bach": [silent, tunes[0]]})
    row = result["per_composer"]["Bach"]
    assert row["count"] == 2 and row["classified"] == 1 and row["as_requested"] == 1
    assert row["share_as_requested"] == 0.5 and result["chance"] == 1 / 3


def test_cli_composer_classifier_writes_its_section(tmp_path, composer_tunes):
    from datasets import Dataset, DatasetDict

    from abcmamba.abc import parse_header
    from abcmamba.cli import main

    tunes, labels = composer_tunes
    model, tokenizer = _tiny_lm(tunes)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")

    def records(indices: list[int]) -> Dataset:
        rows = []
        for i in indices:
            header = parse_header(tunes[i])
            rows.append(
                {
                    "id": f"t{i}",
                    "abc": tunes[i],
                    "composer": labels[i],
                    "meter": header.get("M", ""),
                    "key": header.get("K", ""),
                }
            )
        return Dataset.from_list(rows)

    DatasetDict(
        train=records([i for i in range(24) if i % 8 < 5]),
        validation=records([i for i in range(24) if i % 8 == 5]),
        test=records([i for i in range(24) if i % 8 > 5]),
    ).save_to_disk(str(tmp_path / "corpus"))
    out = tmp_path / "report"
    argv = ["evaluate", "--model", str(tmp_path / "model"), "--data"]
    argv += [str(tmp_path / "corpus"), "-n", "2", "--max-new-tokens", "32"]
    argv += ["--sampler", "constrained", "--out", str(out), "--composer-classifier"]
    argv += ["--classifier-min-pieces", "5", "--classifier-samples", "1"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    section = report["composer_classifier"]
    assert section["composers"] == ["Bach", "Palestrina", "O'Carolan"]
    assert section["held_out_splits"] == ["validation", "test"]
    assert section["real"]["count"] == 9 and section["real"]["accuracy"] >= 7 / 9
    assert section["cross_validation"]["count"] == 24
    result = report["models"]["model"]["composer_conditioning"]
    assert result["count"] == 3 and set(result["per_composer"]) == set(
        section["composers"]
    )
    assert "## Composer conditioning" in (out / "report.md").read_text()
    assert len(list((out / "samples" / "model").glob("composer-*.abc"))) == 3
    # a corpus with no composer column says so in one line
    argv[argv.index("--data") + 1] = str(tmp_path / "plain")
    DatasetDict(
        train=Dataset.from_dict({"abc": tunes}), test=Dataset.from_dict({"abc": tunes})
    ).save_to_disk(str(tmp_path / "plain"))
    assert main(argv) == 2
