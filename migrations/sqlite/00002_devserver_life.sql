-- +goose NO TRANSACTION
-- +goose Up
-- Pooled devservers belong to nobody until a reservation takes one, so
-- devservers.owner_id becomes nullable. SQLite changes a column by rebuilding
-- the table, with foreign keys off for the swap.
PRAGMA foreign_keys = OFF;

BEGIN;
CREATE TABLE devservers_new (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    owner_id    INTEGER REFERENCES users (id),
    flavor      TEXT NOT NULL REFERENCES flavors (name),
    region      TEXT NOT NULL REFERENCES regions (code),
    host_id     INTEGER NOT NULL REFERENCES hosts (id),
    hostname    TEXT NOT NULL,
    address     TEXT NOT NULL DEFAULT '',
    instance_id TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL CHECK (state IN ('provisioning', 'ready', 'migrating', 'unreachable', 'lost', 'releasing', 'released', 'failed')),
    progress    INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    status_note TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    ready_at    TIMESTAMP,
    released_at TIMESTAMP,
    -- A pooled devserver was built ahead of demand; pooled_at says when, and
    -- it stays set after assignment so a reservation can tell it was served from a pool.
    pooled_at   TIMESTAMP,
    assigned_at TIMESTAMP,
    oneoffs_state TEXT NOT NULL DEFAULT 'none' CHECK (oneoffs_state IN ('none', 'pending', 'applied', 'failed')),
    oneoffs_error TEXT NOT NULL DEFAULT '',
    oneoffs_applied_at TIMESTAMP,
    CHECK (owner_id IS NOT NULL OR pooled_at IS NOT NULL)
);
INSERT INTO devservers_new (id, name, owner_id, flavor, region, host_id, hostname, address, instance_id, state, progress,
    status_note, created_at, updated_at, ready_at, released_at)
SELECT id, name, owner_id, flavor, region, host_id, hostname, address, instance_id, state, progress,
    status_note, created_at, updated_at, ready_at, released_at FROM devservers;
DROP TABLE devservers;
ALTER TABLE devservers_new RENAME TO devservers;
CREATE INDEX devservers_owner ON devservers (owner_id, state);
CREATE INDEX devservers_region ON devservers (region, state);
CREATE INDEX devservers_host ON devservers (host_id, state);
-- The pool: ready devservers nobody owns, by region and flavour.
CREATE INDEX devservers_pool ON devservers (region, flavor, state) WHERE owner_id IS NULL;

-- How far each region is from each other, for ordering regions by nearness.
CREATE TABLE region_latencies (
    from_region TEXT NOT NULL REFERENCES regions (code),
    to_region   TEXT NOT NULL REFERENCES regions (code),
    ms          INTEGER NOT NULL CHECK (ms >= 0),
    PRIMARY KEY (from_region, to_region)
);

-- Lease policy by flavour: the longest short lease, and which roles may hold
-- a permanent one ('' means nobody; 'engineer' means everyone).
CREATE TABLE flavor_policies (
    flavor          TEXT PRIMARY KEY REFERENCES flavors (name),
    max_lease_days  INTEGER NOT NULL CHECK (max_lease_days > 0),
    permanent_roles TEXT NOT NULL DEFAULT ''
);

-- Quotas by role; a person gets the most generous of their roles' quotas.
CREATE TABLE quotas (
    role           TEXT PRIMARY KEY CHECK (role IN ('engineer', 'admin', 'reviewer')),
    devservers     INTEGER NOT NULL CHECK (devservers >= 0),
    gpu_devservers INTEGER NOT NULL CHECK (gpu_devservers >= 0)
);

-- Pool targets set by admins, per region and flavour.
CREATE TABLE pools (
    region     TEXT NOT NULL REFERENCES regions (code),
    flavor     TEXT NOT NULL REFERENCES flavors (name),
    target     INTEGER NOT NULL CHECK (target >= 0 AND target <= 10000),
    updated_at TIMESTAMP NOT NULL,
    updated_by TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (region, flavor)
);

-- Features on a devserver: what is wanted and where it stands.
CREATE TABLE devserver_features (
    devserver_id INTEGER NOT NULL REFERENCES devservers (id),
    feature      TEXT NOT NULL REFERENCES features (name),
    version      TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL CHECK (state IN ('pending', 'installed', 'removing', 'failed')),
    error        TEXT NOT NULL DEFAULT '',
    updated_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (devserver_id, feature)
);
CREATE INDEX devserver_features_feature ON devserver_features (feature, version);

-- A rolling update of one feature to a new version, batch by batch.
CREATE TABLE feature_rollouts (
    id           INTEGER PRIMARY KEY,
    feature      TEXT NOT NULL REFERENCES features (name),
    from_version TEXT NOT NULL,
    to_version   TEXT NOT NULL,
    batch_size   INTEGER NOT NULL CHECK (batch_size > 0),
    state        TEXT NOT NULL CHECK (state IN ('running', 'done', 'cancelled')),
    created_at   TIMESTAMP NOT NULL,
    created_by   TEXT NOT NULL,
    finished_at  TIMESTAMP
);
CREATE UNIQUE INDEX feature_rollouts_one_running ON feature_rollouts (feature) WHERE state = 'running';

