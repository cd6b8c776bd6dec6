"""The store's tables. Every statement is idempotent, so opening a store creates what is
missing and leaves the rest.
"""

from __future__ import annotations

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
