"""Standard MIDI Files without their text: titles and names must not reach the page."""

from __future__ import annotations


def _read_vlq(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        if pos >= len(data):
            break
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos
    raise ValueError("bad variable-length number")


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.insert(0, (value & 0x7F) | 0x80)
    return bytes(out)


def strip_midi_text(data: bytes) -> bytes:
    """A Standard MIDI File without text meta events (title, track and instrument
    names, lyrics, markers); notes, tempo and everything else kept, timing exact."""
    if data[:4] != b"MThd" or len(data) < 14:
        raise ValueError("not a MIDI file")
    header_end = 8 + int.from_bytes(data[4:8], "big")
    out = bytearray(data[:header_end])
    pos = header_end
    while pos + 8 <= len(data):
        chunk_id, length = data[pos : pos + 4], int.from_bytes(
            data[pos + 4 : pos + 8], "big"
        )
        chunk = data[pos + 8 : pos + 8 + length]
        if len(chunk) < length:
            raise ValueError("truncated file")
        pos += 8 + length
        if chunk_id == b"MTrk":
            track = _strip_track(chunk)
            out += b"MTrk" + len(track).to_bytes(4, "big") + track
    return bytes(out)


def _strip_track(chunk: bytes) -> bytes:
    out = bytearray()
    pos, carry, status = 0, 0, 0
    try:
        while pos < len(chunk):
            delta, pos = _read_vlq(chunk, pos)
            start, byte = pos, chunk[pos]
            if byte == 0xFF:
                length, data_pos = _read_vlq(chunk, pos + 2)
                end = data_pos + length
                if 0x01 <= chunk[pos + 1] <= 0x07:
                    carry += delta  # the dropped event's time moves to the next one
                    pos = end
                    continue
            elif byte in (0xF0, 0xF7):
                length, data_pos = _read_vlq(chunk, pos + 1)
                end = data_pos + length
            else:
                # Running status is kept across meta events: some writers rely on it.
                if byte & 0x80:
                    status, pos = byte, pos + 1
                elif not status:
                    raise ValueError("data byte without status")
                end = pos + (1 if status & 0xF0 in (0xC0, 0xD0) else 2)
            out += _vlq(delta + carry) + chunk[start:end]
            carry, pos = 0, end
    except IndexError as err:
        raise ValueError("truncated track") from err
    if pos > len(chunk):
        raise ValueError("truncated track")
    return bytes(out)
