"""The hub's memory: one SQLite file (WAL), one transaction per state change.

The engine writes state here before it acts on a cluster and again after the cluster
confirms, so a hub killed at any moment restarts from this file alone. The file holds
kubeconfig credentials, so it is created 0600 inside a 0700 directory, and nothing else
in the hub reads credentials from anywhere but here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.errors import Conflict, NotFound

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS clusters (
    name        TEXT PRIMARY KEY,
    server      TEXT NOT NULL,
    kubeconfig  TEXT NOT NULL,
    credential  TEXT NOT NULL,
    labels      TEXT NOT NULL DEFAULT '{}',
    version     TEXT NOT NULL DEFAULT '',
    health      TEXT NOT NULL DEFAULT 'Unknown',
    reason      TEXT NOT NULL DEFAULT '',
    warnings    TEXT NOT NULL DEFAULT '[]',
    last_seen   REAL,
    joined_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS applications (
    name        TEXT PRIMARY KEY,
    revision    INTEGER NOT NULL,
    phase       TEXT NOT NULL,
    message     TEXT NOT NULL DEFAULT '',
    suspend     INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revisions (
    app             TEXT NOT NULL REFERENCES applications(name) ON DELETE CASCADE,
    number          INTEGER NOT NULL,
    publish_version TEXT NOT NULL DEFAULT '',
    digest          TEXT NOT NULL,
    spec            TEXT NOT NULL,
    source          TEXT NOT NULL DEFAULT '',
    base            TEXT NOT NULL DEFAULT '',
    rollback_of     INTEGER,
    outcome         TEXT NOT NULL,
    created_at      REAL NOT NULL,
    finished_at     REAL,
    PRIMARY KEY (app, number)
);
CREATE TABLE IF NOT EXISTS steps (
    app         TEXT NOT NULL REFERENCES applications(name) ON DELETE CASCADE,
    revision    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    type        TEXT NOT NULL,
    phase       TEXT NOT NULL,
    message     TEXT NOT NULL DEFAULT '',
    resume_at   REAL,
    started_at  REAL,
    finished_at REAL,
    PRIMARY KEY (app, revision, name)
);
CREATE TABLE IF NOT EXISTS targets (
    app         TEXT NOT NULL REFERENCES applications(name) ON DELETE CASCADE,
    revision    INTEGER NOT NULL,
    step        TEXT NOT NULL,
    cluster     TEXT NOT NULL,
    component   TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    release     TEXT NOT NULL,
    chart       TEXT NOT NULL DEFAULT '',
    spec        TEXT NOT NULL DEFAULT '{}',
    phase       TEXT NOT NULL,
    message     TEXT NOT NULL DEFAULT '',
    updated_at  REAL NOT NULL,
    PRIMARY KEY (app, revision, step, cluster, component)
);
CREATE TABLE IF NOT EXISTS inventory (
    app         TEXT NOT NULL REFERENCES applications(name) ON DELETE CASCADE,
    cluster     TEXT NOT NULL,
    component   TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    objects     TEXT NOT NULL,
    PRIMARY KEY (app, cluster, component)
);
CREATE TABLE IF NOT EXISTS rollouts (
    app         TEXT NOT NULL REFERENCES applications(name) ON DELETE CASCADE,
    cluster     TEXT NOT NULL,
    component   TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    stage       TEXT NOT NULL,
    step        INTEGER NOT NULL,
    resume_at   REAL,
    detail      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (app, cluster, component)
);
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app         TEXT NOT NULL,
    at          REAL NOT NULL,
    message     TEXT NOT NULL
);
"""


@dataclass
class ClusterRecord:
    """A registered member cluster. `kubeconfig` is secret: never serialise it as is."""

    name: str
    server: str
    kubeconfig: dict[str, Any]
    credential: str
    labels: dict[str, str] = field(default_factory=dict)
    version: str = ""
    health: str = "Unknown"
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    last_seen: float | None = None
    joined_at: float = field(default_factory=time.time)


