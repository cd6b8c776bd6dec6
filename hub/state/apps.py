"""Applications, revisions, steps, targets, inventory, canaries and events in the store.

Every state transition is one transaction; the engine writes before it acts on a
cluster and after the cluster confirms.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import orjson

from hub.errors import NotFound
from hub.model.phases import (
    AppPhase,
    HookPhase,
    Measured,
    Outcome,
    Stage,
    StepPhase,
    StepType,
    TargetPhase,
)
from hub.model.records import (
    AppRecord,
    EventRecord,
    HookRunRecord,
    MeasurementRecord,
    ObservedRecord,
    Release,
    RevisionRecord,
    RolloutRecord,
    StepRecord,
    TargetRecord,
)
from hub.model.settings import DEFAULTS, Settings
from hub.model.targets import TargetSpec
from hub.state.changes import Change, Changes
from hub.state.interface import AppStore, Hold, Holding

if TYPE_CHECKING:
    from hub.state.store import SqliteStore

# An AppRecord's columns: `observed` is left out, since it is large and only
# `observed()` needs it.
APP_COLUMNS = "name, revision, phase, message, suspend, created_at, updated_at, health"
# Events added between two prunings of every application's events by age.
PRUNE_EVERY = 50
# Decoded target specs kept (`_spec`): every target of a thousand-cluster application with
# a few components, at a few kB each.
SPECS_KEPT = 4096


class SqliteAppStore(AppStore):
    """Applications, revisions and workflow state, on the same connection as the registry."""

    def __init__(self, store: SqliteStore, settings: Settings = DEFAULTS) -> None:
        """Every write that changes what `status` shows of an application is published on
        `changes`, as is every event; events beyond the settings' count and age go."""
        self._store = store
        self._db = store.connection
        self.changes = Changes()
        self._keep_events = settings.events_per_app
        self._event_age = settings.events_max_age
        self._events_added = 0
        self._writes = 0

    def create_revision(
        self,
        app: str,
        *,
        spec: dict[str, Any],
        digest: str,
        publish_version: str,
        source: str,
        base: str,
        steps: list[tuple[str, StepType]],
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
                " updated_at) VALUES (?, ?, ?, '', 0, ?, ?) ON CONFLICT(name) DO UPDATE"
                " SET revision = excluded.revision, phase = excluded.phase, message = '',"
                " suspend = 0, updated_at = excluded.updated_at",
                (app, number, AppPhase.RUNNING, now, now),
            )
            db.execute(
                "UPDATE revisions SET outcome = ?, finished_at = ? WHERE app = ? AND outcome = ?",
                (Outcome.SUPERSEDED, now, app, Outcome.RUNNING),
            )
            # What the blast-radius guard held was the old placement's: the new revision's
            # garbage collection decides again, through the guard.
            db.execute("DELETE FROM holds WHERE app = ?", (app,))
            db.execute(
                "INSERT INTO revisions (app, number, publish_version, digest, spec, source, base,"
                " rollback_of, outcome, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    app,
                    number,
                    publish_version,
                    digest,
                    json.dumps(spec),
                    source,
                    base,
                    rollback_of,
                    Outcome.RUNNING,
                    now,
                ),
            )
            db.executemany(
                "INSERT INTO steps (app, revision, name, type, phase) VALUES (?, ?, ?, ?, ?)",
                [(app, number, name, kind, StepPhase.PENDING) for name, kind in steps],
            )
            for target in targets:
                target.app, target.revision = app, number
                _insert_target(db, target)
        self._changed(app)
        return self.revision(app, number)

    def writes(self) -> int:
        """Every write of this store's but `set_health` (status rolls its own health up and
        shows no stored one), and the registry's renames and removals of clusters, which
        re-point or drop the rows naming them: nothing else writes these tables (one
        process owns the file)."""
        return self._writes + self._store.cluster_rows_moved

    def apps(self) -> list[AppRecord]:
        rows = self._db.execute(f"SELECT {APP_COLUMNS} FROM applications ORDER BY name").fetchall()
        return [_app(r) for r in rows]

    def app(self, name: str) -> AppRecord:
        row = self._db.execute(
            f"SELECT {APP_COLUMNS} FROM applications WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise NotFound(f"application {name!r} not found")
        return _app(row)

    def set_app(self, name: str, *, phase: AppPhase, message: str = "") -> None:
        with self._store.transaction() as db:
            row = db.execute("SELECT phase FROM applications WHERE name = ?", (name,)).fetchone()
            if row is None or not AppPhase(row[0]).yields_to(phase):
                return
            db.execute(
                "UPDATE applications SET phase = ?, message = ?, updated_at = ? WHERE name = ?",
                (phase, message, time.time(), name),
            )
        self._changed(name)

    def set_suspend(self, name: str, suspend: bool) -> None:
        with self._store.transaction() as db:
            db.execute("UPDATE applications SET suspend = ? WHERE name = ?", (suspend, name))
        self._changed(name)

    def set_health(self, name: str, health: str) -> None:
        with self._store.transaction() as db:
            db.execute(
                "UPDATE applications SET health = ? WHERE name = ? AND health != ?",
                (health, name, health),
            )

    def set_observed(self, name: str, record: ObservedRecord) -> None:
        text = json.dumps(record.to_json(), separators=(",", ":"))
        with self._store.transaction() as db:
            db.execute("UPDATE applications SET observed = ? WHERE name = ?", (text, name))
        self._writes += 1

    def observed(self, name: str) -> ObservedRecord | None:
        row = self._db.execute(
            "SELECT observed FROM applications WHERE name = ?", (name,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return ObservedRecord.from_json(json.loads(row[0]))

    def delete_app(self, name: str) -> None:
        with self._store.transaction() as db:
            for table in (
                "hook_runs",
                "holds",
                "events",
                "measurements",
                "rollouts",
                "inventory",
                "targets",
                "steps",
                "revisions",
            ):
                db.execute(f"DELETE FROM {table} WHERE app = ?", (name,))
            db.execute("DELETE FROM applications WHERE name = ?", (name,))
        self._changed(name)

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

    def finish_revision(self, app: str, number: int, outcome: Outcome) -> None:
        with self._store.transaction() as db:
            db.execute(
                "UPDATE revisions SET outcome = ?, finished_at = ? WHERE app = ? AND number = ?",
                (outcome, time.time(), app, number),
            )
        self._changed(app)

    def steps(self, app: str, revision: int) -> list[StepRecord]:
        rows = self._db.execute(
            "SELECT * FROM steps WHERE app = ? AND revision = ? ORDER BY rowid", (app, revision)
        ).fetchall()
        return [_step(r) for r in rows]

    def set_step(
        self,
        app: str,
        revision: int,
        name: str,
        *,
        phase: StepPhase,
        message: str = "",
        resume_at: float | None = None,
    ) -> None:
        now = time.time()
        started = now if phase is StepPhase.RUNNING else None
        finished = now if phase.finished else None
        with self._store.transaction() as db:
            db.execute(
                "UPDATE steps SET phase = ?, message = ?, resume_at = ?,"
                " started_at = COALESCE(started_at, ?), finished_at = ?"
                " WHERE app = ? AND revision = ? AND name = ?",
                (phase, message, resume_at, started, finished, app, revision, name),
            )
        self._changed(app)

    def put_target(self, target: TargetRecord) -> None:
        with self._store.transaction() as db:
            _insert_target(db, target)
        self._changed(target.app)

    def add_targets(self, app: str, revision: int, targets: list[TargetRecord]) -> None:
        """Add targets to an existing revision, in one transaction: clusters that came to
        match its placement (enrollment), without a new revision."""
        with self._store.transaction() as db:
            for target in targets:
                target.app, target.revision = app, revision
                _insert_target(db, target)
        self._changed(app)

    def drop_target(self, target: TargetRecord) -> None:
        """Forget a target of a revision and the canary of its release: its cluster no
        longer matches the placement. Its objects are the inventory's, removed apart."""
        with self._store.transaction() as db:
            db.execute(
                "DELETE FROM targets WHERE app = ? AND revision = ? AND step = ? AND cluster = ?"
                " AND component = ?",
                (target.app, target.revision, target.step, target.cluster, target.component),
            )
            db.execute(
                "DELETE FROM rollouts WHERE app = ? AND cluster = ? AND component = ?",
                (target.app, target.cluster, target.component),
            )
        self._changed(target.app)

    def hold(self, app: str) -> Hold | None:
        row = self._db.execute("SELECT * FROM holds WHERE app = ?", (app,)).fetchone()
        if row is None:
            return None
        return Hold(
            app=row["app"],
            revision=row["revision"],
            removals=frozenset((c, k) for c, k in json.loads(row["removals"])),
            reason=row["reason"],
            confirmed=bool(row["confirmed"]),
            created_at=row["created_at"],
        )

    def put_hold(self, hold: Hold) -> None:
        """Hold these removals (unconfirmed), replacing what was held before."""
        with self._store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO holds (app, revision, removals, reason, confirmed,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    hold.app,
                    hold.revision,
                    json.dumps(sorted(hold.removals)),
                    hold.reason,
                    hold.confirmed,
                    time.time(),
                ),
            )
        self._changed(hold.app)

    def confirm_hold(self, app: str) -> None:
        with self._store.transaction() as db:
            db.execute("UPDATE holds SET confirmed = 1 WHERE app = ?", (app,))
        self._changed(app)

    def drop_hold(self, app: str) -> None:
        with self._store.transaction() as db:
            db.execute("DELETE FROM holds WHERE app = ?", (app,))
        self._changed(app)

    def targets(self, app: str, revision: int) -> list[TargetRecord]:
        rows = self._db.execute(
            "SELECT * FROM targets WHERE app = ? AND revision = ?"
            " ORDER BY step, cluster, component",
            (app, revision),
        ).fetchall()
        return [_target(r) for r in rows]

    def target(self, app: str, revision: int, cluster: str, component: str) -> TargetRecord | None:
        """The target of one component on one cluster in a revision (its first step's),
        None if the revision does not place it there. Read alone because the drift keeper
        asks on every change a watch sees: decoding every target of a 64-cluster revision
        each time was most of the hub's CPU during a deploy."""
        row = self._db.execute(
            "SELECT * FROM targets WHERE app = ? AND revision = ? AND cluster = ?"
            " AND component = ? ORDER BY step LIMIT 1",
            (app, revision, cluster, component),
        ).fetchone()
        return None if row is None else _target(row)

    def inventory(
        self, app: str, cluster: str | None = None
    ) -> dict[tuple[str, str], tuple[int, list[dict[str, Any]]]]:
        """(cluster, component) -> (revision, object references) of what is applied; only
        `cluster`'s when given (the drift keeper looks at one cluster at a time)."""
        if cluster is None:
            rows = self._db.execute("SELECT * FROM inventory WHERE app = ?", (app,)).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM inventory WHERE app = ? AND cluster = ?", (app, cluster)
            ).fetchall()
        # orjson: `status` of a thousand targets reads every row, and the stdlib's decoder
        # was a quarter of it. The entries are references (no big numbers orjson refuses).
        return {
            (r["cluster"], r["component"]): (r["revision"], orjson.loads(r["objects"]))
            for r in rows
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
        self._changed(app)

    def drop_inventory(self, app: str, cluster: str, component: str) -> None:
        with self._store.transaction() as db:
            db.execute(
                "DELETE FROM inventory WHERE app = ? AND cluster = ? AND component = ?",
                (app, cluster, component),
            )
        self._changed(app)

    def rollout(self, app: str, cluster: str, component: str) -> RolloutRecord | None:
        row = self._db.execute(
            "SELECT * FROM rollouts WHERE app = ? AND cluster = ? AND component = ?",
            (app, cluster, component),
        ).fetchone()
        return _rollout(row) if row is not None else None

    def rollouts(self, app: str) -> list[RolloutRecord]:
        rows = self._db.execute("SELECT * FROM rollouts WHERE app = ?", (app,)).fetchall()
        return [_rollout(r) for r in rows]

    def put_rollout(self, rollout: RolloutRecord) -> None:
        """Write where a canary stands. Its `resume_step` is left as stored: `resume` writes
        it (`approve_pause`) while the canary runs on a record read before, and must not be
        overwritten by it. A canary of another revision starts with none."""
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO rollouts (app, cluster, component, revision, kind, name,"
                " stage, step, resume_at, detail, stable_hash, phases_done)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (app, cluster, component) DO UPDATE SET"
                " resume_step = CASE WHEN revision = excluded.revision THEN resume_step END,"
                " revision = excluded.revision, kind = excluded.kind, name = excluded.name,"
                " stage = excluded.stage, step = excluded.step, resume_at = excluded.resume_at,"
                " detail = excluded.detail, stable_hash = excluded.stable_hash,"
                " phases_done = excluded.phases_done",
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
                    rollout.stable_hash,
                    rollout.phases_done,
                ),
            )
        self._changed(rollout.app)

    def approve_pause(self, app: str, cluster: str, component: str, step: int | None) -> None:
        """Approve the canary's pause at `step` before it is reached (None: forget it)."""
        with self._store.transaction() as db:
            db.execute(
                "UPDATE rollouts SET resume_step = ?"
                " WHERE app = ? AND cluster = ? AND component = ?",
                (step, app, cluster, component),
            )
        self._changed(app)

    def drop_rollout(self, app: str, cluster: str, component: str) -> None:
        with self._store.transaction() as db:
            db.execute(
                "DELETE FROM rollouts WHERE app = ? AND cluster = ? AND component = ?",
                (app, cluster, component),
            )
        self._changed(app)

    def put_hook_run(self, run: HookRunRecord) -> None:
        """Write the last run of a hook object for its event, over the run before it."""
        with self._store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO hook_runs (app, cluster, component, revision, event,"
                " kind, namespace, name, phase, message, started_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.app,
                    run.cluster,
                    run.component,
                    run.revision,
                    run.event,
                    run.kind,
                    run.namespace,
                    run.name,
                    run.phase,
                    run.message,
                    run.started_at,
                    run.finished_at,
                ),
            )
        self._changed(run.app)

    def hook_runs(self, app: str, cluster: str, component: str) -> list[HookRunRecord]:
        """The last run of every hook (and `crds/` object) of a release, in the order
        they started."""
        rows = self._db.execute(
            "SELECT * FROM hook_runs WHERE app = ? AND cluster = ? AND component = ?"
            " ORDER BY started_at, rowid",
            (app, cluster, component),
        ).fetchall()
        return [_hook_run(r) for r in rows]

    def hook_runs_of(self, app: str) -> dict[Release, list[HookRunRecord]]:
        rows = self._db.execute(
            "SELECT * FROM hook_runs WHERE app = ? ORDER BY started_at, rowid", (app,)
        ).fetchall()
        found: dict[Release, list[HookRunRecord]] = {}
        for row in rows:
            run = _hook_run(row)
            found.setdefault((run.cluster, run.component), []).append(run)
        return found

    def holdings(self, cluster: str) -> list[Holding]:
        """Every application that holds something on `cluster`, by name: objects in its
        inventory there, a canary there, or a target there in its current revision (not
        deployed yet, perhaps). Older revisions' targets are history and hold nothing."""
        found: dict[str, Holding] = {}
        for row in self._db.execute(
            "SELECT app, component, objects FROM inventory WHERE cluster = ? ORDER BY component",
            (cluster,),
        ):
            holding = found.setdefault(row["app"], Holding(row["app"]))
            holding.components.append(row["component"])
            holding.objects += len(orjson.loads(row["objects"]))
        for row in self._db.execute(
            "SELECT DISTINCT t.app FROM targets t JOIN applications a"
            " ON a.name = t.app AND a.revision = t.revision WHERE t.cluster = ?",
            (cluster,),
        ):
            found.setdefault(row["app"], Holding(row["app"])).targeted = True
        for row in self._db.execute(
            "SELECT DISTINCT app FROM rollouts WHERE cluster = ?", (cluster,)
        ):
            found.setdefault(row["app"], Holding(row["app"]))
        return [found[app] for app in sorted(found)]

    def add_measurement(self, m: MeasurementRecord) -> None:
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO measurements (app, revision, step, gate, cluster, component,"
                " metric, at, value, outcome, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    m.app,
                    m.revision,
                    m.step,
                    m.gate,
                    m.cluster,
                    m.component,
                    m.metric,
                    m.at,
                    m.value,
                    m.outcome,
                    m.message,
                ),
            )
        self._changed(m.app)

    def measurements(
        self, app: str, revision: int, step: str | None = None, gate: int | None = None
    ) -> list[MeasurementRecord]:
        """Measurements of a revision (of one step, of one of its gates), oldest first."""
        query = "SELECT * FROM measurements WHERE app = ? AND revision = ?"
        args: list[object] = [app, revision]
        if step is not None:
            query, args = query + " AND step = ?", [*args, step]
        if gate is not None:
            query, args = query + " AND gate = ?", [*args, gate]
        rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [_measurement(r) for r in rows]

    def drop_measurements(self, app: str, revision: int, step: str) -> None:
        """Forget a step's measurements: a `restart` measures its retry afresh."""
        with self._store.transaction() as db:
            db.execute(
                "DELETE FROM measurements WHERE app = ? AND revision = ? AND step = ?",
                (app, revision, step),
            )
        self._changed(app)

    def add_event(
        self,
        app: str,
        message: str,
        *,
        revision: int | None = None,
        step: str | None = None,
        cluster: str | None = None,
        component: str | None = None,
    ) -> EventRecord:
        """Record a transition, and publish it; what is beyond the bounds of count and age
        goes in the same transaction."""
        at = time.time()
        with self._store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO events (app, at, message, revision, step, cluster, component)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (app, at, message, revision, step, cluster, component),
            )
            self._events_added += 1
            self._prune_events(db, app, at, by_age=self._events_added % PRUNE_EVERY == 0)
        event = EventRecord(
            int(cursor.lastrowid or 0), app, at, message, revision, step, cluster, component
        )
        self._writes += 1
        self.changes.publish(Change(app, event))
        return event

    def _prune_events(self, db: sqlite3.Connection, app: str, now: float, *, by_age: bool) -> None:
        """The application's events beyond the count go with each new one (an index walk
        of at most that many); every so often the events of any application past the age
        go too (a scan of the table, so not on every insert)."""
        if by_age:
            db.execute("DELETE FROM events WHERE at < ?", (now - self._event_age,))
        db.execute(
            "DELETE FROM events WHERE app = ? AND id <= (SELECT id FROM events WHERE app = ?"
            " ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (app, app, self._keep_events),
        )

    def events(
        self, app: str | None = None, *, after: int = 0, limit: int = 50
    ) -> list[EventRecord]:
        """The newest `limit` events after id `after` (of one application, or all),
        oldest first."""
        query = "SELECT * FROM events WHERE id > ?"
        args: list[object] = [after]
        if app is not None:
            query, args = query + " AND app = ?", [*args, app]
        rows = self._db.execute(query + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return [EventRecord(**dict(r)) for r in reversed(rows)]

    def _changed(self, app: str) -> None:
        self._writes += 1
        self.changes.publish(Change(app))


def _measurement(row: sqlite3.Row) -> MeasurementRecord:
    return MeasurementRecord(
        app=row["app"],
        revision=row["revision"],
        step=row["step"],
        gate=row["gate"],
        cluster=row["cluster"],
        component=row["component"],
        metric=row["metric"],
        at=row["at"],
        value=row["value"],
        outcome=Measured(row["outcome"]),
        message=row["message"],
    )


def _app(row: sqlite3.Row) -> AppRecord:
    data = dict(row)
    data["suspend"] = bool(data["suspend"])
    data["phase"] = AppPhase(data["phase"])
    return AppRecord(**data)


def _revision(row: sqlite3.Row) -> RevisionRecord:
    data = dict(row)
    data["outcome"] = Outcome(data["outcome"])
    data["spec"] = _loads(data["spec"])
    return RevisionRecord(**data)


def _target(row: sqlite3.Row) -> TargetRecord:
    data = dict(row)
    data["phase"] = TargetPhase(data["phase"])
    data["spec"] = _spec(data["spec"])
    return TargetRecord(**data)


@functools.lru_cache(maxsize=SPECS_KEPT)
def _spec(text: str) -> TargetSpec:
    """A stored target spec, decoded once per text: a spec never changes once its revision
    is planned, `status` of a thousand targets decoded a thousand on every call, and its
    readers copy what they change."""
    return TargetSpec.from_json(_loads(text))


def _loads(text: str) -> Any:
    """A stored document that holds the user's values: by orjson, in a third of the
    stdlib's time (`status` reads a revision and every target of it), or by the stdlib
    where the values hold a NaN or an infinity, which `json.dumps` writes and orjson
    refuses."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _step(row: sqlite3.Row) -> StepRecord:
    data = dict(row)
    data["type"], data["phase"] = StepType(data["type"]), StepPhase(data["phase"])
    return StepRecord(**data)


def _hook_run(row: sqlite3.Row) -> HookRunRecord:
    data = dict(row)
    data["phase"] = HookPhase(data["phase"])
    return HookRunRecord(**data)


def _rollout(row: sqlite3.Row) -> RolloutRecord:
    data = dict(row)
    data["stage"] = Stage(data["stage"])
    return RolloutRecord(**data)


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
            json.dumps(target.spec.to_json()),
            target.phase,
            target.message,
            target.updated_at,
        ),
    )
