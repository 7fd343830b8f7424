-- +goose Up
-- Region drains: one open drain per region (held by the partial unique
-- index), run by the built-in runbook drain-region, and one row per
-- devserver it moves, so progress (done, remaining, failed) is counted by
-- the database and a restarted portal carries on where it stopped.
CREATE TABLE drains (
    id           INTEGER PRIMARY KEY,
    region       TEXT NOT NULL REFERENCES regions (code),
    run_id       INTEGER UNIQUE,
    reason       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('exercise', 'incident')),
    sev_id       INTEGER,
    max_parallel INTEGER NOT NULL CHECK (max_parallel > 0),
    deadline_at  TIMESTAMP NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'done', 'cancelled')),
    created_by   TEXT NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    finished_at  TIMESTAMP
);
CREATE UNIQUE INDEX drains_one_open ON drains (region) WHERE state = 'open';
CREATE INDEX drains_region ON drains (region, id);

-- method: live (VM, Driver.Migrate), migrate (backup and restore through a
-- devserver migration), owner (physical: backed up, the owner asked to move),
-- release (a pooled devserver nobody owns).
CREATE TABLE drain_items (
    drain_id     INTEGER NOT NULL REFERENCES drains (id) ON DELETE CASCADE,
    devserver_id INTEGER NOT NULL REFERENCES devservers (id),
    name         TEXT NOT NULL,
    owner_id     INTEGER,
    method       TEXT NOT NULL CHECK (method IN ('live', 'migrate', 'owner', 'release')),
    state        TEXT NOT NULL CHECK (state IN ('pending', 'moving', 'migrating', 'done', 'failed', 'owner', 'overdue', 'cancelled')),
    from_host_id INTEGER NOT NULL,
    to_region    TEXT NOT NULL DEFAULT '',
    to_host_id   INTEGER,
    migration_id INTEGER,
    backup_id    INTEGER,
    task_id      INTEGER,
    error        TEXT NOT NULL DEFAULT '',
    updated_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (drain_id, devserver_id)
);
CREATE INDEX drain_items_state ON drain_items (drain_id, state);

-- +goose Down
DROP TABLE drain_items;
DROP TABLE drains;
