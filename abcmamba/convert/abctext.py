"""ABC text rewrites that make other readers play what abc2midi plays.

abc2xml (our ABC reader) and music21 differ from abc2midi, the reference
implementation, in two places this module settles in the text itself:
accidentals carry to later notes of the same letter in *any* octave until the
bar line (abc2midi's default ``%%propagate-accidentals pitch``), and repeats
and first/second endings are played out in full for MIDI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<comment>%.*$)
  | (?P<quote>"[^"\n]*"?)
  | (?P<deco>![^!\n]*!|\+[^+\n:|]*\+)
  | (?P<field>\[[A-Za-z]:[^\]\n]*\])
  | (?P<bar>(?:\[\|:*|:*\|[\]|]*:*|::+)(?:\[?(?P<ending>\d+(?:[-,]\d+)*))?)
  | (?P<ending_alone>\[(?P<ending2>\d+(?:[-,]\d+)*))
  | (?P<note>(?P<acc>\^{1,2}|_{1,2}|=)?(?P<letter>[A-Ga-g])(?P<octave>[,']*))
  | (?P<other>.)
    """,
    re.VERBOSE | re.MULTILINE,
)
_FIELD_LINE = re.compile(r"^[A-Za-z+]:")


@dataclass
class Token:
    """One lexical item of an ABC body line."""

    kind: str
    text: str
    endings: tuple[int, ...] = ()


def _endings(spec: str | None) -> tuple[int, ...]:
    if not spec:
        return ()
    numbers: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        numbers.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(numbers)


def tokenize(line: str) -> list[Token]:
    """Split one body line into comments, fields, bars, notes and the rest."""
    tokens = []
    for match in _TOKEN.finditer(line):
        kind = match.lastgroup
        if kind in ("ending", "ending2", "acc", "letter", "octave"):
            kind = next(k for k in ("bar", "ending_alone", "note") if match.group(k))
        if kind == "ending_alone":
            tokens.append(
                Token("bar", match.group(0), _endings(match.group("ending2")))
            )
        elif kind == "bar":
            tokens.append(Token("bar", match.group(0), _endings(match.group("ending"))))
        else:
            tokens.append(Token(kind, match.group(0)))
    return tokens


def split_header(abc: str) -> tuple[list[str], list[str]]:
    """(header lines up to and including the first K:, body lines)."""
    lines = abc.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("K:"):
            return lines[: i + 1], lines[i + 1 :]
    return lines, []


# Header fields that carry no music: notes, origin, source, transcriber,
# history, book, discography, file, group, area, words.
_TEXT_FIELDS = tuple(f"{letter}:" for letter in "NOSZHBDFGAW")


def drop_text_fields(abc: str) -> str:
    """The tune without free-text header fields, which abc2xml can misread as music."""
    header, body = split_header(abc)
    kept = [
        line
        for i, line in enumerate(header)
        if i == 0
        or line.startswith("%")
        or (_FIELD_LINE.match(line) and not line.startswith(_TEXT_FIELDS))
    ]
    return "\n".join(kept + body) + "\n"


def propagate_accidentals(abc: str) -> str:
    """Write out accidentals that carry through the bar, in every octave."""
    header, body = split_header(abc)
    out = []
    carried: dict[str, str] = {}  # letter (upper case) -> accidental in this bar
    for line in body:
        if _FIELD_LINE.match(line):
            if line.startswith(("V:", "K:")):
                carried = {}
            out.append(line)
            continue
        pieces = []
        for token in tokenize(line):
            if token.kind == "bar" or (token.kind == "field" and token.text[1] in "VK"):
                carried = {}
            elif token.kind == "note":
                match = _TOKEN.match(token.text)
                acc, letter = match.group("acc"), match.group("letter")
                if acc:
                    carried[letter.upper()] = acc
                elif letter.upper() in carried:
                    token.text = carried[letter.upper()] + token.text
            pieces.append(token.text)
        out.append("".join(pieces))
    return "\n".join(header + out) + "\n"


def _voices(
    body: list[str],
) -> tuple[list[str], dict[str, str], dict[str, list[Token]]]:
    """Body split into voices: (order, first V: line, tokens) per voice id."""
    order: list[str] = []
    heads: dict[str, str] = {}
    tokens: dict[str, list[Token]] = {}
    current = ""

    def switch(voice_id: str, head: str) -> str:
        if voice_id not in tokens:
            order.append(voice_id)
            tokens[voice_id] = []
            heads[voice_id] = head
        return voice_id

    for line in body:
        if line.startswith("V:"):
            voice_id = line[2:].split()[0] if line[2:].split() else ""
            current = switch(voice_id, line)
            continue
        if _FIELD_LINE.match(line):
            switch(current, "")
            # A field line must start a line of its own after expansion.
            tokens[current].append(Token("other", "\n" + line + "\n"))
            continue
        switch(current, "")
        for token in tokenize(line):
            if token.kind == "field" and token.text.startswith("[V:"):
                voice_id = token.text[3:-1].split()[0]
                current = switch(voice_id, f"V:{voice_id}")
                continue
            if token.kind != "comment":
                tokens[current].append(token)
        tokens[current].append(Token("other", "\n"))
    return order, heads, tokens


