"""Decode speed with and without the ABC grammar (the constrained sampler).

    python benchmarks/constrained_speed.py [--model runs/mamba-small/final]
        [--batch-sizes 1,16] [--tunes 16] [--threads 2] [--results benchmarks/RESULTS.md]

For each batch size the same model samples ``--tunes`` unconditioned tunes
three ways: abcmamba's loop without the grammar (``--unconstrained``), with it
(the default of `abcmamba generate`; the grammar checks the sampled token and
masks only when it is refused), and plain ``model.generate`` with
:class:`AbcLogitsProcessor` (a full mask every step, what `pipeline` users get).
Speed is new tokens per second of wall time; a first, untimed run fills the
grammar's caches, as a long-running `generate` would.  Valid share is measured
with ``abcmamba.abc.validate`` on the same tunes.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from abcmamba.abc import validate
from abcmamba.generate import AbcLogitsProcessor, generate_tunes, load_model

SECTION = "## Constrained sampling speed (benchmarks/constrained_speed.py)"


def loop(model, tokenizer, n, batch, constrained, seed, max_new_tokens):
    """Tokens/s and valid share of abcmamba's sampling loop."""
    start = time.perf_counter()
    tunes, _ = generate_tunes(
        model, tokenizer, n, seed=seed, batch_size=batch, retries=0,
        max_new_tokens=max_new_tokens, constrained=constrained,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    tokens = sum(t.new_tokens for t in tunes)
    return tokens / seconds, sum(not validate(t.abc) for t in tunes) / n


def plain_generate(model, tokenizer, n, batch, seed, max_new_tokens):
    """Tokens/s and valid share of ``model.generate`` with the logits processor."""
    torch.manual_seed(seed)
    prompt = tokenizer(["X:1\n"] * batch, return_tensors="pt")
    tokens, valid, start = 0, 0, time.perf_counter()
    for _ in range(0, n, batch):
        processor = AbcLogitsProcessor(tokenizer, max_new_tokens=max_new_tokens)
        out = model.generate(
            **prompt, do_sample=True, top_p=0.95, max_new_tokens=max_new_tokens,
            logits_processor=[processor], pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        new = out[:, prompt.input_ids.shape[1] :]
        tokens += int((new != tokenizer.pad_token_id).sum())
        texts = tokenizer.batch_decode(out, skip_special_tokens=True)
        valid += sum(not validate(t) for t in texts)
    return tokens / (time.perf_counter() - start), valid / n


def write_section(path: Path, text: str) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md."""
    old = path.read_text() if path.is_file() else ""
    if SECTION in old:
        before, _, rest = old.partition(SECTION)
        after = rest[rest.find("\n## ") :] if "\n## " in rest else ""
        old = before.rstrip() + "\n\n" + text.rstrip() + "\n" + after
    else:
        old = old.rstrip() + "\n\n" + text
    path.write_text(old)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write it into RESULTS.md."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="runs/mamba-small/final")
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--tunes", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        n = max(args.tunes, batch)
        loop(
            model, tokenizer, batch, batch, True, 99, 64
        )  # fill caches, compile kernels
        free, free_ok = loop(model, tokenizer, n, batch, False, 0, args.max_new_tokens)
        cons, cons_ok = loop(model, tokenizer, n, batch, True, 0, args.max_new_tokens)
        hf, hf_ok = plain_generate(model, tokenizer, n, batch, 0, args.max_new_tokens)
        rows.append((batch, free, free_ok, cons, cons_ok, hf, hf_ok))
    load = os.getloadavg()[0]
    lines = [
        SECTION,
        "",
        f"`{args.model}`, {args.tunes} unconditioned tunes per row, "
        f"max {args.max_new_tokens} new tokens, {args.threads} torch threads, "
        f"{platform.processor() or platform.machine()}, load average {load:.1f} "
        f"at the end, torch {torch.__version__}. New tokens per second (valid share).",
        "",
        "| batch | abcmamba loop, no grammar | abcmamba loop, grammar | ratio "
        "| `model.generate` + AbcLogitsProcessor |",
        "| --- | --- | --- | --- | --- |",
    ]
    for batch, free, free_ok, cons, cons_ok, hf, hf_ok in rows:
        lines.append(
            f"| {batch} | {free:.0f} ({free_ok:.0%}) | {cons:.0f} ({cons_ok:.0%}) "
            f"| {cons / free:.2f} | {hf:.0f} ({hf_ok:.0%}) |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.results, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
