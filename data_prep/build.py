"""Turn work items into normalized, checked records and save the corpus."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from abcmamba.abc import AbcError, normalize, parse_header, validate
from data_prep.labels import apply_labels
from data_prep.sources import Item

log = logging.getLogger(__name__)

COLUMNS = [
    "id",
    "abc",
    "source",
    "title",
    "composer",
    "rhythm",
    "meter",
    "key",
    "unit_note_length",
    "n_bars",
    "n_voices",
    "origin_format",
]
SPLITS = {"train": 0.9, "validation": 0.05, "test": 0.05}
SCORE_TIMEOUT_S = 120


def process_items(
    items: list[Item],
    num_proc: int = 1,
    check_abc2midi: bool = True,
    check_music21: bool = False,
    labels_win: bool = False,
) -> tuple[list[dict], list[dict]]:
    """Normalize and check every item, in parallel; returns (records, rejects).

    A record's `_conflicts` lists the labels that disagreed with its file.
    """
    chunks = _chunks(items)
    task = [(chunk, check_abc2midi, check_music21, labels_win) for chunk in chunks]
    records: list[dict] = []
    rejects: list[dict] = []
    bar = tqdm(total=len(items), desc="converting", unit="item", smoothing=0.05)
    if num_proc > 1:
        ctx = multiprocessing.get_context(
            "fork" if hasattr(signal, "SIGALRM") else "spawn"
        )
        with ctx.Pool(num_proc) as pool:
            for (recs, rejs), n in pool.imap_unordered(_process_chunk_counted, task):
                records += recs
                rejects += rejs
                bar.update(n)
    else:
        for args in task:
            (recs, rejs), n = _process_chunk_counted(args)
            records += recs
            rejects += rejs
            bar.update(n)
    bar.close()
    order = {item.ref: i for i, item in enumerate(items)}
    records.sort(key=lambda r: (r["source"], order.get(r["_ref"], 0), r["id"]))
    return records, rejects


def _chunks(items: list[Item]) -> list[list[Item]]:
    """Small chunks for score files (slow), large ones for ABC tunes (fast)."""
    chunks, current, cost = [], [], 0
    for item in items:
        current.append(item)
        cost += 1 if item.text is not None else 25
        if cost >= 200:
            chunks.append(current)
            current, cost = [], 0
    if current:
        chunks.append(current)
    return chunks


def _process_chunk_counted(args: tuple) -> tuple[tuple[list[dict], list[dict]], int]:
    return process_chunk(*args), len(args[0])


def process_chunk(
    items: list[Item],
    check_abc2midi: bool = True,
    check_music21: bool = False,
    labels_win: bool = False,
) -> tuple[list[dict], list[dict]]:
    """Normalize, validate and check one chunk of items."""
    records, rejects = [], []
    for item in items:
        for ref, origin, text, reason in _abc_texts(item):
            if reason:
                rejects.append(_reject(item.source, ref, reason))
                continue
            try:
                tune = normalize(text)
            except AbcError as err:
                rejects.append(_reject(item.source, ref, str(err)))
                continue
            if item.composer:
                tune = _with_composer(tune, item.composer)
            conflicts = apply_labels(tune, item.labels, labels_win)
            problems = validate(tune.abc)
            if problems:
                rejects.append(_reject(item.source, ref, "; ".join(problems)))
                continue
            record = {k: v for k, v in asdict(tune).items()}
            record.update(
                id=f"{item.source}/{ref}",
                source=item.source,
                origin_format=origin,
                _ref=item.ref,
                _conflicts=conflicts,
            )
            records.append(record)
    checks = []
    if check_abc2midi and shutil.which("abc2midi"):
        checks.append(abc2midi_errors)
    if check_music21:
        checks.append(music21_errors)
    for check in checks:
        errors = check([r["abc"] for r in records])
        kept = []
        for record, error in zip(records, errors, strict=True):
            if error:
                rejects.append(_reject(record["source"], record["_ref"], error))
            else:
                kept.append(record)
        records = kept
    return records, rejects


def _abc_texts(item: Item) -> Iterable[tuple[str, str, str, str]]:
    """(ref, origin format, ABC text, reject reason) for each tune of an item."""
    if item.text is not None:
        yield item.ref, item.origin_format, item.text, ""
        return
    from abcmamba.convert import ConversionError, score_file_to_abc

    try:
        with _time_limit(SCORE_TIMEOUT_S), tempfile.TemporaryDirectory() as tmp:
            path = item.path
            if item.data is not None:  # bytes from a dataset row
                path = str(Path(tmp) / f"score{Path(item.path or '').suffix}")
                Path(path).write_bytes(item.data)
            texts = score_file_to_abc(path)
    except ConversionError as err:
        yield item.ref, item.origin_format, "", f"conversion failed: {err}"
        return
    except TimeoutError:
        yield item.ref, item.origin_format, "", f"conversion took over {SCORE_TIMEOUT_S} s"
        return
    except Exception as err:  # music21 and xml2abc raise anything on odd files
        yield item.ref, item.origin_format, "", f"conversion failed: {type(err).__name__}: {err}"
        return
    if not texts:
        yield item.ref, item.origin_format, "", "conversion produced no tune"
    for i, text in enumerate(texts):
        yield f"{item.ref}#{i}", item.origin_format, text, ""


class _time_limit:
    """Raise TimeoutError in the main thread of a worker after `seconds`."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self) -> None:
        if hasattr(signal, "SIGALRM"):
            signal.signal(signal.SIGALRM, self._raise)
            signal.alarm(self.seconds)

    def __exit__(self, *exc: object) -> None:
        if hasattr(signal, "SIGALRM"):
            signal.alarm(0)

    @staticmethod
    def _raise(*_: object) -> None:
        raise TimeoutError