class Store:
    """Synchronous on purpose: each call is one short local transaction (well under a
    millisecond in WAL mode), cheaper than a thread hop, and it keeps ordering trivial."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        path.chmod(0o600)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL under WAL: a committed transaction is in the WAL file before the commit
        # returns, so a killed hub loses nothing it reported; only a power cut can drop the
        # last few. FULL's fsync per commit cost 6-10% of the hub's CPU in a 64-cluster deploy.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # executescript commits on its own; every statement in SCHEMA is idempotent.
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all (BEGIN IMMEDIATE)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # clusters

    def add_cluster(self, record: ClusterRecord) -> None:
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO clusters (name, server, kubeconfig, credential, labels, version,"
                    " health, reason, warnings, last_seen, joined_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.name,
                        record.server,
                        json.dumps(record.kubeconfig),
                        record.credential,
                        json.dumps(record.labels),
                        record.version,
                        record.health,
                        record.reason,
                        json.dumps(record.warnings),
                        record.last_seen,
                        record.joined_at,
                    ),
                )
        except sqlite3.IntegrityError:
            raise Conflict(f"cluster {record.name!r} is already registered") from None

    def clusters(self) -> list[ClusterRecord]:
        rows = self._db.execute("SELECT * FROM clusters ORDER BY name").fetchall()
        return [_cluster(row) for row in rows]

    def cluster(self, name: str) -> ClusterRecord:
        row = self._db.execute("SELECT * FROM clusters WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"cluster {name!r} is not registered")
        return _cluster(row)

    def set_labels(self, name: str, labels: dict[str, str]) -> None:
        self._update(name, "labels = ?", json.dumps(labels))

    def rename_cluster(self, old: str, new: str) -> None:
        try:
            self._update(old, "name = ?", new)
        except sqlite3.IntegrityError:
            raise Conflict(f"cluster {new!r} is already registered") from None

    def delete_cluster(self, name: str) -> None:
        with self.transaction() as db:
            if db.execute("DELETE FROM clusters WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"cluster {name!r} is not registered")

    def record_probe(
        self, name: str, *, health: str, reason: str, version: str | None, seen: bool
    ) -> None:
        """Keep the prober's verdict; last_seen moves only when the cluster answered."""
        with self.transaction() as db:
            db.execute(
                "UPDATE clusters SET health = ?, reason = ?, version = COALESCE(?, version),"
                " last_seen = CASE WHEN ? THEN ? ELSE last_seen END WHERE name = ?",
                (health, reason, version, seen, time.time(), name),
            )

    def _update(self, name: str, assignment: str, value: object) -> None:
        with self.transaction() as db:
            cursor = db.execute(f"UPDATE clusters SET {assignment} WHERE name = ?", (value, name))
            if cursor.rowcount == 0:
                raise NotFound(f"cluster {name!r} is not registered")


def _cluster(row: sqlite3.Row) -> ClusterRecord:
    return ClusterRecord(
        name=row["name"],
        server=row["server"],
        kubeconfig=json.loads(row["kubeconfig"]),
        credential=row["credential"],
        labels=json.loads(row["labels"]),
        version=row["version"],
        health=row["health"],
        reason=row["reason"],
        warnings=json.loads(row["warnings"]),
        last_seen=row["last_seen"],
        joined_at=row["joined_at"],
    )


@dataclass
class AppRecord:
    name: str
    revision: int
    phase: str  # running | suspended | succeeded | failed | deleting
    message: str
    suspend: bool
    created_at: float
    updated_at: float


@dataclass
class RevisionRecord:
    app: str
    number: int
    publish_version: str
    digest: str
    spec: dict[str, Any]
    source: str
    base: str  # the folder of the file, for charts in a relative local directory
    rollback_of: int | None
    outcome: str  # running | succeeded | failed | superseded
    created_at: float
    finished_at: float | None


@dataclass
class StepRecord:
    app: str
    revision: int
    name: str
    type: str
    phase: str  # pending | running | suspended | succeeded | failed
    message: str
    resume_at: float | None
    started_at: float | None
    finished_at: float | None


@dataclass
class TargetRecord:
    app: str
    revision: int
    step: str
    cluster: str
    component: str
    namespace: str
    release: str
    chart: str
    spec: dict[str, Any]  # what to deploy: chart reference and final values
    phase: str  # pending | applying | waiting | healthy | failed
    message: str = ""
    updated_at: float = field(default_factory=time.time)


@dataclass
class RolloutRecord:
    """The canary of one workload of one target: which revision, where it stands."""

    app: str
    cluster: str
    component: str
    revision: int
    kind: str
    name: str
    stage: str
    step: int
    resume_at: float | None = None
    detail: str = ""  # canary readiness, for status


