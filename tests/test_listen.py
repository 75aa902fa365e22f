"""`abcmamba listen`: the real server on a loopback port, driven by headless Chromium,
its refusals, and the report's statistics against scipy by hand."""

from __future__ import annotations

import base64
import http.client
import importlib.util
import io
import json
import logging
import math
import os
import queue
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from abcmamba import UserError
from abcmamba.abc.text import read_abc_file
from abcmamba.listen.db import QUESTIONS, ResultsDB
from abcmamba.listen.midi import strip_midi_text
from abcmamba.listen.report import holm, make_report, write_report
from abcmamba.listen.samples import (
    TARGET_RMS,
    Sample,
    blind_abc,
    find_samples,
    find_soundfont,
    parse_samples_arg,
    sample_id,
)
from abcmamba.listen.server import ListenApp, ListenConfig, make_server

DATA = Path(__file__).parent / "data" / "listen_samples"
FOLDERS = [DATA / "modelA", DATA / "modelB", f"{DATA / 'real'}=real"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# One generous limit for everything that waits (a port answering, a line printed,
# a page condition): each wait ends as soon as the thing is ready, so only a hang
# runs into it. The test machine's cores are often busy with other work.
PATIENCE = 300.0


def _folders() -> list[tuple[Path, str]]:
    return [parse_samples_arg(str(f)) for f in FOLDERS]


class Running:
    """A listening-test server on a free loopback port, served from a thread."""

    def __init__(self, tmp: Path, folders: list | None = None, **options) -> None:
        self.db_path = tmp / "results.sqlite"
        self.db = ResultsDB(self.db_path)
        config = ListenConfig(
            samples=find_samples(folders or _folders()),
            db=self.db,
            cache_dir=tmp / "media",
            **options,
        )
        self.app = ListenApp(config)
        self.server = make_server(self.app, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    srv = Running(tmp_path_factory.mktemp("listen"), pairs_per_participant=2)
    yield srv
    srv.close()


def post(url: str, body: object, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=PATIENCE) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=PATIENCE) as resp:
            return resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers["Content-Type"]


# --- samples -------------------------------------------------------------------


def test_find_samples_labels_ids_and_multi_tune_files():
    samples = find_samples(_folders())
    by_source: dict[str, list[Sample]] = {}
    for s in samples:
        by_source.setdefault(s.source, []).append(s)
    assert sorted(by_source) == ["modelA", "modelB", "real"]
    assert [s.name for s in by_source["real"]] == ["kinder#1", "kinder#2", "kinder#3"]
    assert all(s.is_human == (s.source == "real") for s in samples)
    # ids are a stable hash of source and file name, unique across sources
    assert by_source["modelA"][0].id == sample_id("modelA", "sample_000")
    assert sample_id("modelA", "sample_000") != sample_id("modelB", "sample_000")
    assert [s.id for s in find_samples(_folders())] == [s.id for s in samples]
    a0 = by_source["modelA"][0]
    assert set(a0.files) == {"abc", "midi", "svg"}
    assert a0.abc.startswith("X:1")


def test_bad_samples_folders(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        parse_samples_arg(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="label"):
        parse_samples_arg(f"{tmp_path}=bad label")
    (tmp_path / "notes.txt").write_text("nothing to hear")
    with pytest.raises(UserError, match="no .abc"):
        find_samples([(tmp_path, "empty")])


def test_blind_abc_hides_title_composer_origin(data_tunes):
    tune = data_tunes("listen_samples/real/kinder.abc")[0]
    blind = blind_abc(tune)
    assert (
        "T:" in tune and "T:" not in blind and "O:" not in blind and "N:" not in blind
    )
    assert "M: 2/4" in blind and "K: Bb" in blind and "B3FB2c2" in blind


def test_midi_is_made_from_abc_without_abc2midi(tmp_path, monkeypatch):
    from music21 import midi

    from abcmamba.listen import samples as samples_module

    real = [s for s in find_samples(_folders()) if s.source == "real"][0]
    monkeypatch.setattr(samples_module.shutil, "which", lambda name: None)
    media = samples_module.MediaStore(tmp_path).prepare(real)
    mf = midi.MidiFile()
    mf.open(str(media["midi"]))
    mf.read()
    mf.close()
    pitches = [e.pitch for t in mf.tracks for e in t.events if e.isNoteOn()]
    # first bar of "Unser Hans hat Hosen an" (K:Bb): G3 D G2 A2 | B3 A G2
    assert pitches[:6] == [67, 62, 67, 69, 70, 69]
    assert "audio" not in media  # nothing rendered unless asked


# A real tune with guitar chords: abc2midi would add an accompaniment channel and
# accent the beats; the model's tunes never get either.
CHORDED = """X:1
T:Chorded Waltz
M:3/4
L:1/8
K:G
"G"B2 d2 g2|"D"f2 a2 f2|"Em"g2 e2 "C"c2|"D"d6|]
"""
CHORDED_MELODY = [71, 74, 79, 78, 81, 78, 79, 76, 72, 74]


def _midi_notes(path: Path) -> list[tuple[int, int, int]]:
    """(channel, pitch, velocity) of every sounding note-on, in file order."""
    from music21 import midi

    mf = midi.MidiFile()
    mf.open(str(path))
    mf.read()
    mf.close()
    return [
        (e.channel, e.pitch, e.velocity)
        for t in mf.tracks
        for e in t.events
        if e.type == midi.ChannelVoiceMessages.NOTE_ON and e.velocity > 0
    ]


def test_every_source_is_rendered_by_one_engine(tmp_path, monkeypatch):
    from abcmamba.listen import samples as samples_module

    generated, real = tmp_path / "gen", tmp_path / "real"
    generated.mkdir()
    real.mkdir()
    for suffix in (".abc", ".mid"):  # the generator's own MIDI is not played
        shutil.copy(DATA / "modelA" / f"sample_000{suffix}", generated)
    (generated / "sample_000.wav").write_bytes(b"RIFF not played")
    (real / "chorded.abc").write_text(CHORDED)
    rendered = []
    engine = samples_module.abc_to_midi
    monkeypatch.setattr(
        samples_module,
        "abc_to_midi",
        lambda abc, out: rendered.append(abc) or engine(abc, out),
    )
    store = samples_module.MediaStore(tmp_path / "media")
    media = {
        s.source: store.prepare(s)
        for s in find_samples([(generated, "modelA"), (real, "real")])
    }
    assert len(rendered) == 2 and "audio" not in media["modelA"]
    for source, path in (
        ("modelA", generated / "sample_000.abc"),
        ("real", real / "chorded.abc"),
    ):
        engine(blind_abc(read_abc_file(path)), tmp_path / "by_hand.mid")
        by_hand = strip_midi_text((tmp_path / "by_hand.mid").read_bytes())
        assert media[source]["midi"].read_bytes() == by_hand
    notes = _midi_notes(media["real"]["midi"])
    assert [p for _, p, _ in notes] == CHORDED_MELODY  # no accompaniment
    assert len({c for c, _, _ in notes}) == 1 and len({v for _, _, v in notes}) == 1


# --- server: refusals, with urllib ----------------------------------------------


def test_plan_is_blind_and_media_is_served(running):
    status, plan = post(running.url + "/api/session", {})
    assert status == 201
    assert len(plan["participant"]) == 32
    assert sorted(plan["pieces"]) == sorted(running.app.by_id)
    assert len(plan["pairs"]) == 2
    for a, b in plan["pairs"]:
        assert running.app.by_id[a].is_human != running.app.by_id[b].is_human
    text = json.dumps(plan)
    for leak in ("modelA", "modelB", "real", "kinder", "sample_0"):
        assert leak not in text
    sid = plan["pieces"][0]
    status, body, ctype = get(running.url + plan["media"][sid]["midi"])
    assert (status, body[:4], ctype) == (200, b"MThd", "audio/midi")
    for other in plan["pieces"]:  # abc2midi writes titles as track names
        midi = get(running.url + plan["media"][other]["midi"])[1]
        assert b"note track" not in midi and b"UNSER" not in midi.upper()
    status, body, ctype = get(running.url + plan["media"][sid]["svg"])
    assert status == 200 and ctype == "image/svg+xml" and b"<svg" in body
    assert b"SCHLAF" not in body and b"UNSER HANS" not in body  # titles stay hidden


def test_bad_submissions_are_refused_and_logged(running, caplog):
    _, plan = post(running.url + "/api/session", {})
    pid, sid = plan["participant"], plan["pieces"][0]
    good = {"overall": 4, "musicality": 3, "human_likeness": 2}
    rate = running.url + "/api/rate"
    before = running.db.counts()["ratings"]
    with caplog.at_level(logging.WARNING, logger="abcmamba.listen.server"):
        assert post(rate, {"participant": pid, "sample": sid, "scores": good})[0] == 201
        cases = [
            ({"participant": pid, "sample": sid, "scores": good}, 409),  # repeated
            ({"participant": pid, "sample": sid, "scores": {"overall": 1}}, 409),
            *(
                ({"participant": pid, "sample": plan["pieces"][1], "scores": bad}, 400)
                for bad in (
                    {"overall": 0},
                    {"overall": 6},
                    {"overall": 3.5},
                    {"overall": "3"},
                    {"overall": True},
                    {"tempo": 3},
                )
            ),
            ({"participant": pid, "sample": "0123456789abcdef", "scores": good}, 404),
            ({"participant": "f" * 32, "sample": sid, "scores": good}, 403),
            ({"sample": sid, "scores": good}, 400),
        ]
        for body, expected in cases:
            assert post(rate, body)[0] == expected, body
        assert post(rate, None, raw=b"{not json")[0] == 400
        assert post(rate, None, raw=b"[1, 2]")[0] == 400
        assert post(rate, None, raw=b" " * (64 * 1024 + 1))[0] == 413
        conn = http.client.HTTPConnection("127.0.0.1", running.server.server_address[1])
        conn.putrequest("POST", "/api/rate")
        conn.endheaders()
        assert conn.getresponse().status == 411
        conn.close()
        # a mixed rating with one bad score stores nothing
        mixed = {
            "participant": pid,
            "sample": plan["pieces"][2],
            "scores": {**good, "overall": 9},
        }
        assert post(rate, mixed)[0] == 400
        humans = [s for s in plan["pieces"] if running.app.by_id[s].is_human]
        models = [s for s in plan["pieces"] if not running.app.by_id[s].is_human]
        choice = running.url + "/api/choice"
        two_models = {"participant": pid, "pair": models[:2], "chosen": models[0]}
        assert post(choice, two_models)[0] == 400
        outside = {
            "participant": pid,
            "pair": [humans[0], models[0]],
            "chosen": models[1],
        }
        assert post(choice, outside)[0] == 400
        ok = {"participant": pid, "pair": [humans[0], models[0]], "chosen": models[0]}
        assert post(choice, ok)[0] == 201
        assert post(choice, ok)[0] == 409
        assert get(running.url + "/media/../../etc/passwd")[0] == 404
        assert get(running.url + "/media/0123456789abcdef.mid")[0] == 404
        assert get(running.url + "/admin")[0] == 404
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == len(cases) + 4 + 1 + 3 + 3
    assert any("413" in r.getMessage() for r in rejected)
    assert running.db.counts()["ratings"] == before + 3
    with sqlite3.connect(running.db_path) as conn:
        row = conn.execute(
            "SELECT human_sample_id, model_sample_id, chosen_sample_id, correct, model_source"
            " FROM choices WHERE participant = ?",
            (pid,),
        ).fetchone()
    assert row == (
        humans[0],
        models[0],
        models[0],
        0,
        running.app.by_id[models[0]].source,
    )


def test_concurrent_submissions_are_all_kept_once(running):
    from concurrent.futures import ThreadPoolExecutor

    plans = [post(running.url + "/api/session", {})[1] for _ in range(4)]
    # every participant rates every piece, each rating sent twice at the same time
    jobs = [
        {
            "participant": p["participant"],
            "sample": sid,
            "scores": {"overall": 1 + i % 5},
        }
        for p in plans
        for i, sid in enumerate(p["pieces"])
    ] * 2
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(
            pool.map(lambda body: post(running.url + "/api/rate", body)[0], jobs)
        )
    n = len(jobs) // 2
    assert sorted(codes) == [201] * n + [409] * n
    with sqlite3.connect(running.db_path) as conn:
        stored = conn.execute(
            "SELECT COUNT(*) FROM ratings WHERE participant IN (?, ?, ?, ?)",
            [p["participant"] for p in plans],
        ).fetchone()[0]
    assert stored == n


# --- the participant page in headless Chromium ----------------------------------


# A format-1 MIDI file written by hand: 480 ticks per quarter, 120 bpm, then 60 bpm
# from tick 960; running status and a note-on with velocity 0 as note-off.
def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 127:
        n >>= 7
        out.insert(0, (n & 0x7F) | 0x80)
    return bytes(out)


def _track(events: list[tuple[int, bytes]]) -> bytes:
    data = b"".join(_vlq(d) + e for d, e in events) + b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(data)) + data


HAND_MIDI = (
    b"MThd"
    + struct.pack(">IHHH", 6, 1, 2, 480)
    + _track([(0, b"\xff\x51\x03\x07\xa1\x20"), (960, b"\xff\x51\x03\x0f\x42\x40")])
    + _track(
        [
            (0, b"\xc0\x49"),  # program change (flute), channel 0
            (0, b"\x90\x3c\x64"),  # C4 on
            (480, b"\x3c\x00"),  # running status: C4 off via velocity 0
            (0, b"\x3e\x50"),  # D4 on
            (480, b"\x80\x3e\x40"),  # D4 off at tick 960 (tempo change)
            (0, b"\x90\x40\x7f"),  # E4 on
            (480, b"\x40\x00"),  # E4 off at tick 1440
        ]
    )
)
# seconds: tick 480 = 0.5, 960 = 1.0, 1440 = 1.0 + 480 ticks at 1 s per quarter = 2.0
HAND_NOTES = [(0.0, 0.5, 60, 100), (0.5, 0.5, 62, 80), (1.0, 1.0, 64, 127)]


# The same music with a title, a track name and a marker that must not reach the page.
TEXT_MIDI = (
    b"MThd"
    + struct.pack(">IHHH", 6, 1, 2, 480)
    + _track(
        [
            (0, b"\xff\x03\x0cSecret Title"),
            (0, b"\xff\x51\x03\x07\xa1\x20"),
            (960, b"\xff\x51\x03\x0f\x42\x40"),
        ]
    )
    + _track(
        [
            (0, b"\xc0\x49"),
            (0, b"\x90\x3c\x64"),
            (240, b"\xff\x06\x06Marker"),  # half-way through C4
            (240, b"\x3c\x00"),  # running status across the dropped marker
            (0, b"\x3e\x50"),
            (480, b"\x80\x3e\x40"),
            (0, b"\xff\x01\x04Note"),
            (0, b"\x90\x40\x7f"),
            (480, b"\x40\x00"),
        ]
    )
)


def test_strip_midi_text_keeps_music_and_timing():
    stripped = strip_midi_text(TEXT_MIDI)
    for secret in (b"Secret", b"Marker", b"Note"):
        assert secret not in stripped
    assert strip_midi_text(HAND_MIDI) == HAND_MIDI  # nothing to drop: same bytes
    real = (DATA / "modelA" / "sample_000.mid").read_bytes()
    assert b"note track" in real and b"note track" not in strip_midi_text(real)
    with pytest.raises(ValueError):
        strip_midi_text(b"RIFF0000")
    with pytest.raises(ValueError):
        strip_midi_text(real[:-5])


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="needs selenium (pip install selenium)"
    )
    from selenium.webdriver.chrome.service import Service

    class PatientService(Service):
        """chromedriver waited on until its port answers: selenium alone gives up
        after about 30 s, which a busy machine can take to start it."""

        def is_connectable(self) -> bool:
            connectable = super().is_connectable

            def up_or_dead() -> bool:
                return connectable() or self.process.poll() is not None

            _until(up_or_dead)
            return connectable()

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=PatientService(CHROMEDRIVER))
    driver.set_script_timeout(PATIENCE)
    yield driver
    driver.quit()


