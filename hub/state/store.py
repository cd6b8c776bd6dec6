"""The hub's memory: one SQLite file (WAL), one transaction per state change.

The engine writes state here before it acts on a cluster and again after the cluster
confirms, so a hub killed at any moment restarts from this file alone. The file holds
kubeconfig credentials and chart repositories' passwords and tokens, so it is created 0600
inside a 0700 directory, and nothing else in the hub reads credentials from anywhere but
here.

A file that is not an intact store is refused at start and never written to. A write the
disk has no room for is refused whole (StoreUnwritable): the transaction is rolled back,
one line a minute is logged while the disk stays full, and the store takes writes again
as soon as there is room, without a restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path

from hub.errors import Conflict, FlotillaError, NotFound
from hub.model.records import ClusterRecord, RepositoryRecord
from hub.model.settings import DEFAULTS, Settings
from hub.state.apps import SqliteAppStore
from hub.state.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

log = logging.getLogger(__name__)

# The tables that name a cluster besides `clusters` itself: a rename re-points them and a
# detach drops their rows, in the same transaction as the change to `clusters`.
CLUSTER_TABLES = ("targets", "inventory", "rollouts", "measurements", "hook_runs")
# The primary result codes of a write the disk refused: no room (ENOSPC, a quota), or an
# I/O error writing the journal. Anything else is a bug, and keeps its traceback.
UNWRITABLE = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)
# A full disk refuses every write until someone frees space: say so once a minute, not
# once a write. (A success in between proves nothing: a small write can fit in a page
# SQLite already holds.)
REFUSAL_LOG_EVERY = 60.0


class StoreTooNew(FlotillaError):
    """The store was written by a newer Flotilla than this one."""


class StoreDamaged(FlotillaError):
    """The store file is not SQLite, or is truncated or corrupt: the hub will not start on
    it, and leaves it as it is for whoever restores it."""


class StoreUnwritable(FlotillaError):
    """A change could not be written (the disk is full): nothing of it was kept. 507, since
    it is the hub's condition and not the request's."""

    http_status = HTTPStatus.INSUFFICIENT_STORAGE


class SqliteStore:
    """Synchronous on purpose: each call is one short local transaction (well under a
    millisecond in WAL mode), cheaper than a thread hop, and it keeps ordering trivial."""

    def __init__(self, path: Path, *, timed: Callable[[float], None] | None = None) -> None:
        """`timed` is told the seconds of each committed transaction (the hub's metrics)."""
        self._timed = timed or _untimed
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        elif path.stat().st_size:
            _check_intact(path)
        path.chmod(0o600)
        self.path = path
        self._refusal_logged = -REFUSAL_LOG_EVERY  # monotonic seconds
        self.cluster_rows_moved = 0
        """Renames and removals of clusters, which re-point or drop the applications' rows
        naming them (part of `SqliteAppStore.writes`)."""
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as e:
            raise StoreUnwritable(f"store {path}: cannot open it ({e})") from e
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL under WAL: a committed transaction is in the WAL file before the commit
            # returns, so a killed hub loses nothing it reported; only a power cut can drop
            # the last few. FULL's fsync per commit cost 6-10% of the hub's CPU in a
            # 64-cluster deploy.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.OperationalError as e:  # no room for the WAL, or another hub holds it
            self._db.close()
            raise StoreUnwritable(f"store {path}: cannot prepare it ({e})") from e

    @property
    def version(self) -> int:
        """The schema version of the file (`PRAGMA user_version`)."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        """Create a new store at version 1, then bring it (or an older one) to SCHEMA_VERSION,
        each migration in the transaction that records its version."""
        if self.version == 0:
            # executescript commits on its own; every statement in SCHEMA is idempotent.
            self._db.executescript(SCHEMA)
            self._db.execute("PRAGMA user_version=1")
        found = self.version
        if found > SCHEMA_VERSION:
            self._db.close()
            raise StoreTooNew(
                f"store {self.path} has schema version {found}, newer than this "
                f"Flotilla's {SCHEMA_VERSION}; run the Flotilla that wrote it, or a newer one"
            )
        for version in range(self.version + 1, SCHEMA_VERSION + 1):
            with self.transaction() as db:
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version={version}")

    def apps(self, settings: Settings = DEFAULTS) -> SqliteAppStore:
        return SqliteAppStore(self, settings)

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all (BEGIN IMMEDIATE). A write
        the disk refuses, in a statement or at COMMIT, raises StoreUnwritable with the
        transaction rolled back, so that the next one starts clean once there is room."""
        started = time.perf_counter()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # A failed COMMIT may have rolled back already (SQLITE_FULL does); a
                # transaction left open would refuse every BEGIN after it.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            if getattr(e, "sqlite_errorcode", 0) & 0xFF not in UNWRITABLE:
                raise
            raise self._refused(e) from e
        self._timed(time.perf_counter() - started)

    def _refused(self, error: sqlite3.OperationalError) -> StoreUnwritable:
        if time.monotonic() - self._refusal_logged >= REFUSAL_LOG_EVERY:
            self._refusal_logged = time.monotonic()
            log.error(
                "store %s cannot be written (%s): changes are refused until its disk has room",
                self.path,
                error,
            )
        return StoreUnwritable(
            f"the hub's store {self.path} cannot be written ({error}); nothing of this change "
            "was kept. Free space on its disk: the hub goes on by itself"
        )

    # clusters

    def add_cluster(self, record: ClusterRecord) -> None:
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO clusters (name, uid, server, kubeconfig, credential, labels,"
                    " version, health, reason, warnings, last_seen, joined_at, prometheus)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.name,
                        record.uid,
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
                        json.dumps(record.prometheus),
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

    def set_prometheus(self, name: str, prometheus: dict[str, str]) -> None:
        """The cluster's own Prometheus (URL and credentials); `{}`: none."""
        self._update(name, "prometheus = ?", json.dumps(prometheus))

    def rename_cluster(self, old: str, new: str) -> None:
        """Rename a cluster and re-point every row that names it, in one transaction: a
        reader sees the targets, inventory and canaries under the old name or the new one,
        never split between them.

        Rows that name `new` although no cluster is called so are what a detach by an older
        Flotilla left behind; they would collide with the re-pointed rows, so they go."""
        try:
            with self.transaction() as db:
                cursor = db.execute("UPDATE clusters SET name = ? WHERE name = ?", (new, old))
                if cursor.rowcount == 0:
                    raise NotFound(f"cluster {old!r} is not registered")
                for table in CLUSTER_TABLES:
                    db.execute(f"DELETE FROM {table} WHERE cluster = ?", (new,))
                    db.execute(f"UPDATE {table} SET cluster = ? WHERE cluster = ?", (new, old))
        except sqlite3.IntegrityError:
            raise Conflict(f"cluster {new!r} is already registered; pick another name") from None
        self.cluster_rows_moved += 1

    def delete_cluster(self, name: str) -> None:
        """Forget a cluster and every row naming it (targets, inventory, canaries), so that
        a cluster joined later under the same name inherits nothing. Whether the cluster
        may go is the caller's decision (`AppStore.holdings`)."""
        with self.transaction() as db:
            if db.execute("DELETE FROM clusters WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"cluster {name!r} is not registered")
            for table in CLUSTER_TABLES:
                db.execute(f"DELETE FROM {table} WHERE cluster = ?", (name,))
        self.cluster_rows_moved += 1

    def record_probe(
        self, name: str, *, health: str, reason: str, version: str | None, seen: bool
    ) -> None:
        """Keep the prober's verdict; last_seen moves only when the cluster answered. A
        verdict the disk has no room for is dropped: the next probe makes it again, and a
        prober dying of it would stop the hub (the refusal is logged once, above)."""
        with contextlib.suppress(StoreUnwritable), self.transaction() as db:
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

    # chart repositories' credentials

    def add_repository(self, record: RepositoryRecord) -> None:
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO repositories (name, url, kind, auth, username, secret, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.name,
                        record.url,
                        record.kind,
                        record.auth,
                        record.username,
                        record.secret,
                        record.created_at,
                    ),
                )
        except sqlite3.IntegrityError:
            raise Conflict(
                f"repository {record.name!r} is already registered; remove it first "
                f"(`flotilla repo remove {record.name}`) to change its URL or credentials"
            ) from None

    def repositories(self) -> list[RepositoryRecord]:
        rows = self._db.execute("SELECT * FROM repositories ORDER BY name").fetchall()
        return [RepositoryRecord(**dict(row)) for row in rows]

    def delete_repository(self, name: str) -> None:
        with self.transaction() as db:
            if db.execute("DELETE FROM repositories WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"repository {name!r} is not registered")


def _check_intact(path: Path) -> None:
    """Refuse a file that is not an intact SQLite database, read on a read-only connection
    so that nothing is written to it: SQLite would otherwise answer a truncated file
    page by page as the hub reads, long after it started. `quick_check` reads every page
    once (milliseconds for a store of a few megabytes)."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = str(db.execute("PRAGMA quick_check(1)").fetchone()[0])
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        found = str(e)
    if found != "ok":
        raise StoreDamaged(
            f"store {path} is not an intact SQLite database ({found}); it was left as it "
            "is: restore it from a backup, or move it away to start with an empty store"
        )


def _untimed(seconds: float) -> None:
    """A store that nobody measures (tests, tools)."""


def _cluster(row: sqlite3.Row) -> ClusterRecord:
    return ClusterRecord(
        name=row["name"],
        uid=row["uid"],
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
        prometheus=json.loads(row["prometheus"]),
    )
