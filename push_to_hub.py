"""Publish a training run to the Hugging Face Hub so `pipeline("text-generation")` just works.

    python push_to_hub.py runs/mamba-small --repo-id OWNER/NAME [--private] [--dry-run]

1. stage: weights (safetensors), config, tokenizer, generation_config.json, a model
   card filled from the run's own ``abcmamba_run.json``, sample tunes (.abc + .svg)
   and the data manifest / evaluation numbers as JSON, in ``--stage-dir``;
2. validate: the staged folder loads with ``pipeline`` and samples a valid tune
   from ``X:1``, the card metadata parses, no secrets or stray large files;
3. upload: ``create_repo(exist_ok=True)`` then one ``upload_folder`` commit.

The token comes from ``HF_TOKEN`` or the cached ``hf auth login``; it is never
printed or written anywhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from importlib import resources
from pathlib import Path
from string import Template

from abcmamba import RUN_FILE, UserError, is_hub_id

logger = logging.getLogger("push_to_hub")

STAGE_MARKER = ".abcmamba_stage"  # lets us wipe a stage folder we made, never another
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "conditioning.json",  # corpus spellings of composer and rhythm (abcmamba generate)
)
TAGS = ["music", "abc-notation", "mamba", "symbolic-music"]
MAX_FILE_MB = 10  # anything but weights above this is not meant for the repo
SECRET_NAMES = re.compile(
    r"(^\.env(\..*)?$|^\.netrc$|^id_(rsa|dsa|ecdsa|ed25519)|\.(pem|key|p12|pfx)$|"
    r"token|secret|credential|password)",
    re.IGNORECASE,
)
SECRET_TEXT = re.compile(
    r"(hf_[A-Za-z0-9]{30,}|-----BEGIN [A-Z ]*PRIVATE KEY-----|AKIA[0-9A-Z]{16}|"
    r"ghp_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9]{32,})"
)
UNWANTED = re.compile(
    r"(optimizer|scheduler|scaler|rng_state|training_args|pytorch_model\.bin|\.ckpt$|"
    r"\.pt$|\.pth$|checkpoint)",
    re.IGNORECASE,
)
ALLOWED_SECRETISH = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
}


# ---------------------------------------------------------------- staging


def find_final(run_dir: Path) -> Path:
    """The save_pretrained folder of a run: RUN_DIR/final or RUN_DIR itself."""
    for candidate in (run_dir / "final", run_dir):
        if (candidate / "config.json").is_file():
            return candidate
    raise UserError(
        f"{run_dir}: no trained model (expected {run_dir}/final/config.json)"
    )


def load_run_record(final: Path) -> dict:
    """The run's abcmamba_run.json (train_config, metrics, data_manifest, params, arch)."""
    path = final / RUN_FILE
    if not path.is_file():
        raise UserError(
            f"{path} is missing: the card is written from it (re-run train.py)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "n/a" if value is None else str(value)


def _table(rows: list[tuple], header: tuple) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _hub_datasets(manifest: dict | None) -> list[str]:
    sources = (manifest or {}).get("sources") or []
    return [s.split(":")[1] for s in sources if s.startswith("hf:") and "/" in s]


def _base_model(train_config: dict) -> str | None:
    source = train_config.get("init_from")
    if source and not Path(source).exists() and is_hub_id(source):
        return source
    return None


def render_card(
    record: dict, repo_id: str, samples: list[dict], license_id: str
) -> str:
    """README.md text from the card template, filled from the run record."""
    from huggingface_hub import EvalResult, ModelCardData

    metrics = record.get("metrics") or {}
    train_config = record.get("train_config") or {}
    manifest = record.get("data_manifest") or {}
    name = repo_id.split("/")[-1]
    corpus = ", ".join(manifest.get("sources") or []) or "the abcmamba corpus"
    evals = [
        EvalResult(
            task_type="text-generation", dataset_type="abc-notation", dataset_name=corpus,
            dataset_split="validation", metric_type=metric, metric_name=label, metric_value=metrics[key],
        )  # fmt: skip
        for key, metric, label in (
            ("val_bpc", "bpc", "bits per character"),
            ("val_loss", "loss", "validation loss (nats/token)"),
            ("validity_rate", "validity", "valid tunes sampled from X:1 (ABC grammar)"),
            (
                "validity_rate_unconstrained",
                "validity",
                "valid tunes sampled from X:1 (no grammar)",
            ),
        )
        if isinstance(metrics.get(key), (int, float))
    ]
    data = ModelCardData(
        license=license_id,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=TAGS,
        datasets=_hub_datasets(manifest) or None,
        metrics=["bpc", "validity"],
        base_model=_base_model(train_config),
        model_name=name,
        eval_results=evals or None,
    )
    per_source = manifest.get("per_source") or {}
    splits = ("train", "validation", "test")
    if per_source:
        data_section = _table(
            [
                (src, *(counts.get(s, 0) for s in splits))
                for src, counts in per_source.items()
            ],
            ("source", *splits),
        )
    else:
        data_section = "The run recorded no per-source counts."
    totals = manifest.get("counts") or {}
    if totals:
        data_section += f"\n\nTotal: {_fmt(totals.get('total'))} tunes"
        data_section += f" ({', '.join(f'{k} {_fmt(v)}' for k, v in (totals.get('splits') or {}).items())})."
    rejects = (manifest.get("rejects") or {}).get("total")
    if rejects is not None:
        data_section += f" {_fmt(rejects)} inputs were rejected by the corpus checks."
    if manifest.get("command"):
        data_section += f"\n\nBuilt with `{manifest['command']}`."
    scalars = [
        (k, v) for k, v in train_config.items()
        if isinstance(v, (int, float, str, bool)) and not re.search(r"token|secret|password", k, re.I)
        and not (isinstance(v, str) and SECRET_TEXT.search(v))
    ]  # fmt: skip
    eval_rows = [
        (k, v)
        for k, v in metrics.items()
        if isinstance(v, (int, float, str)) or v is None
    ]
    eval_section = (
        "Measured by `train.py` at the end of this run on the validation split "
        f"({record.get('bpc_definition', 'bits per character of the tune texts')}):\n\n"
        + _table(eval_rows, ("metric", "value"))
    )
    sample_parts = []
    for s in samples:
        label = "" if s["valid"] else " (did not pass validation)"
        svg = (
            f"\n\n![sheet music of {s['name']}](samples/{s['name']}.svg)"
            if s.get("svg")
            else ""
        )
        sample_parts.append(
            f"`samples/{s['name']}.abc`{label}:\n\n```abc\n{s['abc'].rstrip()}\n```{svg}"
        )
    usage = (
        "from transformers import pipeline\n"
        "import music21\n\n"
        f'generator = pipeline("text-generation", model="{repo_id}")\n'
        'prompt = "X:1\\nM:6/8\\nL:1/8\\nK:D\\n"\n'
        'abc = generator(prompt, max_new_tokens=512, do_sample=True)[0]["generated_text"]\n'
        "print(abc)\n"
        'score = music21.converter.parse(abc, format="abc")\n'
        'score.write("midi", fp="tune.mid")'
    )
    arch = record.get("arch") or train_config.get("arch") or "mamba"
    template = Template(
        resources.files("abcmamba").joinpath("templates/model_card.md").read_text()
    )
    base = _base_model(train_config) or train_config.get("init_from")
    return template.substitute(
        metadata=data.to_yaml(),
        title=name,
        arch_name={
            "mamba": "Mamba",
            "mamba2": "Mamba-2",
            "llama": "Llama",
            "xlstm": "xLSTM",
        }.get(arch, arch),
        params=_fmt(record.get("params")),
        arch_detail=f"architecture `{arch}`, preset `{record.get('preset', train_config.get('preset', 'n/a'))}`",
        vocab_size=_fmt(record.get("vocab_size") or train_config.get("vocab_size")),
        repo_id=repo_id,
        usage=usage,
        data_section=data_section,
        training_section=_table(scalars, ("setting", "value")),
        evaluation_section=eval_section,
        samples_section="\n\n".join(sample_parts) or "No sample passed validation.",
        corpus_flavour=corpus,
        base_model_note=f"- Fine-tuned from `{base}`." if base else "",
    )


def _pick_samples(
    run_dir: Path, final: Path, n: int, allow_invalid: bool
) -> list[dict]:
    """Up to ``n`` valid sample tunes: the run's samples.abc, else freshly generated."""
    from abcmamba.abc import split_tunes, validate

    candidates = []
    for path in (run_dir / "samples.abc", final.parent / "samples.abc"):
        if path.is_file():
            candidates = split_tunes(path.read_text(encoding="utf-8"))
            break
    picked = [t for t in candidates if not validate(t)][:n]
    if len(picked) < n:
        from abcmamba.generate import generate_tunes, load_model

        model, tokenizer = load_model(str(final))
        tunes, _ = generate_tunes(model, tokenizer, n - len(picked), retries=2)
        picked += [t.abc for t in tunes if t.valid]
        if not picked and allow_invalid:
            picked = [t.abc for t in tunes]
    return [
        {"name": f"tune_{i + 1}", "abc": abc, "valid": not validate(abc)}
        for i, abc in enumerate(picked)
    ]


def stage(
    run_dir: Path,
    stage_dir: Path,
    repo_id: str,
    license_id: str = "mit",
    n_samples: int = 3,
    allow_invalid_sample: bool = False,
) -> list[str]:
    """Write the upload folder; returns the files of the run left out (and why)."""
    final = find_final(run_dir)
    record = load_run_record(final)
    if (
        stage_dir.exists()
        and any(stage_dir.iterdir())
        and not (stage_dir / STAGE_MARKER).exists()
    ):
        raise UserError(
            f"{stage_dir} exists and was not made by push_to_hub.py; choose another --stage-dir"
        )
    shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir(parents=True)
    (stage_dir / STAGE_MARKER).write_text("staged by push_to_hub.py\n")
    if (
        not (final / "model.safetensors").is_file()
        and not (final / "model.safetensors.index.json").is_file()
    ):
        raise UserError(f"{final} has no safetensors weights (model.safetensors)")
    left_out = []
    for path in sorted(final.iterdir()):
        shard = re.fullmatch(r"model-\d+-of-\d+\.safetensors", path.name)
        if path.name in MODEL_FILES or shard:
            shutil.copy2(path, stage_dir / path.name)
        elif path.name != RUN_FILE:
            left_out.append(path.name)
    for name in ("config.json", "tokenizer.json"):
        if not (stage_dir / name).is_file():
            raise UserError(f"{final} has no {name}; the Hub repo would not load")
    _write_generation_config(stage_dir, record)
    (stage_dir / "training_manifest.json").write_text(
        json.dumps(record.get("data_manifest"), indent=2) + "\n", encoding="utf-8"
    )
    evaluation = {
        k: record.get(k)
        for k in ("metrics", "params", "arch", "preset", "bpc_definition")
    }
    evaluation["train_config"] = record.get("train_config")
    (stage_dir / "eval_results.json").write_text(
        json.dumps(evaluation, indent=2) + "\n", encoding="utf-8"
    )
    samples = _pick_samples(run_dir, final, n_samples, allow_invalid_sample)
    (stage_dir / "samples").mkdir()
    for s in samples:
        (stage_dir / "samples" / f"{s['name']}.abc").write_text(
            s["abc"], encoding="utf-8"
        )
        s["svg"] = _write_svg(s["abc"], stage_dir / "samples" / f"{s['name']}.svg")
    config = json.loads((stage_dir / "config.json").read_text(encoding="utf-8"))
    card = render_card(
        dict(record, vocab_size=config.get("vocab_size")), repo_id, samples, license_id
    )
    (stage_dir / "README.md").write_text(card, encoding="utf-8")
    for name in left_out:
        logger.info("not uploaded from %s: %s", final, name)
    return left_out


def _write_generation_config(stage_dir: Path, record: dict) -> None:
    """generation_config.json with sampling on, EOS, and room for one tune."""
    from transformers import AutoTokenizer, GenerationConfig

    from abcmamba.generate.defaults import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TOP_P

    path = stage_dir / "generation_config.json"
    gc = (
        GenerationConfig.from_pretrained(str(stage_dir))
        if path.is_file()
        else GenerationConfig()
    )
    tokenizer = AutoTokenizer.from_pretrained(str(stage_dir))
    gc.do_sample = True
    gc.max_new_tokens = (
        gc.max_new_tokens
        or (record.get("train_config") or {}).get("max_new_tokens")
        or DEFAULT_MAX_NEW_TOKENS
    )
    gc.top_p = gc.top_p if gc.top_p not in (None, 1.0) else DEFAULT_TOP_P
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(gc, name, None) is None:
            setattr(gc, name, getattr(tokenizer, name))
    gc.save_pretrained(str(stage_dir))


def _write_svg(abc: str, path: Path) -> bool:
    from abcmamba.convert import abc_to_svg

    try:
        abc_to_svg(abc, path)
        return path.is_file()
    except Exception as err:  # sheet music is optional: the .abc is still uploaded
        logger.warning(
            "no sheet music for %s: %s",
            path.stem,
            str(err).splitlines()[0] if str(err) else err,
        )
        return False


# ---------------------------------------------------------------- validation


def check_files(stage_dir: Path, token: str | None = None) -> list[str]:
    """Problems that forbid uploading ``stage_dir``: secrets, unwanted or oversized files."""
    problems = []
    for path in sorted(p for p in stage_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(stage_dir).as_posix()
        if path.name == STAGE_MARKER:
            continue
        if SECRET_NAMES.search(path.name) and path.name not in ALLOWED_SECRETISH:
            problems.append(f"{rel}: looks like a secret (file name)")
            continue
        if UNWANTED.search(rel):
            problems.append(f"{rel}: training state, not meant for the model repo")
            continue
        size_mb = path.stat().st_size / 2**20
        if not path.name.endswith(".safetensors") and size_mb > MAX_FILE_MB:
            problems.append(
                f"{rel}: {size_mb:.0f} MB, over the {MAX_FILE_MB} MB limit for non-weight files"
            )
            continue
        if not path.name.endswith(".safetensors"):
            text = path.read_text(encoding="utf-8", errors="ignore")
            if SECRET_TEXT.search(text) or (token and token in text):
                problems.append(
                    f"{rel}: contains what looks like a token or private key"
                )
    return problems


def check_card(stage_dir: Path) -> list[str]:
    """Problems with README.md: metadata must parse and name the pipeline."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(stage_dir / "README.md")
    except Exception as err:
        return [f"README.md metadata does not parse: {err}"]
    data = card.data.to_dict()
    missing = [
        k
        for k in ("license", "library_name", "pipeline_tag", "tags")
        if not data.get(k)
    ]
    return [f"README.md metadata lacks {', '.join(missing)}"] if missing else []


def check_pipeline(
    stage_dir: Path, max_new_tokens: int | None = None, tries: int = 3
) -> tuple[bool, str]:
    """Load ``stage_dir`` with pipeline("text-generation") and sample from X:1.

    Returns (a sample passed validation, the last sample or the reasons).
    """
    import torch
    from transformers import AutoModelForCausalLM, pipeline

    from abcmamba.abc import validate

    AutoModelForCausalLM.from_pretrained(str(stage_dir))  # the class users will load
    generator = pipeline("text-generation", model=str(stage_dir), device="cpu")
    kwargs = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    reasons: list[str] = []
    for attempt in range(tries):
        torch.manual_seed(attempt)
        text = generator("X:1\n", **kwargs)[0]["generated_text"]
        reasons = validate(text)
        if not reasons:
            return True, text
    return False, "; ".join(reasons[:3])


# ---------------------------------------------------------------- upload


def upload(
    stage_dir: Path,
    repo_id: str,
    token: str,
    private: bool,
    revision: str | None,
    message: str,
) -> str:
    """create_repo(exist_ok=True), then one upload_folder commit; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
    if revision:
        api.create_branch(repo_id=repo_id, branch=revision, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(stage_dir),
        commit_message=message,
        revision=revision,
        ignore_patterns=[STAGE_MARKER],
    )
    url = f"https://huggingface.co/{repo_id}"
    return f"{url}/tree/{revision}" if revision else url


def _hub_message(err: Exception, token: str | None) -> str:
    text = getattr(err, "server_message", None) or str(err) or type(err).__name__
    text = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return text.replace(token, "***") if token else text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="runs/NAME (or its final/ folder)")
    p.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to commit to (created if missing)")
    p.add_argument("--commit-message", help="default: 'Upload <run name>'")
    p.add_argument(
        "--dry-run", action="store_true", help="stage and validate, upload nothing"
    )
    p.add_argument("--stage-dir", type=Path, help="default: RUN_DIR/hub_stage")
    p.add_argument("--license", default="mit", help="license id for the card")
    p.add_argument("--n-samples", type=int, default=3, help="sample tunes on the card")
    p.add_argument(
        "--allow-invalid-sample",
        action="store_true",
        help="upload even if the validation sample fails the ABC checks (untrained test models)",
    )
    p.add_argument(
        "--validation-max-new-tokens", type=int, help="default: generation_config.json"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Stage, validate and upload a run; 0 ok, 1 Hub failure, 2 user error."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from huggingface_hub import get_token

    token = get_token()
    stage_dir = args.stage_dir or args.run_dir / "hub_stage"
    if not token and not args.dry_run:  # fail before the slow staging and validation
        print("push_to_hub.py: error: no Hugging Face token: run `hf auth login` "
              "(or `huggingface-cli login`) or set HF_TOKEN", file=sys.stderr)  # fmt: skip
        return 2
    try:
        if not is_hub_id(args.repo_id):
            raise UserError(f"--repo-id {args.repo_id!r} is not OWNER/NAME")
        left_out = stage(
            args.run_dir,
            stage_dir,
            args.repo_id,
            args.license,
            args.n_samples,
            args.allow_invalid_sample,
        )
        problems = check_files(stage_dir, token) + check_card(stage_dir)
        if problems:
            raise UserError("refusing to upload: " + "; ".join(problems))
        ok, detail = check_pipeline(stage_dir, args.validation_max_new_tokens)
        if ok:
            print("validation: pipeline sample from X:1 passes the ABC checks")
        elif args.allow_invalid_sample:
            print(
                f"validation: sample from X:1 is NOT a valid tune ({detail}); allowed by --allow-invalid-sample"
            )
        else:
            raise UserError(f"the staged model's sample from X:1 is not a valid tune ({detail}); "
                            "train longer or pass --allow-invalid-sample")  # fmt: skip
    except UserError as err:
        print(f"push_to_hub.py: error: {err}", file=sys.stderr)
        return 2
    files = sorted(
        p for p in stage_dir.rglob("*") if p.is_file() and p.name != STAGE_MARKER
    )
    if args.dry_run:
        print(f"dry run: would upload to https://huggingface.co/{args.repo_id} "
              f"(private={args.private}, revision={args.revision or 'main'}):")  # fmt: skip
        for p in files:
            print(
                f"  {p.relative_to(stage_dir).as_posix():<40} {p.stat().st_size:>12,} bytes"
            )
        if left_out:
            print(f"  not uploaded from the run: {', '.join(left_out)}")
        return 0
    message = args.commit_message or f"Upload {find_final(args.run_dir).parent.name}"
    try:
        url = upload(
            stage_dir, args.repo_id, token, args.private, args.revision, message
        )
    except Exception as err:  # network or Hub refusal: one line, keep the staged folder
        print(f"push_to_hub.py: upload failed: {_hub_message(err, token)} "
              f"(staged folder kept at {stage_dir})", file=sys.stderr)  # fmt: skip
        return 1
    print(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