def _wait(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, PATIENCE).until(condition)


def _until(ready, poll: float = 0.1) -> None:
    """Return as soon as ready() is true; fail after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while not ready():
        assert time.monotonic() < deadline, f"not ready after {PATIENCE:.0f} s"
        time.sleep(poll)


def test_js_midi_parser_reads_times_tempo_and_running_status(running, browser):
    browser.get(running.url + "/")
    notes = browser.execute_script(
        "const b = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
        "const song = ListenSynth.parseMidi(b.buffer);"
        "return [song.duration, song.notes.map(n => [n.time, n.duration, n.pitch, n.velocity,"
        " n.program])];",
        base64.b64encode(HAND_MIDI).decode(),
    )
    duration, parsed = notes
    assert duration == pytest.approx(2.0)
    assert len(parsed) == len(HAND_NOTES)
    for got, want in zip(parsed, HAND_NOTES, strict=True):
        assert got[:4] == pytest.approx(list(want))
        assert got[4] == 0x49
    for data in (TEXT_MIDI, strip_midi_text(TEXT_MIDI)):
        again = browser.execute_script(
            "const b = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
            "return ListenSynth.parseMidi(b.buffer).notes.map(n => [n.time, n.duration,"
            " n.pitch, n.velocity]);",
            base64.b64encode(data).decode(),
        )
        assert len(again) == len(HAND_NOTES)
        for got, want in zip(again, HAND_NOTES, strict=True):
            assert got == pytest.approx(list(want))
    # A real file: as many notes as abc2midi wrote note-ons (counted by music21).
    from music21 import midi

    path = DATA / "modelA" / "sample_001.mid"
    mf = midi.MidiFile()
    mf.open(str(path))
    mf.read()
    mf.close()
    note_ons = sum(
        1
        for t in mf.tracks
        for e in t.events
        if e.type == midi.ChannelVoiceMessages.NOTE_ON and e.velocity > 0
    )
    count = browser.execute_script(
        "return ListenSynth.parseMidi(Uint8Array.from(atob(arguments[0]),"
        " c => c.charCodeAt(0)).buffer).notes.length;",
        base64.b64encode(path.read_bytes()).decode(),
    )
    assert count == note_ons > 10


def test_js_synth_sounds_the_right_pitches_at_the_right_times(running, browser):
    browser.get(running.url + "/")
    rate = 8000
    samples = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const b = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
        "ListenSynth.renderOffline(ListenSynth.parseMidi(b.buffer), arguments[1])"
        ".then(buf => done(Array.from(buf.getChannelData(0))), err => done(String(err)));",
        base64.b64encode(HAND_MIDI).decode(),
        rate,
    )
    assert isinstance(samples, list), samples
    audio = np.asarray(samples)
    assert len(audio) == int(2.5 * rate)

    def pitch(t0: float, t1: float) -> float:
        window = audio[int(t0 * rate) : int(t1 * rate)]
        spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
        return np.fft.rfftfreq(len(window), 1 / rate)[spectrum.argmax()]

    for (start, duration, midi_pitch, _), resolution in zip(
        HAND_NOTES, (4, 4, 2), strict=True
    ):
        expected = 440 * 2 ** ((midi_pitch - 69) / 12)
        assert pitch(start + 0.05, start + duration - 0.05) == pytest.approx(
            expected, abs=resolution
        )
    assert np.sqrt(np.mean(audio[int(0.1 * rate) : int(1.9 * rate)] ** 2)) > 0.01
    assert np.abs(audio[int(2.2 * rate) :]).max() < 1e-3  # released after the last note
    assert np.abs(audio).max() < 1.0  # no clipping


def test_participant_page_stores_ratings_and_choices(running, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(running.url + "/")
    assert "agree" in browser.find_element(By.ID, "consent").text
    browser.find_element(By.ID, "agree").click()
    shown: dict[str, dict[str, int]] = {}
    rng = random.Random(7)
    for i in range(len(running.app.by_id)):
        _wait(browser, ec.visibility_of_element_located((By.ID, "rate")))
        _wait(
            browser,
            lambda d, i=i: d.find_element(By.ID, "rate-progress").text.startswith(
                f"Piece {i + 1} "
            ),
        )
        play = browser.find_element(By.CSS_SELECTOR, "#rate-player button")
        _wait(browser, lambda d, b=play: b.text == "Play")  # MIDI fetched and parsed
        if i == 0:
            play.click()  # the synth starts and can be stopped
            _wait(browser, lambda d, b=play: b.text == "Stop")
            play.click()
            assert play.text == "Play"
        sheet = browser.find_element(By.ID, "rate-sheet")
        _wait(
            browser,
            lambda d, s=sheet: d.execute_script("return arguments[0].naturalWidth", s)
            > 0,
        )
        sid = browser.find_element(By.ID, "rate-form").get_attribute("data-sample")
        submit = browser.find_element(By.ID, "submit-rating")
        scores = {q: rng.randint(1, 5) for q in QUESTIONS}
        for q, v in scores.items():
            assert not submit.is_enabled()  # only once every question is answered
            browser.find_element(By.ID, f"q-{q}-{v}").click()
        assert submit.is_enabled()
        submit.click()
        shown[sid] = scores
    pairs = []
    while True:
        _wait(
            browser,
            lambda d: d.find_element(By.ID, "pair").is_displayed()
            or d.find_element(By.ID, "done").is_displayed(),
        )
        if browser.find_element(By.ID, "done").is_displayed():
            break
        pair = browser.find_element(By.ID, "pair").get_attribute("data-pair").split(",")
        for box in ("player-a", "player-b"):
            _wait(
                browser,
                lambda d, box=box: d.find_element(
                    By.CSS_SELECTOR, f"#{box} button"
                ).text
                == "Play",
            )
        browser.find_element(By.ID, "choose-a").click()
        pairs.append(pair)
        _wait(
            browser,
            lambda d, p=pair: d.find_element(By.ID, "done").is_displayed()
            or d.find_element(By.ID, "pair").get_attribute("data-pair").split(",") != p,
        )
    assert len(pairs) == 2
    assert sorted(shown) == sorted(running.app.by_id)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe

    with sqlite3.connect(running.db_path) as conn:
        pid = conn.execute(
            "SELECT participant FROM ratings WHERE sample_id = ? ORDER BY id DESC LIMIT 1",
            (next(iter(shown)),),
        ).fetchone()[0]
        rows = conn.execute(
            "SELECT sample_id, source, question, score, timestamp FROM ratings"
            " WHERE participant = ?",
            (pid,),
        ).fetchall()
        choices = conn.execute(
            "SELECT human_sample_id, model_sample_id, chosen_sample_id, correct FROM choices"
            " WHERE participant = ? ORDER BY id",
            (pid,),
        ).fetchall()
    assert len(rows) == 3 * len(shown)
    for sid, source, question, score, ts in rows:
        assert score == shown[sid][question]
        assert source == running.app.by_id[sid].source
        assert ts.endswith("+00:00")
    assert len(choices) == 2
    for (human, model, chosen, correct), pair in zip(choices, pairs, strict=True):
        assert sorted([human, model]) == sorted(pair) and chosen == pair[0]
        assert correct == int(chosen == human) and running.app.by_id[human].is_human


# --- the CLI: a real process, answers survive Ctrl-C ----------------------------


def _read_lines(stream) -> queue.Queue:
    """The stream's lines as they come, from a thread (None at its end), so that a
    wait for one line can end at a deadline and the pipe never fills."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for_line(lines: queue.Queue, text: str, seen: list[str]) -> str | None:
    """The first line containing text (None if the stream ends first); lines read
    are added to seen. Fails after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no {text!r} after {PATIENCE:.0f} s:\n{''.join(seen)}")
        if line is None:
            return None
        seen.append(line)
        if text in line:
            return line


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cli_serves_on_loopback_and_keeps_answers_after_interrupt(tmp_path):
    db = tmp_path / "r.sqlite"
    cmd = [sys.executable, "-m", "abcmamba.cli", "listen", "--port", "0", "--db", str(db),
           "--pairs", "0"] + [a for f in FOLDERS for a in ("--samples", str(f))]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # a shell's background job ignores SIGINT, and its children inherit
        # that: Ctrl-C must reach the server however pytest was started
        preexec_fn=_sigint_default,
    )
    lines, seen = _read_lines(proc.stderr), []
    try:
        ready = _wait_for_line(lines, "listening test at ", seen)
        assert ready, "".join(seen)
        url = ready.split("listening test at ")[1].split()[0].rstrip("/")
        assert url.startswith("http://127.0.0.1:")
        _, plan = post(url + "/api/session", {})
        assert plan["pairs"] == []
        body = {
            "participant": plan["participant"],
            "sample": plan["pieces"][0],
            "scores": {"overall": 5},
        }
        assert post(url + "/api/rate", body)[0] == 201
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    _wait_for_line(lines, "\0", seen)  # the rest of its output, to its end
    assert proc.returncode == 0, "".join(seen)
    assert "answers so far" in "".join(seen)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT score FROM ratings").fetchall() == [(5,)]


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")
def test_render_audio_with_fluidsynth(tmp_path, request):
    soundfont = find_soundfont()
    if soundfont is None:
        pytest.skip(
            "needs a General MIDI soundfont (timgm6mb-soundfont or fluid-soundfont-gm)"
        )
    modela = [(DATA / "modelA", "modelA")]  # two tunes: rendering is the slow part
    srv = Running(
        tmp_path,
        modela,
        render_audio=True,
        soundfont=soundfont,
        pairs_per_participant=0,
    )
    try:
        _, plan = post(srv.url + "/api/session", {})
        media = plan["media"][plan["pieces"][0]]
        assert media["kind"] == "audio"
        status, body, ctype = get(srv.url + media["audio"])
        assert status == 200 and ctype == "audio/wav" and body[:4] == b"RIFF"
        with wave.open(io.BytesIO(body)) as wav:
            seconds = wav.getnframes() / wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        assert seconds > 5 and np.abs(pcm).max() > 1000  # the tune, audibly
        for sid in plan["pieces"]:  # every piece equally loud, none clipped
            with wave.open(io.BytesIO(get(srv.url + f"/media/{sid}.audio")[1])) as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
            level = pcm / 32768
            assert np.sqrt(np.mean(level**2)) == pytest.approx(TARGET_RMS, rel=0.01)
            assert np.abs(level).max() <= 0.9
        if CHROMIUM and CHROMEDRIVER and importlib.util.find_spec("selenium"):
            # the page plays it with an <audio> element
            from selenium.webdriver.common.by import By

            browser = request.getfixturevalue("browser")
            browser.get(srv.url + "/")
            browser.find_element(By.ID, "agree").click()
            audio = _wait(
                browser, lambda d: d.find_element(By.CSS_SELECTOR, "#rate-player audio")
            )
            assert audio.get_attribute("src").endswith(".audio")
            _wait(
                browser,
                lambda d: d.execute_script("return arguments[0].duration", audio) > 5,
            )
    finally:
        srv.close()


# --- the report: statistics against scipy by hand ------------------------------


def _synthetic_db(path: Path) -> tuple[dict, dict]:
    db = ResultsDB(path)
    sources = {"mamba": False, "llama": False, "real": True}
    samples = {src: [Sample(sample_id(src, f"t{i}"), src, f"t{i}", h) for i in range(4)]
               for src, h in sources.items()}  # fmt: skip
    db.register_samples(s for ss in samples.values() for s in ss)
    rng = random.Random(0)
    centre = {"mamba": 3.4, "llama": 2.6, "real": 4.1}
    scores: dict[tuple[str, str], list[int]] = {}
    for _ in range(6):
        pid = db.new_participant()
        for src, ss in samples.items():
            for s in ss:
                sc = {
                    q: min(5, max(1, round(rng.gauss(centre[src], 1.0))))
                    for q in QUESTIONS
                }
                db.add_ratings(pid, s, sc)
                for q, v in sc.items():
                    scores.setdefault((src, q), []).append(v)
        for model in ("mamba", "llama"):
            for k in range(3):
                human, gen = samples["real"][k], samples[model][k]
                # people find the real tune against llama more often than against mamba
                right = rng.random() < (0.55 if model == "mamba" else 0.9)
                db.add_choice(pid, human, gen, human if right else gen)
    with sqlite3.connect(path) as conn:
        correct = dict(
            conn.execute(
                "SELECT model_source, SUM(correct) FROM choices GROUP BY model_source"
            )
        )
    return scores, correct


def test_report_matches_scipy_by_hand(tmp_path):
    scores, correct = _synthetic_db(tmp_path / "r.sqlite")
    report = make_report(tmp_path / "r.sqlite", confidence=0.95)
    assert report["n_participants"] == 6 and report["n_ratings"] == 6 * 12 * 3
    assert report["n_choices"] == 36 and report["sources"]["real"] is True

    mos = {(r["source"], r["question"]): r for r in report["mos"]}
    for (src, q), xs in scores.items():
        low, high = stats.t.interval(
            0.95, len(xs) - 1, loc=sum(xs) / len(xs), scale=stats.sem(xs)
        )
        r = mos[src, q]
        assert r["n"] == 24 and r["n_participants"] == 6
        assert r["mean"] == pytest.approx(sum(xs) / len(xs))
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))

    for q in QUESTIONS:
        rows = [t for t in report["mann_whitney"] if t["question"] == q]
        assert [(t["a"], t["b"]) for t in rows] == [
            ("llama", "mamba"),
            ("llama", "real"),
            ("mamba", "real"),
        ]
        ps = [
            stats.mannwhitneyu(scores[t["a"], q], scores[t["b"], q]).pvalue
            for t in rows
        ]
        order = sorted(range(3), key=lambda i: ps[i])
        by_hand = [0.0] * 3
        by_hand[order[0]] = min(1, 3 * ps[order[0]])
        by_hand[order[1]] = max(by_hand[order[0]], min(1, 2 * ps[order[1]]))
        by_hand[order[2]] = max(by_hand[order[1]], min(1, ps[order[2]]))
        for t, p, ph in zip(rows, ps, by_hand, strict=True):
            assert t["p"] == pytest.approx(p)
            assert t["p_holm"] == pytest.approx(ph)
            assert t["p_bonferroni"] == pytest.approx(min(1, 3 * p))
            u = stats.mannwhitneyu(scores[t["a"], q], scores[t["b"], q]).statistic
            assert t["rank_biserial"] == pytest.approx(2 * u / (24 * 24) - 1)
    # llama is centred lowest and real highest: that difference must be found
    overall = {
        (t["a"], t["b"]): t
        for t in report["mann_whitney"]
        if t["question"] == "overall"
    }
    assert (
        overall["llama", "real"]["significant"]
        and overall["llama", "real"]["rank_biserial"] < 0
    )

    # Wilcoxon: each participant's mean per source, paired by participant
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        per = {
            (p, src, q): mean
            for p, src, q, mean in conn.execute(
                "SELECT participant, source, question, AVG(score) FROM ratings"
                " GROUP BY participant, source, question"
            )
        }
    pids = sorted({p for p, _, _ in per})
    for t in report["wilcoxon"]:
        xa = [per[p, t["a"], t["question"]] for p in pids]
        xb = [per[p, t["b"], t["question"]] for p in pids]
        res = stats.wilcoxon(xa, xb)
        assert t["n_participants"] == 6
        assert (t["w"], t["p"]) == pytest.approx((res.statistic, res.pvalue))
    assert len(report["wilcoxon"]) == 3 * len(QUESTIONS)

    ident = {r["model"]: r for r in report["identification"]}
    for model in ("mamba", "llama"):
        k = correct[model]
        assert ident[model]["correct"] == k and ident[model]["n"] == 18
        assert ident[model]["p"] == pytest.approx(stats.binomtest(k, 18).pvalue)
    assert ident["all"]["n"] == 36
    assert ident["all"]["p"] == pytest.approx(
        stats.binomtest(sum(correct.values()), 36).pvalue
    )

    paths = write_report(report, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["identification.png", "mos.png", "report.json", "report.md"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["n_choices"] == 36
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| overall | real (human) | 24 | 6 |" in md and "![mos](mos.png)" in md
    assert "## Wilcoxon signed-rank on per-participant means" in md
    for png in ("mos.png", "identification.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wilcoxon_on_per_participant_means_has_the_known_answer(tmp_path):
    db = ResultsDB(tmp_path / "r.sqlite")
    samples = {src: [Sample(sample_id(src, f"t{i}"), src, f"t{i}", src == "real")
                     for i in range(2)] for src in ("model", "other", "real")}  # fmt: skip
    db.register_samples(s for ss in samples.values() for s in ss)
    # model's two tunes per participant: means 1.5, 2, ..., 4 against real's 1 and
    # other's 1, so all six differences are positive and of distinct size: W = 0
    # and the exact two-sided p is 2 / 2**6.
    model_scores = [(2, 1), (2, 2), (3, 2), (3, 3), (4, 3), (4, 4)]
    for pair in model_scores:
        pid = db.new_participant()
        for src in ("model", "other", "real"):
            scores = pair if src == "model" else (1, 1)
            for sample, score in zip(samples[src], scores, strict=True):
                db.add_ratings(pid, sample, {"overall": score})
    only_model = db.new_participant()  # rated one source: in no pair
    db.add_ratings(only_model, samples["model"][0], {"overall": 5})

    report = make_report(tmp_path / "r.sqlite")
    rows = {(t["a"], t["b"]): t for t in report["wilcoxon"]}
    assert sorted(rows) == [("model", "other"), ("model", "real"), ("other", "real")]
    for pair in (("model", "other"), ("model", "real")):
        t = rows[pair]
        assert (t["n_participants"], t["w"]) == (6, 0.0)
        assert t["p"] == pytest.approx(2 / 2**6)
        assert t["mean_diff"] == pytest.approx(1.75)
        assert t["p_holm"] == pytest.approx(3 * 2 / 2**6)  # the smallest of three
    tied = rows["other", "real"]  # nobody told them apart
    assert (tied["n_participants"], tied["w"], tied["p"], tied["mean_diff"]) == (
        6,
        0.0,
        1.0,
        0.0,
    )
    # unpaired, the same table is weaker evidence: 12 ratings against 12
    mw = {(t["a"], t["b"]): t for t in report["mann_whitney"]}
    assert mw["model", "real"]["n_a"] == 13 and mw["model", "real"]["n_b"] == 12
    write_report(report, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| overall | model | real | 6 | +1.75 | 0.0 | 0.0312 | 0.0938 |" in md


def test_holm_is_monotone_and_capped():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.6, 0.6]) == [1.0, 1.0]
    assert holm([]) == []
    assert math.isclose(holm([0.02])[0], 0.02)


def test_listen_report_cli(tmp_path):
    from abcmamba.cli import main

    _synthetic_db(tmp_path / "r.sqlite")
    assert (
        main(
            [
                "listen-report",
                "--db",
                str(tmp_path / "r.sqlite"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert (tmp_path / "o" / "report.md").is_file()
    assert main(["listen-report", "--db", str(tmp_path / "missing.sqlite")]) == 2
    ResultsDB(tmp_path / "empty.sqlite")
    assert (
        main(
            [
                "listen-report",
                "--db",
                str(tmp_path / "empty.sqlite"),
                "--out",
                str(tmp_path / "e"),
            ]
        )
        == 2
    )
