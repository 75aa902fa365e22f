"""Prefill and per-token decode speed: Mamba (stock and fused step) vs the Llama baseline.

    python benchmarks/generate_speed.py [--preset small] [--contexts 256,2048,8192]
        [--batch-sizes 1,16] [--threads 1] [--grammar data/corpus/tokenizer]
        [--results benchmarks/RESULTS.md]

For each context length L the model reads L real tokens (prefill, timed), then
decodes one token at a time with its cache (timed per step, median of
``--decode-steps``).  Batch > 1 decode starts from the batch-1 cache repeated
along the batch (the cost of a step depends on the cache's shape, not its
content); batch > 1 prefill is timed only up to ``--max-prefill-tokens`` tokens.
Weights are random: speed does not depend on them.  The cache check: Mamba's
decode time must not grow with L (recurrent state), while Llama's does (KV cache).
With ``--grammar TOKENIZER`` plain ``generate`` is timed a second time with the
ABC grammar (:class:`AbcLogitsProcessor`, a full mask every step) on a context
of real ABC: one tune's header and its bars repeated up to L tokens, in that
tokenizer's vocabulary (the models then get its size).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import statistics
import time
from pathlib import Path

import torch

from abcmamba.compat import cache_kwargs, output_cache

# The CPU this runs on is shared: wall time measures the neighbours as much as us.
# With one torch thread all work runs on the calling thread, so its CPU time is the
# cost of the step itself; wall time is recorded next to it.
clock = time.thread_time
logger = logging.getLogger("generate_speed")
SECTION = "## Generation speed (benchmarks/generate_speed.py)"
VOCAB = 4096
# A real tune (music21's bundled folk corpus) whose bars fill the grammar's context.
TUNE_HEADER = "X:1\nM:6/8\nL:1/8\nQ:3/8=104\nK:C\n"
TUNE_BODY = (
    "c'2g edc |f2 d BAG |c>fe d>gf |e>dc B>AG|\n"
    "c'2g edc |f2 d B>AG|A>Bc G>AB |c3   z2z:|\n"
    "c2 G d2 G|e2 c BAG |gab  c'>ba|g<ec d<BG|\n"
    "c>ec d<fd|e<fe f<gf|e>dc G>AB |c3   z2z:|\n"
)


def build(arch: str, preset: str, max_len: int, vocab: int = VOCAB):
    """A random-weight model of ``arch`` at ``preset``, with the fastest CPU prefill."""
    from transformers import LlamaForCausalLM, MambaForCausalLM

    from abcmamba.modeling import build_config, configure_scan_path

    torch.manual_seed(0)
    config = build_config(arch, preset, vocab)
    if arch == "llama":
        config.max_position_embeddings = max(config.max_position_embeddings, max_len)
        return LlamaForCausalLM(config).eval(), "attention (sdpa)"
    model = MambaForCausalLM(config).eval()
    try:
        scan = configure_scan_path(model, "auto")
    except Exception as err:  # a half-built kernel must not stop the benchmark
        logger.warning("scan path auto failed (%s); using mambapy", err)
        scan = configure_scan_path(model, "mambapy")
    return model, scan


def forward(model, ids, cache):
    """One forward with the cache; returns the cache."""
    out = model(
        input_ids=ids, **cache_kwargs(cache, model), use_cache=True, logits_to_keep=1
    )
    return output_cache(out, model)


def repeat_cache(cache, batch: int):
    """A copy of a batch-1 cache repeated ``batch`` times along the batch."""
    cache = copy.deepcopy(cache)
    if batch > 1:
        cache.reorder_cache(torch.zeros(batch, dtype=torch.long))
    return cache


@torch.no_grad()
def measure(
    model,
    variants: dict,
    context: int,
    batches: list[int],
    steps: int,
    max_prefill: int,
) -> dict:
    """Prefill tokens/s and decode ms/step at ``context`` for each batch size.

    ``variants`` maps a name to a function that switches ``model`` to that decode
    path; their steps are interleaved so load changes on the machine hit all alike.
    """
    gen = torch.Generator().manual_seed(context)
    ids = torch.randint(3, model.config.vocab_size, (1, context), generator=gen)
    rows: dict[str, list] = {name: [] for name in variants}
    # prefill in wall time: the numba scan runs on its own worker threads
    start = time.perf_counter()
    base = forward(model, ids, None)
    prefill_1 = time.perf_counter() - start
    for batch in batches:
        prefill = prefill_1 if batch == 1 else None
        if batch > 1 and batch * context <= max_prefill:
            start = time.perf_counter()
            forward(model, ids.expand(batch, -1).contiguous(), None)
            prefill = time.perf_counter() - start
        caches = {name: repeat_cache(base, batch) for name in variants}
        token = torch.randint(3, model.config.vocab_size, (batch, 1), generator=gen)
        times: dict[str, list] = {name: [] for name in variants}
        walls: dict[str, list] = {name: [] for name in variants}
        for _ in range(steps + 2):  # two warm-up steps
            for name, switch in variants.items():
                switch(model)
                start, wall = clock(), time.perf_counter()
                caches[name] = forward(model, token, caches[name])
                times[name].append(clock() - start)
                walls[name].append(time.perf_counter() - wall)
        for name in variants:
            step = statistics.median(times[name][2:])
            rows[name].append(
                {
                    "context": context,
                    "batch": batch,
                    "prefill_s": None if prefill is None else round(prefill, 3),
                    "prefill_tok_s": (
                        None if prefill is None else round(batch * context / prefill)
                    ),
                    "decode_ms": round(step * 1e3, 3),
                    "decode_tok_s": round(batch / step),
                    "decode_min_ms": round(min(times[name][2:]) * 1e3, 3),
                    "decode_wall_ms": round(
                        statistics.median(walls[name][2:]) * 1e3, 3
                    ),
                }
            )
            logger.info("%s %s", name, rows[name][-1])
    return rows


def tune_context(tokenizer, context: int) -> torch.Tensor:
    """(1, <= context) ids of TUNE_HEADER and TUNE_BODY repeated, cut at a line end."""
    text, ids = TUNE_HEADER, None
    while True:
        longer = tokenizer(text + TUNE_BODY, return_tensors="pt").input_ids
        if longer.shape[1] > context:
            return ids if ids is not None else longer[:, :context]
        text, ids = text + TUNE_BODY, longer


@torch.no_grad()
def measure_generate(
    model, variants: dict, context: int, new_tokens: int, tokenizer=None
) -> dict:
    """Per-token decode time of plain ``model.generate`` (sampling) at batch 1.

    generate(N + 1 new tokens) minus generate(1), over N: the prefill and
    generate's set-up cancel out, what is left is the cached loop a user runs
    (logits processors, sampling, stopping checks included). Best of 3.
    With ``tokenizer``, on a real tune's context and with a fresh ABC grammar
    per call (its budget beyond N, so it never has to end the tune early).
    """
    from abcmamba.generate import AbcLogitsProcessor

    if tokenizer is None:
        gen = torch.Generator().manual_seed(context)
        ids = torch.randint(3, model.config.vocab_size, (1, context), generator=gen)
    else:
        ids = tune_context(tokenizer, context)
    settings = dict(do_sample=True, top_k=0, top_p=0.95, pad_token_id=0)

    def timed(n):
        extra = {}
        if tokenizer is not None:
            grammar = AbcLogitsProcessor(tokenizer, max_new_tokens=n + 64)
            extra["logits_processor"] = [grammar]
        start, wall = clock(), time.perf_counter()
        model.generate(ids, max_new_tokens=n, min_new_tokens=n, **settings, **extra)
        return clock() - start, time.perf_counter() - wall

    rows = {}
    for name, switch in variants.items():
        switch(model)
        timed(2)  # warm-up
        one = [timed(1) for _ in range(3)]
        many = [timed(new_tokens + 1) for _ in range(3)]
        cpu = (min(m[0] for m in many) - min(o[0] for o in one)) / new_tokens
        wall = (min(m[1] for m in many) - min(o[1] for o in one)) / new_tokens
        rows[name] = {
            "context": ids.shape[1],
            "ms": cpu * 1e3,
            "wall_ms": wall * 1e3,
        }
        logger.info("generate %s %s", name, rows[name])
    return rows


def generate_table(rows: list[dict]) -> str:
    """Markdown table of plain-generate decode, with the speed-up over Llama."""
    lines = [
        "| model | context | ms/token (CPU) | tokens/s | vs Llama | wall ms/token | wall vs Llama |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for by_name in rows:
        llama = by_name.get("llama")
        for name, r in by_name.items():
            ratio = wall = ""
            if llama and name != "llama":
                ratio = f"{llama['ms'] / r['ms']:.2f}x"
                wall = f"{llama['wall_ms'] / r['wall_ms']:.2f}x"
            lines.append(
                f"| {name} | {r['context']:,} | {r['ms']:.2f} | {1e3 / r['ms']:,.0f} | "
                f"{ratio} | {r['wall_ms']:.2f} | {wall} |"
            )
    return "\n".join(lines)


def table(results: dict) -> str:
    """Markdown table of all measurements plus the speed-up of fused Mamba over Llama."""
    lines = [
        "| model | context | batch | prefill tok/s | decode ms/step | decode tok/s | vs Llama | min ms/step | min vs Llama | wall ms/step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    llama = {(r["context"], r["batch"]): r for r in results.get("llama", [])}
    for name, rows in results.items():
        for r in rows:
            ref = llama.get((r["context"], r["batch"]))
            ratio = (
                f"{ref['decode_ms'] / r['decode_ms']:.2f}x"
                if ref and name != "llama"
                else ""
            )
            ratio_min = (
                f"{ref['decode_min_ms'] / r['decode_min_ms']:.2f}x"
                if ref and name != "llama"
                else ""
            )
            prefill = "-" if r["prefill_tok_s"] is None else f"{r['prefill_tok_s']:,}"
            lines.append(
                f"| {name} | {r['context']:,} | {r['batch']} | {prefill} | "
                f"{r['decode_ms']:.2f} | {r['decode_tok_s']:,} | {ratio} | {r['decode_min_ms']:.2f} | "
                f"{ratio_min} | {r['decode_wall_ms']:.2f} |"
            )
    return "\n".join(lines)


def flatness(rows: list[dict], batch: int) -> float | None:
    """Least-disturbed decode time at the longest context over the shortest (1.0 = flat)."""
    mine = sorted((r for r in rows if r["batch"] == batch), key=lambda r: r["context"])
    if len(mine) < 2:
        return None
    return mine[-1]["decode_min_ms"] / mine[0]["decode_min_ms"]


def write_section(path: Path, text: str) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving others alone."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        new = head + text.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    path.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, update RESULTS.md."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--contexts", default="256,2048,8192")
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--decode-steps", type=int, default=32)
    p.add_argument(
        "--max-prefill-tokens", type=int, default=32768, help="cap for batch>1 prefill"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: no thread sync per tiny op)",
    )
    p.add_argument("--archs", default="mamba,llama")
    p.add_argument(
        "--generate-tokens",
        type=int,
        default=64,
        help="new tokens per plain model.generate timing at batch 1 (0: skip)",
    )
    p.add_argument(
        "--grammar",
        metavar="TOKENIZER",
        help="also time plain generate with the ABC grammar, in this tokenizer",
    )
    p.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    p.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    contexts = [int(c) for c in args.contexts.split(",")]
    batches = [int(b) for b in args.batch_sizes.split(",")]
    from abcmamba.kernels.decode import set_enabled

    tokenizer, vocab = None, VOCAB
    if args.grammar:
        from abcmamba.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(args.grammar)
        vocab = len(tokenizer)
    results, params, scans = {}, {}, {}
    generated: dict[int, dict] = {c: {} for c in contexts}
    with_grammar: dict[int, dict] = {c: {} for c in contexts}
    for arch in args.archs.split(","):
        longest = max(contexts) + max(args.decode_steps, args.generate_tokens) + 8
        model, scan = build(arch, args.preset, longest, vocab)
        if arch == "mamba":
            variants = {
                "mamba": lambda _: set_enabled(True),
                "mamba-stock": lambda _: set_enabled(False),
            }
        else:
            variants = {arch: lambda _: set_enabled(True)}
        for name in variants:
            results[name] = []
            params[name] = sum(p.numel() for p in model.parameters())
            scans[name] = scan
        logger.info(
            "%s: %s parameters, prefill via %s", arch, f"{params[name]:,}", scan
        )
        measure(model, variants, 64, [1], 8, 0)  # warm-up: allocator, kernels, caches
        for c in contexts:
            rows = measure(
                model, variants, c, batches, args.decode_steps, args.max_prefill_tokens
            )
            for name in variants:
                results[name] += rows[name]
            if args.generate_tokens:
                generated[c].update(
                    measure_generate(model, variants, c, args.generate_tokens)
                )
            if args.generate_tokens and tokenizer is not None:
                with_grammar[c].update(
                    measure_generate(
                        model, variants, c, args.generate_tokens, tokenizer
                    )
                )
        del model
    md = table(results)
    checks = []
    for name in results:
        for b in batches:
            ratio = flatness(results[name], b)
            if ratio is not None:
                checks.append(
                    f"{name} batch {b}: decode at {max(contexts):,} / at {min(contexts):,} tokens = {ratio:.2f}"
                )
    text = (
        f"{SECTION}\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.processor() or platform.machine()} "
        f"({torch.get_num_threads()} torch thread(s), torch {torch.__version__}), preset `{args.preset}`: "
        + ", ".join(f"{n} {params[n]:,} params (prefill: {scans[n]})" for n in results)
        + ". `mamba` = stock transformers MambaForCausalLM with abcmamba's fused single-token step "
        "(`abcmamba.kernels.decode`, installed by `import abcmamba`); `mamba-stock` = "
        "transformers' own decode path. Decode times are CPU time of the (single) compute thread, because "
        "wall time includes waiting for other jobs on a shared machine (wall medians in the last "
        "column); prefill is wall time (the numba scan runs on worker threads). Decode = median (and minimum, the least disturbed) time of one cached step for the whole batch; "
        "batch>1 prefill only up to "
        f"{args.max_prefill_tokens:,} tokens ('-' = not timed).\n\n"
        f"{md}\n\n"
        + (
            "Through plain `model.generate` (sampling, top-p 0.95), batch 1, "
            f"{args.generate_tokens} new tokens after the context; CPU time of the "
            "calling thread and wall time per new token:\n\n"
            + generate_table(list(generated.values()))
            + "\n\n"
            if args.generate_tokens
            else ""
        )
        + (
            "The same with the ABC grammar (`AbcLogitsProcessor`, a full mask every "
            f"step), vocabulary of `{args.grammar}` ({vocab:,} tokens), the context a "
            "real tune's bars repeated (context = its tokens):\n\n"
            + generate_table(list(with_grammar.values()))
            + "\n\n"
            if args.generate_tokens and tokenizer is not None
            else ""
        )
        + "Cache check, minimum step times (1.00 = flat in context length):\n\n"
        + "\n".join(f"- {c}" for c in checks)
        + "\n"
    )
    print(text)
    write_section(args.results, text)
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "params": params, "scans": scans}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
