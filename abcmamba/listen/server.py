"""The listening-test web app: a participant page and a small JSON API on http.server.

Routes (everything else is 404):
    GET  /                      the participant page
    GET  /static/NAME           its script and style sheet
    POST /api/session           a new random participant id and a blind plan
    GET  /media/ID.mid|.wav|.svg  a sample's MIDI, rendered audio, sheet music
    POST /api/rate              {participant, sample, scores: {question: 1-5}}
    POST /api/choice            {participant, pair: [id, id], chosen: id}
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from abcmamba.listen.db import QUESTIONS, DuplicateAnswer, ResultsDB
from abcmamba.listen.samples import MediaStore, Sample, unfair_sources

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "synth.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
MEDIA_TYPES = {".mid": "audio/midi", ".wav": "audio/wav", ".ogg": "audio/ogg",
               ".mp3": "audio/mpeg", ".svg": "image/svg+xml"}  # fmt: skip
EXT = {"midi": "mid", "audio": "audio", "svg": "svg"}
MEDIA_PATH = re.compile(r"^/media/([0-9a-f]{16})\.(mid|audio|svg)$")


class Rejected(Exception):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class ListenConfig:
    """What the listening test serves and how many pieces each participant gets."""

    samples: list[Sample]
    db: ResultsDB
    cache_dir: Path
    pieces_per_participant: int = 0  # 0: every sample
    pairs_per_participant: int = 4  # forced "which is human" choices; 0: none
    render_audio: bool = False
    soundfont: Path | None = None
    max_body: int = MAX_BODY


class ListenApp:
    """State shared by all request threads: samples by id, media and database."""

    def __init__(self, config: ListenConfig) -> None:
        self.config = config
        store = MediaStore(config.cache_dir, config.soundfont)
        self.by_id: dict[str, Sample] = {}
        self.media: dict[str, dict[str, Path]] = {}  # sample id -> kind -> file
        for s in tqdm(
            config.samples, desc="preparing media", disable=len(config.samples) < 20
        ):
            media = store.prepare(s, config.render_audio)
            if "midi" not in media and "audio" not in media:
                logger.warning(
                    "skipping %s/%s: no audio could be made", s.source, s.name
                )
                continue
            self.by_id[s.id], self.media[s.id] = s, media
        config.db.register_samples(self.by_id.values())
        self._warn_unfair()
        self.humans = [s for s in self.by_id.values() if s.is_human]
        self.models = [s for s in self.by_id.values() if not s.is_human]
        if config.pairs_per_participant and not (self.humans and self.models):
            logger.warning(
                "no forced choice: it needs both real tunes and generated ones"
            )

    def _warn_unfair(self) -> None:
        # Sources must differ only in their music, not in how they are rendered.
        unfair = unfair_sources(list(self.by_id.values()))
        if unfair:
            logger.warning(
                "samples without ABC per source: %s; their own MIDI or audio is "
                "played as it is, not rendered like the others",
                unfair,
            )
        kinds = {"audio" if "audio" in m else "midi" for m in self.media.values()}
        if len(kinds) > 1:
            logger.warning(
                "some samples play rendered audio, others the page's synthesizer"
            )

    def plan(self) -> dict:
        """A new participant: random id, pieces in random order, random real/model pairs."""
        rng = random.SystemRandom()
        pieces = list(self.by_id)
        rng.shuffle(pieces)
        if self.config.pieces_per_participant:
            pieces = pieces[: self.config.pieces_per_participant]
        pairs = []
        if self.humans and self.models:
            humans, models = self.humans[:], self.models[:]
            rng.shuffle(humans)
            rng.shuffle(models)
            for i in range(min(self.config.pairs_per_participant, len(models))):
                pair = [humans[i % len(humans)].id, models[i].id]
                rng.shuffle(pair)  # the real tune is A or B at random
                pairs.append(pair)
        used = set(pieces) | {sid for pair in pairs for sid in pair}
        return {
            "participant": self.config.db.new_participant(),
            "questions": list(QUESTIONS),
            "pieces": pieces,
            "pairs": pairs,
            "media": {sid: self.media_urls(sid) for sid in used},
        }

    def media_urls(self, sid: str) -> dict[str, str]:
        """URLs of a sample's media; they carry only the opaque id."""
        media = self.media[sid]
        urls = {"kind": "audio" if "audio" in media else "midi"}
        urls.update({kind: f"/media/{sid}.{EXT[kind]}" for kind in media})
        return urls

    def sample(self, sid: object) -> Sample:
        """The sample with this id, or a 404 rejection."""
        if not isinstance(sid, str) or sid not in self.by_id:
            raise Rejected(HTTPStatus.NOT_FOUND, f"unknown sample id {str(sid)[:40]!r}")
        return self.by_id[sid]

    def participant(self, body: dict) -> str:
        """The participant id of a submission, which must be one this server issued."""
        pid = body.get("participant")
        if not isinstance(pid, str) or not re.fullmatch(r"[0-9a-f]{32}", pid):
            raise Rejected(
                HTTPStatus.BAD_REQUEST, "missing or malformed participant id"
            )
        if not self.config.db.has_participant(pid):
            raise Rejected(HTTPStatus.FORBIDDEN, "unknown participant id")
        return pid

    def rate(self, body: dict) -> None:
        """Validate and store one participant's ratings of one sample."""
        pid = self.participant(body)
        sample = self.sample(body.get("sample"))
        scores = body.get("scores")
        if not isinstance(scores, dict) or not scores:
            raise Rejected(HTTPStatus.BAD_REQUEST, "scores must be an object")
        for question, score in scores.items():
            if question not in QUESTIONS:
                raise Rejected(
                    HTTPStatus.BAD_REQUEST, f"unknown question {question[:40]!r}"
                )
            # bool is an int in Python; a rating of `true` is still malformed.
            if type(score) is not int or not 1 <= score <= 5:
                raise Rejected(
                    HTTPStatus.BAD_REQUEST, f"{question} must be an integer 1-5"
                )
        try:
            self.config.db.add_ratings(pid, sample, scores)
        except DuplicateAnswer as err:
            raise Rejected(
                HTTPStatus.CONFLICT, "sample already rated by this participant"
            ) from err

    def choose(self, body: dict) -> None:
        """Validate and store one forced choice between a real and a generated tune."""
        pid = self.participant(body)
        pair = body.get("pair")
        if not isinstance(pair, list) or len(pair) != 2:
            raise Rejected(
                HTTPStatus.BAD_REQUEST, "pair must be a list of two sample ids"
            )
        a, b = self.sample(pair[0]), self.sample(pair[1])
        if a.is_human == b.is_human:
            raise Rejected(
                HTTPStatus.BAD_REQUEST, "a pair needs one real and one generated tune"
            )
        chosen = body.get("chosen")
        if chosen not in (a.id, b.id):
            raise Rejected(HTTPStatus.BAD_REQUEST, "chosen must be one of the pair")
        human, model = (a, b) if a.is_human else (b, a)
        try:
            self.config.db.add_choice(pid, human, model, self.by_id[chosen])
        except DuplicateAnswer as err:
            raise Rejected(
                HTTPStatus.CONFLICT, "pair already answered by this participant"
            ) from err