def _is_end(bar: Token) -> bool:
    return bar.text.lstrip("[").startswith(":")


def _is_start(bar: Token) -> bool:
    return bar.text.rstrip("0123456789,-[").endswith(":")


def _expand(tokens: list[Token]) -> list[str]:
    """Play one voice's tokens through its repeats and endings, abc2midi-style."""
    out: list[str] = []

    def emit_bar() -> None:
        # One "|" between stretches of music: a repeat jump must not leave an
        # empty measure behind ("| |"), which readers turn into a bar of rest.
        for text in reversed(out):
            if text.strip():
                if text != "|":
                    out.append("|")
                return

    start, pass_no, i = 0, 1, 0
    guard = 4 * len(tokens) + 100  # malformed repeats must not loop forever
    while i < len(tokens) and guard > 0:
        guard -= 1
        token = tokens[i]
        if token.kind != "bar":
            out.append(token.text)
            i += 1
            continue
        if _is_end(token):
            if pass_no == 1:
                emit_bar()
                pass_no, i = 2, start
                continue
            pass_no = 1
            start = i + 1
        if _is_start(token):
            start, pass_no = i + 1, 1
        emit_bar()
        if token.endings and pass_no not in token.endings:
            # Skip this ending: jump to the next bar that opens our pass's
            # ending, or past the repeat sign that closes this one.
            j = i + 1
            while j < len(tokens):
                bar = tokens[j]
                if bar.kind == "bar" and (pass_no in bar.endings):
                    break
                if bar.kind == "bar" and _is_end(bar) and not bar.endings:
                    # The skipped ending closed with a bare ":|"; a "[2" may
                    # still follow it, otherwise the repeat is over.
                    j += 1
                    following = next((t for t in tokens[j:] if t.kind == "bar"), None)
                    if following is None or pass_no not in following.endings:
                        pass_no, start = 1, j
                    break
                j += 1
            i = j
            if i < len(tokens) and pass_no in tokens[i].endings:
                # Entering the later ending: the repeat is done, but (as in
                # abc2midi) the next bare `:|` still goes back to the old start.
                pass_no = 1
                i += 1
            continue
        i += 1
    return out


def parse_part_order(spec: str) -> list[str]:
    """Play order of a header `P:` field: 'A(BC)2' -> ['A', 'B', 'C', 'B', 'C']."""
    spec = re.sub(r"[^A-Za-z0-9()]", "", spec.split("%")[0])

    def sequence(pos: int) -> tuple[list[str], int]:
        items: list[list[str]] = []
        while pos < len(spec) and spec[pos] != ")":
            if spec[pos] == "(":
                inner, pos = sequence(pos + 1)
                items.append(inner)
                pos += 1  # the ")"
            elif spec[pos].isdigit():
                digits = re.match(r"\d+", spec[pos:]).group(0)
                if items:
                    items[-1] = items[-1] * max(int(digits), 1)
                pos += len(digits)
            else:
                items.append([spec[pos]])
                pos += 1
        return [name for item in items for name in item], pos

    return sequence(0)[0]


def _parts(abc: str) -> tuple[list[str], list[str], dict[str, list[str]]] | None:
    """(header, play order, body lines per part) if the tune has P: parts."""
    header, body = split_header(abc)
    order_fields = [line[2:] for line in header if line.startswith("P:")]
    if not order_fields:
        return None
    order = parse_part_order(order_fields[0])
    sections: dict[str, list[str]] = {}
    current = None
    for line in body:
        if line.startswith("P:"):
            current = line[2:].strip()[:1]
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
    if len(order) < 2 or not sections or any(p not in sections for p in order):
        return None
    return [h for h in header if not h.startswith("P:")], order, sections


def expand_repeats(abc: str) -> str:
    """The tune with repeats, endings and the header's P: order written out."""
    parts = _parts(abc)
    if parts is not None:
        # abc2midi plays the parts in the header's order, each with its own
        # repeats.
        header, order, sections = parts
        out = list(header)
        for name in order:
            section = "\n".join(header + sections[name])
            out += split_header(_expand_voices(section))[1]
        return "\n".join(out) + "\n"
    return _expand_voices(abc)


def _expand_voices(abc: str) -> str:
    header, body = split_header(abc)
    order, heads, tokens = _voices(body)
    out = list(header)
    for voice_id in order:
        if heads[voice_id]:
            out.append(heads[voice_id])
        elif voice_id:
            out.append(f"V:{voice_id}")
        text = "".join(_expand(tokens[voice_id]))
        out.extend(line for line in text.splitlines() if line.strip())
    return "\n".join(out) + "\n"