def _with_composer(tune, composer: str):
    """Name the composer of a corpus score consistently (C: line and column)."""
    lines = [ln for ln in tune.abc.split("\n") if not ln.startswith("C:")]
    tune.abc = "\n".join(lines[:1] + [f"C:{composer}"] + lines[1:])
    tune.composer = composer
    return tune


def _reject(source: str, ref: str, reason: str) -> dict:
    file, _, index = ref.partition("#")
    return {
        "source": source,
        "file": file,
        "tune_index": int(index) if index.isdigit() else None,
        "reason": reason,
    }


def abc2midi_errors(tunes: list[str]) -> list[str]:
    """Run abc2midi (the reference ABC implementation) once over many tunes.

    Returns one entry per tune: "" if abc2midi reports no error, else its message.
    """
    if not tunes:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check.abc"
        starts, lines = [], []
        for n, tune in enumerate(tunes, start=1):
            starts.append(len(lines) + 1)
            lines += [f"X:{n}"] + tune.rstrip("\n").split("\n")[1:] + [""]
        path.write_text("\n".join(lines), encoding="utf-8")
        out = subprocess.run(
            ["abc2midi", str(path), "-c", "-quiet"],
            capture_output=True,
            text=True,
            errors="replace",
            cwd=tmp,
            timeout=600,
        )
    errors = [""] * len(tunes)
    import bisect

    for line in (out.stdout + out.stderr).splitlines():
        if not line.startswith("Error in line"):
            continue
        try:
            line_no = int(line.split("line-char ")[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        i = bisect.bisect_right(starts, line_no) - 1
        if 0 <= i < len(tunes) and not errors[i]:
            errors[i] = "abc2midi: " + line.split(" : ", 1)[-1].strip()
    return errors


def music21_errors(tunes: list[str]) -> list[str]:
    """Parse each tune with music21; "" where it parses, else the error."""
    import music21

    errors = []
    for tune in tunes:
        try:
            score = music21.converter.parse(tune, format="abc")
            errors.append("" if score.flatten().notes else "music21: no notes")
        except Exception as err:  # music21 raises many kinds on bad ABC
            errors.append(f"music21: {type(err).__name__}: {err}"[:200])
    return errors


def body_hash(abc: str) -> str:
    """Hash of the music (everything after the K: line) of a normalized tune."""
    return hashlib.sha1(abc[parse_header(abc).end :].encode()).hexdigest()


def split_of(abc: str) -> str:
    """Deterministic split from the body hash: tunes sharing music share a split."""
    bucket = int(body_hash(abc)[:8], 16) % 1000 / 1000
    if bucket < SPLITS["train"]:
        return "train"
    return "validation" if bucket < SPLITS["train"] + SPLITS["validation"] else "test"


def dedupe(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Remove exact duplicate tunes (same normalized text); keep the first."""
    seen: dict[str, str] = {}
    kept, rejects = [], []
    for record in records:
        digest = hashlib.sha1(record["abc"].encode()).hexdigest()
        if digest in seen:
            rejects.append(
                _reject(
                    record["source"], record["_ref"], f"duplicate of {seen[digest]}"
                )
            )
        else:
            seen[digest] = record["id"]
            kept.append(record)
    return kept, rejects


def save_corpus(
    records: list[dict], out: Path, manifest: dict, rejects: list[dict], overwrite: bool
) -> dict[str, int]:
    """Write DatasetDict + manifest + rejects atomically (temp folder, then rename)."""
    import datasets

    by_split: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for record in records:
        by_split[split_of(record["abc"])].append({k: record[k] for k in COLUMNS})
    features = datasets.Features(
        {
            k: datasets.Value("int32" if k in ("n_bars", "n_voices") else "string")
            for k in COLUMNS
        }
    )
    dd = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {k: [row[k] for row in rows] for k in COLUMNS}, features=features
            )
            for name, rows in by_split.items()
        }
    )
    counts = {name: len(rows) for name, rows in by_split.items()}
    per_source = Counter((r["source"], split_of(r["abc"])) for r in records)
    manifest["counts"] = {"total": len(records), "splits": counts}
    manifest["per_source"] = {
        src: {split: per_source.get((src, split), 0) for split in SPLITS}
        for src in sorted({r["source"] for r in records})
    }
    manifest["characters"] = {
        name: sum(len(r["abc"]) for r in rows) for name, rows in by_split.items()
    }
    manifest["rejects"] = {"total": len(rejects), "per_reason": _reason_counts(rejects)}

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # One shard per split, so an empty split still saves a loadable table.
        dd.save_to_disk(str(tmp), num_shards={name: 1 for name in dd})
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        with open(tmp / "rejects.jsonl", "w", encoding="utf-8") as f:
            for reject in rejects:
                f.write(json.dumps(reject, ensure_ascii=False) + "\n")
        if out.exists():
            if not overwrite:
                raise FileExistsError(out)
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _reason_counts(rejects: list[dict]) -> dict[str, int]:
    """Group reasons by their kind (numbers and quoted values stripped)."""
    import re

    kinds = Counter(
        re.sub(r"'[^']*'|\b\d+\b|\(.*?\)|of \S+$", "…", r["reason"]).strip()
        for r in rejects
    )
    return dict(kinds.most_common())