class AppStore:
    """Applications, revisions and workflow state, on the same connection as the registry."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store.connection

    def create_revision(
        self,
        app: str,
        *,
        spec: dict[str, Any],
        digest: str,
        publish_version: str,
        source: str,
        base: str,
        steps: list[tuple[str, str]],
        targets: list[TargetRecord],
        rollback_of: int | None = None,
    ) -> RevisionRecord:
        """A new revision becomes the one the workflow drives, atomically: the application
        row, the revision, its pending steps, and the superseding of a running predecessor."""
        now = time.time()
        with self._store.transaction() as db:
            row = db.execute("SELECT MAX(number) FROM revisions WHERE app = ?", (app,)).fetchone()
            number = (row[0] or 0) + 1
            db.execute(
                "INSERT INTO applications (name, revision, phase, message, suspend, created_at,"
                " updated_at) VALUES (?, ?, 'running', '', 0, ?, ?) ON CONFLICT(name) DO UPDATE"
                " SET revision = excluded.revision, phase = 'running', message = '', suspend = 0,"
                " updated_at = excluded.updated_at",
                (app, number, now, now),
            )
            db.execute(
                "UPDATE revisions SET outcome = 'superseded', finished_at = ?"
                " WHERE app = ? AND outcome = 'running'",
                (now, app),
            )
            db.execute(
                "INSERT INTO revisions (app, number, publish_version, digest, spec, source, base,"
                " rollback_of, outcome, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)",
                (
                    app,
                    number,
                    publish_version,
                    digest,
                    json.dumps(spec),
                    source,
                    base,
                    rollback_of,
                    now,
                ),
            )
            db.executemany(
                "INSERT INTO steps (app, revision, name, type, phase)"
                " VALUES (?, ?, ?, ?, 'pending')",
                [(app, number, name, kind) for name, kind in steps],
            )
            for target in targets:
                target.app, target.revision = app, number
                _insert_target(db, target)
        return self.revision(app, number)

    def apps(self) -> list[AppRecord]:
        rows = self._db.execute("SELECT * FROM applications ORDER BY name").fetchall()
        return [_app(r) for r in rows]

    def app(self, name: str) -> AppRecord:
        row = self._db.execute("SELECT * FROM applications WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"application {name!r} not found")
        return _app(row)

    def set_app(self, name: str, *, phase: str, message: str = "") -> None:
        with self._store.transaction() as db:
            db.execute(
                "UPDATE applications SET phase = ?, message = ?, updated_at = ? WHERE name = ?",
                (phase, message, time.time(), name),
            )

    def set_suspend(self, name: str, suspend: bool) -> None:
        with self._store.transaction() as db:
            db.execute("UPDATE applications SET suspend = ? WHERE name = ?", (suspend, name))

    def delete_app(self, name: str) -> None:
        with self._store.transaction() as db:
            for table in ("events", "rollouts", "inventory", "targets", "steps", "revisions"):
                db.execute(f"DELETE FROM {table} WHERE app = ?", (name,))
            db.execute("DELETE FROM applications WHERE name = ?", (name,))

    def revisions(self, app: str) -> list[RevisionRecord]:
        rows = self._db.execute(
            "SELECT * FROM revisions WHERE app = ? ORDER BY number", (app,)
        ).fetchall()
        return [_revision(r) for r in rows]

    def revision(self, app: str, number: int) -> RevisionRecord:
        row = self._db.execute(
            "SELECT * FROM revisions WHERE app = ? AND number = ?", (app, number)
        ).fetchone()
        if row is None:
            raise NotFound(f"application {app!r} has no revision {number}")
        return _revision(row)

    def finish_revision(self, app: str, number: int, outcome: str) -> None:
        with self._store.transaction() as db:
            db.execute(
                "UPDATE revisions SET outcome = ?, finished_at = ? WHERE app = ? AND number = ?",
                (outcome, time.time(), app, number),
            )

    def steps(self, app: str, revision: int) -> list[StepRecord]:
        rows = self._db.execute(
            "SELECT * FROM steps WHERE app = ? AND revision = ? ORDER BY rowid", (app, revision)
        ).fetchall()
        return [StepRecord(**dict(r)) for r in rows]

    def set_step(
        self,
        app: str,
        revision: int,
        name: str,
        *,
        phase: str,
        message: str = "",
        resume_at: float | None = None,
    ) -> None:
        now = time.time()
        started = now if phase == "running" else None
        finished = now if phase in ("succeeded", "failed") else None
        with self._store.transaction() as db:
            db.execute(
                "UPDATE steps SET phase = ?, message = ?, resume_at = ?,"
                " started_at = COALESCE(started_at, ?), finished_at = ?"
                " WHERE app = ? AND revision = ? AND name = ?",
                (phase, message, resume_at, started, finished, app, revision, name),
            )

    def put_target(self, target: TargetRecord) -> None:
        with self._store.transaction() as db:
            _insert_target(db, target)

    def targets(self, app: str, revision: int) -> list[TargetRecord]:
        rows = self._db.execute(
            "SELECT * FROM targets WHERE app = ? AND revision = ?"
            " ORDER BY step, cluster, component",
            (app, revision),
        ).fetchall()
        return [_target(r) for r in rows]

    def inventory(self, app: str) -> dict[tuple[str, str], tuple[int, list[dict[str, Any]]]]:
        """(cluster, component) -> (revision, object references) of what is applied."""
        rows = self._db.execute("SELECT * FROM inventory WHERE app = ?", (app,)).fetchall()
        return {
            (r["cluster"], r["component"]): (r["revision"], json.loads(r["objects"])) for r in rows
        }

    def set_inventory(
        self, app: str, cluster: str, component: str, revision: int, objects: list[dict[str, Any]]
    ) -> None:
        with self._store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO inventory (app, cluster, component, revision, objects)"
                " VALUES (?, ?, ?, ?, ?)",
                (app, cluster, component, revision, json.dumps(objects)),
            )

    def drop_inventory(self, app: str, cluster: str, component: str) -> None:
        with self._store.transaction() as db:
            db.execute(
                "DELETE FROM inventory WHERE app = ? AND cluster = ? AND component = ?",
                (app, cluster, component),
            )

    def rollout(self, app: str, cluster: str, component: str) -> RolloutRecord | None:
        row = self._db.execute(
            "SELECT * FROM rollouts WHERE app = ? AND cluster = ? AND component = ?",
            (app, cluster, component),
        ).fetchone()
        return RolloutRecord(**dict(row)) if row is not None else None

    def rollouts(self, app: str) -> list[RolloutRecord]:
        rows = self._db.execute("SELECT * FROM rollouts WHERE app = ?", (app,)).fetchall()
        return [RolloutRecord(**dict(r)) for r in rows]

    def put_rollout(self, rollout: RolloutRecord) -> None:
        with self._store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO rollouts (app, cluster, component, revision, kind, name,"
                " stage, step, resume_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rollout.app,
                    rollout.cluster,
                    rollout.component,
                    rollout.revision,
                    rollout.kind,
                    rollout.name,
                    rollout.stage,
                    rollout.step,
                    rollout.resume_at,
                    rollout.detail,
                ),
            )

    def drop_rollout(self, app: str, cluster: str, component: str) -> None:
        with self._store.transaction() as db:
            db.execute(
                "DELETE FROM rollouts WHERE app = ? AND cluster = ? AND component = ?",
                (app, cluster, component),
            )

    def add_event(self, app: str, message: str) -> None:
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO events (app, at, message) VALUES (?, ?, ?)",
                (app, time.time(), message),
            )

    def events(self, app: str, limit: int = 50) -> list[tuple[float, str]]:
        rows = self._db.execute(
            "SELECT at, message FROM events WHERE app = ? ORDER BY id DESC LIMIT ?", (app, limit)
        ).fetchall()
        return [(r["at"], r["message"]) for r in reversed(rows)]


def _app(row: sqlite3.Row) -> AppRecord:
    data = dict(row)
    data["suspend"] = bool(data["suspend"])
    return AppRecord(**data)


def _revision(row: sqlite3.Row) -> RevisionRecord:
    data = dict(row)
    data["spec"] = json.loads(data["spec"])
    return RevisionRecord(**data)


def _target(row: sqlite3.Row) -> TargetRecord:
    data = dict(row)
    data["spec"] = json.loads(data["spec"])
    return TargetRecord(**data)


def _insert_target(db: sqlite3.Connection, target: TargetRecord) -> None:
    target.updated_at = time.time()
    db.execute(
        "INSERT OR REPLACE INTO targets (app, revision, step, cluster, component,"
        " namespace, release, chart, spec, phase, message, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            target.app,
            target.revision,
            target.step,
            target.cluster,
            target.component,
            target.namespace,
            target.release,
            target.chart,
            json.dumps(target.spec),
            target.phase,
            target.message,
            target.updated_at,
        ),
    )
