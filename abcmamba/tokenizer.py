"""Train and load the byte-level BPE tokenizer (the `abcmamba tokenizer` subcommand).

Byte-level BPE is lossless on any UTF-8 text.  Before BPE the text is split on
ABC structure (``--pretokenizer abc-bars``, the default): each header line and
each bar of music (up to and including its bar line) is a separate chunk, so no
token straddles a bar line or a field.  ``abc`` splits finer (beam groups, chord
symbols, decorations, inline fields), ``gpt2`` / ``none`` are the baselines.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from abcmamba import UserError

if TYPE_CHECKING:  # datasets is imported only by the functions that read a corpus
    from datasets import DatasetDict

logger = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, BOS, EOS]  # ids 0, 1, 2
META_FILE = "abcmamba_tokenizer.json"

# One alternative per ABC unit; the rest of a line falls through to "other".
ABC_SPLIT = (
    r"^[A-Za-z]:[^\n]*\n?"  # a whole header/field line: "M:6/8\n", "K:Dmix\n"
    r"|\[[A-Za-z]:[^\]\n]*\]"  # inline field: "[K:G]", "[V:1]"
    r"|\"[^\"\n]*\""  # chord symbol or annotation: "Am7"
    r"|![^!\n]*!"  # long decoration: "!trill!"
    r"|[|:\[\]]+[0-9,]*"  # bar lines and repeats: "|", ":|", "|]", "[1", "|:"
    r"|[^|:\[\]\"! \n]+"  # a beam group of notes up to the next bar/space
    r"| +"
    r"|\n"
)
# Coarser: a header line, or one bar of music ending with its bar line.
ABC_BARS_SPLIT = r"^[A-Za-z]:[^\n]*\n?" r"|[|:]*[^|\n]*(?:[|:\]]+[0-9]*|\n)" r"|[^\n]+"
# Variants compared, chars/token on the validation split of `data_prep music21:folk`
# at vocab 4096: abc-bars 3.43 (default), abc 2.16, abc-lines 3.65, none 3.83,
# gpt2 1.53.  abc-bars keeps every token inside one bar or header line.
PRETOKENIZERS = ("abc", "abc-bars", "abc-lines", "gpt2", "none")


def _pre_tokenizer(kind: str) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if kind == "abc":
        split = pre_tokenizers.Split(Regex(ABC_SPLIT), behavior="isolated")
        return pre_tokenizers.Sequence([split, byte_level])
    if kind == "abc-bars":
        split = pre_tokenizers.Split(Regex(ABC_BARS_SPLIT), behavior="isolated")
        return pre_tokenizers.Sequence([split, byte_level])
    if kind == "abc-lines":
        # coarser: merges may span notes and bars but never a line break
        split = pre_tokenizers.Split(Regex(r"[^\n]*\n?"), behavior="isolated")
        return pre_tokenizers.Sequence([split, byte_level])
    if kind == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if kind == "none":
        return byte_level
    raise UserError(f"unknown pretokenizer {kind!r}; choose one of {PRETOKENIZERS}")


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 4096,
    pretokenizer: str = "abc-bars",
    min_frequency: int = 2,
    model_max_length: int = 8192,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it as a fast HF tokenizer."""
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise UserError(f"--vocab-size must be at least {256 + len(SPECIAL_TOKENS)}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = _pre_tokenizer(pretokenizer)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # BOS only: an EOS here would end every pipeline prompt before generation.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer folder written by :func:`train_tokenizer` / save_pretrained."""
    path = Path(path)
    if (
        not (path / "tokenizer.json").is_file()
        and not (path / "tokenizer_config.json").is_file()
    ):
        raise UserError(f"no tokenizer in {path} (run `abcmamba tokenizer` first)")
    tok = AutoTokenizer.from_pretrained(str(path))
    if not getattr(tok, "is_fast", False):
        raise UserError(f"{path} holds a slow tokenizer; expected tokenizer.json")
    return tok


def chars_per_token(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> float:
    """Characters of ``texts`` per BPE token, special tokens not counted."""
    texts = list(texts)
    n_chars = sum(len(t) for t in texts)
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    n_tokens = sum(len(ids) for ids in enc)
    return n_chars / max(1, n_tokens)


def check_lossless(
    tokenizer: PreTrainedTokenizerFast, texts: Iterable[str]
) -> list[int]:
    """Indices of texts for which decode(encode(t)) != t (empty when lossless)."""
    bad = []
    for i, text in enumerate(texts):
        ids = tokenizer(text)["input_ids"]
        if tokenizer.decode(ids, skip_special_tokens=True) != text:
            bad.append(i)
    return bad


def load_corpus(
    data: str | Path, *splits: str, allow_empty: bool = False
) -> DatasetDict:
    """The DatasetDict of a data_prep folder, checked to hold each of ``splits``.

    Each needs an ``abc`` column and rows (none only with ``allow_empty``);
    anything else is a UserError.
    """
    from datasets import DatasetDict, load_from_disk

    data = Path(data)
    if not data.exists():
        raise UserError(
            f"--data {data} does not exist (build it with `python -m data_prep`)"
        )
    try:
        corpus = load_from_disk(str(data))
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"--data {data} is not a saved DatasetDict: {err}") from None
    except IndexError:  # what datasets raises for a split saved with zero rows
        raise UserError(f"--data {data} holds an empty split") from None
    if not isinstance(corpus, DatasetDict):
        raise UserError(f"--data {data} holds one Dataset, not a DatasetDict of splits")
    for split in splits:
        if split not in corpus:
            raise UserError(
                f"--data {data} has no {split!r} split (has {list(corpus)})"
            )
        if "abc" not in corpus[split].column_names:
            raise UserError(f"--data {data} split {split!r} has no 'abc' column")
        if not allow_empty and len(corpus[split]) == 0:
            raise UserError(f"--data {data} has an empty {split} split")
    return corpus


def load_corpus_split(data: str | Path, split: str) -> list[str]:
    """The non-empty ``abc`` texts of one split of a data_prep DatasetDict folder."""
    rows = load_corpus(data, split, allow_empty=True)[split]
    # datasets cannot read the column of a zero-row split, so check the length first
    texts = [t for t in rows["abc"] if t] if len(rows) else []
    if not texts and split == "train":
        raise UserError(f"--data {data} has an empty train split")
    return texts


def _batches(texts: list[str], size: int = 1000) -> Iterator[list[str]]:
    for i in range(0, len(texts), size):
        yield texts[i : i + size]


def build_and_save(
    data: str | Path,
    out: str | Path,
    vocab_size: int = 4096,
    pretokenizer: str = "abc-bars",
) -> dict:
    """Train on the train split of ``data``, save to ``out``, return the metadata."""
    start = time.time()
    train = load_corpus_split(data, "train")
    tok = train_tokenizer(
        _batches(train), vocab_size=vocab_size, pretokenizer=pretokenizer
    )
    try:
        validation = load_corpus_split(data, "validation")
    except UserError:
        validation = []
    eval_texts = validation or train
    bad = check_lossless(tok, eval_texts)
    if bad:
        raise RuntimeError(
            f"tokenizer is not lossless on {len(bad)} tunes, e.g. #{bad[0]}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out))
    meta = {
        "vocab_size": len(tok),
        "requested_vocab_size": vocab_size,
        "pretokenizer": pretokenizer,
        "corpus": str(Path(data).resolve()),
        "train_tunes": len(train),
        "train_chars": sum(len(t) for t in train),
        "chars_per_token_split": "validation" if validation else "train",
        "chars_per_token": round(chars_per_token(tok, eval_texts), 4),
        "lossless_checked_tunes": len(eval_texts),
        "special_tokens": {"pad": PAD, "bos": BOS, "eos": EOS},
        "seconds": round(time.time() - start, 1),
    }
    manifest = Path(data) / "manifest.json"
    if manifest.is_file():
        meta["corpus_manifest_sha"] = _sha(manifest)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    logger.info(
        "tokenizer: %d tokens, %.3f chars/token on %s, saved to %s",
        len(tok),
        meta["chars_per_token"],
        meta["chars_per_token_split"],
        out,
    )
    return meta


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `abcmamba tokenizer`."""
    parser.add_argument(
        "--data", default="data/corpus", help="data_prep DatasetDict folder"
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default: DATA/tokenizer)"
    )
    parser.add_argument(
        "--vocab-size", type=int, default=4096, help="BPE vocabulary size"
    )
    parser.add_argument(
        "--pretokenizer",
        choices=PRETOKENIZERS,
        default="abc-bars",
        help="how text is split before BPE: ABC units, lines, GPT-2 regex or not at all",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `abcmamba tokenizer`."""
    out = args.out or str(Path(args.data) / "tokenizer")
    meta = build_and_save(args.data, out, args.vocab_size, args.pretokenizer)
    logger.info("wrote %s", Path(out) / META_FILE)
    print(json.dumps(meta, indent=2))  # noqa: T201 - the command's result
    return 0
