"""The store's tables, and the migrations that bring an older store up to date.

`SCHEMA` is the store as version 1 created it and never changes: every later change is a
migration. A new store is created at version 1 and migrated like any old one, so the
migrations run on every fresh store in every test, not only on the day a user upgrades.
`PRAGMA user_version` holds the version; each migration runs in one transaction together
with the bump of that number, so a hub killed while migrating finds the store either
before or after it, never halfway.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable

# Statements of version 1; each is idempotent, so opening any store creates what is missing.
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


def _add_column(db: sqlite3.Connection, table: str, column: str, declaration: str) -> None:
    """`ALTER TABLE table ADD COLUMN column declaration`, unless the table has the column:
    a migration is idempotent, like every statement of version 1, so a store that has the
    column keeps it."""
    columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    if column not in columns:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _cluster_uids(db: sqlite3.Connection) -> None:
    """Version 2: clusters get an identity apart from their name (a random UUID), so that
    a rename keeps what the hub knows of the cluster, and a cluster detached and joined
    again under the same name is told apart from the one it replaces. Clusters of an
    older store get theirs now."""
    db.execute("ALTER TABLE clusters ADD COLUMN uid TEXT NOT NULL DEFAULT ''")
    names = [row[0] for row in db.execute("SELECT name FROM clusters")]
    db.executemany(
        "UPDATE clusters SET uid = ? WHERE name = ?", [(str(uuid.uuid4()), n) for n in names]
    )
    db.execute("CREATE UNIQUE INDEX clusters_uid ON clusters (uid)")


def _rollout_resume_step(db: sqlite3.Connection) -> None:
    """Version 3: a canary remembers a `resume` sent before it reached its pause (the step
    index it approved), so that the resume is neither refused nor lost in that race.
    Idempotent, like every statement of version 1: a store that has the column keeps it."""
    _add_column(db, "rollouts", "resume_step", "INTEGER")


def _rollout_stable_hash(db: sqlite3.Connection) -> None:
    """Version 4: a canary remembers the pod-template hash of its stable pods once read.
    Stable pods never change during a canary, so every later phase, a rollback and a
    restarted hub pin the stable Service to the same pods without asking the cluster."""
    _add_column(db, "rollouts", "stable_hash", "TEXT")


def _analysis(db: sqlite3.Connection) -> None:
    """Version 5: metric analysis. A cluster may name its own Prometheus (URL and
    credentials, as secret as its kubeconfig), and every measurement is kept as it is
    taken, so that a hub killed mid-analysis resumes counting instead of starting over."""
    _add_column(db, "clusters", "prometheus", "TEXT NOT NULL DEFAULT '{}'")
    db.execute(
        """CREATE TABLE IF NOT EXISTS measurements (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            app         TEXT NOT NULL REFERENCES applications(name) ON DELETE CASCADE,
            revision    INTEGER NOT NULL,
            step        TEXT NOT NULL,
            gate        INTEGER NOT NULL,
            cluster     TEXT NOT NULL,
            component   TEXT NOT NULL,
            metric      TEXT NOT NULL,
            at          REAL NOT NULL,
            value       REAL,
            outcome     TEXT NOT NULL,
            message     TEXT NOT NULL DEFAULT ''
        )"""
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS measurements_gate ON measurements (app, revision, step, gate)"
    )


def _event_fields(db: sqlite3.Connection) -> None:
    """Version 6: an event says where it happened (revision, step, cluster, component),
    so that `flotilla events` and the web view can show and filter it without parsing
    its message."""
    for column, kind in (
        ("revision", "INTEGER"),
        ("step", "TEXT"),
        ("cluster", "TEXT"),
        ("component", "TEXT"),
    ):
        _add_column(db, "events", column, kind)
    db.execute("CREATE INDEX IF NOT EXISTS events_app ON events (app, id)")


def _holds(db: sqlite3.Connection) -> None:
    """Version 7: the blast-radius guard's holds. A removal that would take an application
    off more than half of an environment's clusters, or off its last one, waits for
    `workflow resume`; what waits, and whether it was confirmed, must outlive a hub
    restart, or a restarted hub would either forget the confirmation or act unasked."""
    db.execute(
        """CREATE TABLE IF NOT EXISTS holds (
            app         TEXT PRIMARY KEY REFERENCES applications(name) ON DELETE CASCADE,
            revision    INTEGER NOT NULL,
            removals    TEXT NOT NULL,
            reason      TEXT NOT NULL,
            confirmed   INTEGER NOT NULL DEFAULT 0,
            created_at  REAL NOT NULL
        )"""
    )


def _hook_runs(db: sqlite3.Connection) -> None:
    """Version 8: the last run of each Helm hook of a target, by the hook event it ran for
    (`pre-upgrade`, ...) and the object it created. Status shows them, and a hub killed
    after a hook succeeded finds the run here with its revision and does not run it again
    for that revision; hooks are not in the inventory, so nothing else remembers them."""
    db.execute(
        """CREATE TABLE IF NOT EXISTS hook_runs (
            app         TEXT NOT NULL REFERENCES applications(name) ON DELETE CASCADE,
            cluster     TEXT NOT NULL,
            component   TEXT NOT NULL,
            revision    INTEGER NOT NULL,
            event       TEXT NOT NULL,
            kind        TEXT NOT NULL,
            namespace   TEXT NOT NULL,
            name        TEXT NOT NULL,
            phase       TEXT NOT NULL,
            message     TEXT NOT NULL DEFAULT '',
            started_at  REAL NOT NULL,
            finished_at REAL,
            PRIMARY KEY (app, cluster, component, event, kind, namespace, name)
        )"""
    )


def _repositories(db: sqlite3.Connection) -> None:
    """Version 9: chart repositories and registries that need credentials, registered once
    with `flotilla repo add` and named from Applications (`secretRef`). The password or
    token is as secret as a kubeconfig's credentials, so it lives here, in the 0600 store,
    and nowhere else."""
    db.execute(
        """CREATE TABLE IF NOT EXISTS repositories (
            name        TEXT PRIMARY KEY,
            url         TEXT NOT NULL,
            kind        TEXT NOT NULL,
            auth        TEXT NOT NULL,
            username    TEXT NOT NULL DEFAULT '',
            secret      TEXT NOT NULL,
            created_at  REAL NOT NULL
        )"""
    )


def _application_health(db: sqlite3.Connection) -> None:
    """Version 10: an application keeps the health the hub last rolled up from its watch
    caches (hub.service.health), so that whoever reads the store alone sees it, as the
    Kubernetes store's `kubectl get applications.flotilla.dev` does. It is derived, so an
    older store's applications start `Unknown` and get theirs from the hub's first pass."""
    _add_column(db, "applications", "health", "TEXT NOT NULL DEFAULT 'Unknown'")


def _rollout_phases_done(db: sqlite3.Connection) -> None:
    """Version 11: a canary remembers how many phases of its current stage are done, so
    that a hub killed (or a replica that lost the application) mid-stage repeats only the
    phase it was in, not the stage's earlier ones. An older store's canaries start the
    stage they are in over, as before."""
    _add_column(db, "rollouts", "phases_done", "INTEGER NOT NULL DEFAULT 0")


def _application_observed(db: sqlite3.Connection) -> None:
    """Version 12: an application keeps what the hub that drives it last saw of its objects
    (`ObservedRecord`, as JSON), so that a hub sharing the store without driving it shows
    the same status. Derived, so an older store's applications start with none (NULL),
    shown as not observed yet until the hub's first pass."""
    _add_column(db, "applications", "observed", "TEXT")


# Version -> the migration that brings a store from the version before it to this one.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _cluster_uids,
    3: _rollout_resume_step,
    4: _rollout_stable_hash,
    5: _analysis,
    6: _event_fields,
    7: _holds,
    8: _hook_runs,
    9: _repositories,
    10: _application_health,
    11: _rollout_phases_done,
    12: _application_observed,
}
SCHEMA_VERSION = max(MIGRATIONS)