-- A person's one-offs, applied to every environment they get.
CREATE TABLE oneoffs (
    user_id      INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    dotfiles     TEXT NOT NULL DEFAULT '[]', -- JSON [{"path": ..., "content": ...}]
    setup_script TEXT NOT NULL DEFAULT '',
    env          TEXT NOT NULL DEFAULT '{}', -- JSON {"NAME": "value"}
    updated_at   TIMESTAMP NOT NULL
);

CREATE TABLE devserver_shares (
    devserver_id INTEGER NOT NULL REFERENCES devservers (id),
    user_id      INTEGER NOT NULL REFERENCES users (id),
    created_at   TIMESTAMP NOT NULL,
    created_by   TEXT NOT NULL,
    PRIMARY KEY (devserver_id, user_id)
);
CREATE INDEX devserver_shares_user ON devserver_shares (user_id);

CREATE TABLE backups (
    id            INTEGER PRIMARY KEY,
    devserver_id  INTEGER NOT NULL REFERENCES devservers (id),
    owner_id      INTEGER NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL CHECK (kind IN ('scheduled', 'manual', 'pre_release', 'pre_migration', 'pre_restore', 'final')),
    state         TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'deleted')),
    size_bytes    INTEGER NOT NULL DEFAULT 0,
    sha256        TEXT NOT NULL DEFAULT '',
    location      TEXT NOT NULL DEFAULT '',
    error         TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP
);
CREATE INDEX backups_devserver ON backups (devserver_id, created_at);
CREATE INDEX backups_owner ON backups (owner_id);

-- The in-app inbox. The idempotency key makes every notification once-only.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL DEFAULT '',
    link            TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at      TIMESTAMP NOT NULL,
    read_at         TIMESTAMP
);
CREATE INDEX notifications_user ON notifications (user_id, read_at);

-- A move of a devserver to another flavour and/or region, step by step.
CREATE TABLE devserver_migrations (
    id            INTEGER PRIMARY KEY,
    devserver_id  INTEGER NOT NULL REFERENCES devservers (id),
    from_region   TEXT NOT NULL,
    from_flavor   TEXT NOT NULL,
    from_host_id  INTEGER NOT NULL REFERENCES hosts (id),
    to_region     TEXT NOT NULL REFERENCES regions (code),
    to_flavor     TEXT NOT NULL REFERENCES flavors (name),
    to_host_id    INTEGER NOT NULL REFERENCES hosts (id),
    to_instance_id TEXT NOT NULL DEFAULT '',
    to_address    TEXT NOT NULL DEFAULT '',
    backup_id     INTEGER REFERENCES backups (id),
    step          TEXT NOT NULL CHECK (step IN ('backup', 'provision', 'restore', 'switch', 'release_source', 'done')),
    state         TEXT NOT NULL CHECK (state IN ('running', 'done', 'rolling_back', 'rolled_back')),
    error         TEXT NOT NULL DEFAULT '',
    requested_by  TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP
);
CREATE UNIQUE INDEX devserver_migrations_one_running ON devserver_migrations (devserver_id) WHERE state IN ('running', 'rolling_back');

-- Answers to mutating API calls sent with an Idempotency-Key, so a repeat
-- returns the first answer and does nothing twice.
CREATE TABLE idempotency_keys (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    status     INTEGER NOT NULL DEFAULT 0, -- 0 while the first request is in flight
    body       TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
COMMIT;

PRAGMA foreign_key_check;
PRAGMA foreign_keys = ON;

-- +goose Down
PRAGMA foreign_keys = OFF;
BEGIN;
DROP TABLE idempotency_keys;
DROP TABLE devserver_migrations;
DROP TABLE notifications;
DROP TABLE backups;
DROP TABLE devserver_shares;
DROP TABLE oneoffs;
DROP TABLE feature_rollouts;
DROP TABLE devserver_features;
DROP TABLE pools;
DROP TABLE quotas;
DROP TABLE flavor_policies;
DROP TABLE region_latencies;
DELETE FROM devservers WHERE owner_id IS NULL;
CREATE TABLE devservers_old (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    owner_id    INTEGER NOT NULL REFERENCES users (id),
    flavor      TEXT NOT NULL REFERENCES flavors (name),
    region      TEXT NOT NULL REFERENCES regions (code),
    host_id     INTEGER NOT NULL REFERENCES hosts (id),
    hostname    TEXT NOT NULL,
    address     TEXT NOT NULL DEFAULT '',
    instance_id TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL CHECK (state IN ('provisioning', 'ready', 'migrating', 'unreachable', 'lost', 'releasing', 'released', 'failed')),
    progress    INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    status_note TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    ready_at    TIMESTAMP,
    released_at TIMESTAMP
);
INSERT INTO devservers_old SELECT id, name, owner_id, flavor, region, host_id, hostname, address, instance_id, state,
    progress, status_note, created_at, updated_at, ready_at, released_at FROM devservers;
DROP TABLE devservers;
ALTER TABLE devservers_old RENAME TO devservers;
CREATE INDEX devservers_owner ON devservers (owner_id, state);
CREATE INDEX devservers_region ON devservers (region, state);
CREATE INDEX devservers_host ON devservers (host_id, state);
COMMIT;
PRAGMA foreign_keys = ON;