def _static(name: str) -> bytes:
    return resources.files("abcmamba.listen").joinpath("static", name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the app; every refusal is a 4xx with a log line."""

    app: ListenApp  # set on the subclass made by make_server
    server_version = "abcmamba-listen"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(
                    HTTPStatus.OK, _static("index.html"), "text/html; charset=utf-8"
                )
            elif path.startswith("/static/") and path[8:] in STATIC:
                self._send(HTTPStatus.OK, _static(path[8:]), STATIC[path[8:]])
            elif path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            elif m := MEDIA_PATH.match(path):
                self._media(m.group(1), m.group(2))
            else:
                raise Rejected(HTTPStatus.NOT_FOUND, "no such page")
        except Rejected as err:
            self._reject(err)

    def do_POST(self) -> None:  # noqa: N802
        routes = {
            "/api/session": None,
            "/api/rate": self.app.rate,
            "/api/choice": self.app.choose,
        }
        try:
            if self.path not in routes:
                raise Rejected(HTTPStatus.NOT_FOUND, "no such endpoint")
            body = self._body()
            if self.path == "/api/session":
                self._json(HTTPStatus.CREATED, self.app.plan())
                return
            routes[self.path](body)
            self._json(HTTPStatus.CREATED, {"ok": True})
        except Rejected as err:
            self._reject(err)

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None:
            raise Rejected(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if not length.isdigit():
            raise Rejected(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if int(length) > self.app.config.max_body:
            # Not read: drop the connection instead of draining a large body.
            self.close_connection = True
            raise Rejected(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {length} bytes"
            )
        raw = self.rfile.read(int(length))
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise Rejected(HTTPStatus.BAD_REQUEST, "body is not JSON") from err
        if not isinstance(body, dict):
            raise Rejected(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return body

    def _media(self, sid: str, ext: str) -> None:
        sample = self.app.sample(sid)
        kind = {v: k for k, v in EXT.items()}[ext]
        path = self.app.media[sample.id].get(kind)
        if path is None:
            raise Rejected(HTTPStatus.NOT_FOUND, f"no {kind} for this sample")
        ctype = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
        self._send(HTTPStatus.OK, path.read_bytes(), ctype, cache=True)

    def _json(self, status: HTTPStatus, obj: object) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _reject(self, err: Rejected) -> None:
        logger.warning(
            "rejected %s %s: %d %s", self.command, self.path[:80], err.status, err
        )
        self._json(err.status, {"error": str(err)})

    def _send(
        self, status: HTTPStatus, data: bytes, ctype: str, cache: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header(
            "Cache-Control", "private, max-age=3600" if cache else "no-store"
        )
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self'; media-src 'self'; object-src 'none'",
        )
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def make_server(
    app: ListenApp, host: str = "127.0.0.1", port: int = 8000
) -> ThreadingHTTPServer:
    """An HTTP server for the app; port 0 picks a free port (see server_address)."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
