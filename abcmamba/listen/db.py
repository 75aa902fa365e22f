"""SQLite storage of a listening test: samples, random participant ids, answers.

Only what the analysis needs is stored: the ratings and choices, each with the
participant's random id and a UTC timestamp. Every submission is written in one
transaction, so a stopped server never leaves half an answer behind.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from abcmamba import UserError
from abcmamba.listen.samples import Sample

QUESTIONS = ("overall", "musicality", "human_likeness")

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    is_human INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS participants (
    id TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY,
    participant TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    source TEXT NOT NULL,
    question TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    UNIQUE (participant, sample_id, question)
);
CREATE TABLE IF NOT EXISTS choices (
    id INTEGER PRIMARY KEY,
    participant TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    human_sample_id TEXT NOT NULL,
    model_sample_id TEXT NOT NULL,
    model_source TEXT NOT NULL,
    chosen_sample_id TEXT NOT NULL,
    correct INTEGER NOT NULL,
    UNIQUE (participant, human_sample_id, model_sample_id)
);
"""


class DuplicateAnswer(Exception):
    """The participant already answered this question for this sample or pair."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ResultsDB:
    """The results database; one short-lived connection per call, so threads are safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.is_dir():
            raise UserError(f"--db {path}: folder {self.path.parent} does not exist")
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as err:
            raise UserError(f"cannot open database {self.path}: {err}") from err
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def register_samples(self, samples: Iterable[Sample]) -> None:
        """Record which source each sample id belongs to (for the report)."""
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO samples (id, source, name, is_human) VALUES (?, ?, ?, ?)",
                [(s.id, s.source, s.name, int(s.is_human)) for s in samples],
            )

    def new_participant(self) -> str:
        """A fresh random participant id, stored so answers can be checked against it."""
        pid = secrets.token_hex(16)
        with self._transaction() as conn:
            conn.execute("INSERT INTO participants (id) VALUES (?)", (pid,))
        return pid

    def has_participant(self, pid: str) -> bool:
        """Whether this id was handed out by this test."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM participants WHERE id = ?", (pid,)
            ).fetchone()
        return row is not None

    def add_ratings(self, pid: str, sample: Sample, scores: dict[str, int]) -> None:
        """Store one participant's ratings of one sample, all or none."""
        ts = _now()
        rows = [
            (pid, ts, sample.id, sample.source, q, int(s)) for q, s in scores.items()
        ]
        try:
            with self._transaction() as conn:
                conn.executemany(
                    "INSERT INTO ratings (participant, timestamp, sample_id, source, question,"
                    " score) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.IntegrityError as err:
            raise DuplicateAnswer(str(err)) from err

    def add_choice(
        self, pid: str, human: Sample, model: Sample, chosen: Sample
    ) -> None:
        """Store which of a (real, generated) pair the participant took for human."""
        row = (
            pid,
            _now(),
            human.id,
            model.id,
            model.source,
            chosen.id,
            int(chosen is human),
        )
        try:
            with self._transaction() as conn:
                conn.execute(
                    "INSERT INTO choices (participant, timestamp, human_sample_id,"
                    " model_sample_id, model_source, chosen_sample_id, correct)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
        except sqlite3.IntegrityError as err:
            raise DuplicateAnswer(str(err)) from err

    def counts(self) -> dict[str, int]:
        """Row counts per table, for logs and tests."""
        with self._connect() as conn:
            return {
                t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608
                for t in ("samples", "participants", "ratings", "choices")
            }
