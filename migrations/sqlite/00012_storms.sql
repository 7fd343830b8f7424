-- +goose Up
-- Storms (a region down) and dark storms (devservers of a region wiped), and
-- what each did to every devserver it touched, so that a recovery puts back
-- exactly what the storm took and a SEV can tell each data-loss window.
CREATE TABLE storms (
    id           INTEGER PRIMARY KEY,
    region       TEXT NOT NULL REFERENCES regions (code),
    kind         TEXT NOT NULL CHECK (kind IN ('storm', 'dark_storm')),
    reason       TEXT NOT NULL,
    wipe_count   INTEGER NOT NULL DEFAULT 0,
    run_id       INTEGER REFERENCES runbook_runs (id),
    sev_id       INTEGER REFERENCES sevs (id),
    banner_id    INTEGER REFERENCES banners (id) ON DELETE SET NULL,
    hosts        TEXT NOT NULL DEFAULT '', -- comma-separated host IDs the storm made unreachable
    started_by   TEXT NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    recovered_at TIMESTAMP,
    recovered_by TEXT NOT NULL DEFAULT ''
);
-- At most one storm a region at a time: the database holds it.
CREATE UNIQUE INDEX storms_one_open ON storms (region) WHERE kind = 'storm' AND recovered_at IS NULL;

-- A devserver a storm made unreachable, or a dark storm wiped.
CREATE TABLE storm_devservers (
    id             INTEGER PRIMARY KEY,
    storm_id       INTEGER NOT NULL REFERENCES storms (id),
    devserver_id   INTEGER NOT NULL REFERENCES devservers (id),
    owner_id       INTEGER NOT NULL REFERENCES users (id),
    -- The latest finished backup when the storm struck (NULL: none).
    backup_id      INTEGER REFERENCES backups (id),
    backup_at      TIMESTAMP,
    replacement_id INTEGER REFERENCES devservers (id),
    restore_id     INTEGER REFERENCES restores (id),
    state          TEXT NOT NULL CHECK (state IN ('unreachable', 'lost', 'replacing', 'replaced', 'replace_failed', 'recovered')),
    -- What the owner wants of a replacement when the region recovers.
    choice         TEXT NOT NULL DEFAULT '' CHECK (choice IN ('', 'keep', 'release')),
    note           TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    UNIQUE (storm_id, devserver_id)
);
CREATE INDEX storm_devservers_owner ON storm_devservers (owner_id, state);
CREATE INDEX storm_devservers_devserver ON storm_devservers (devserver_id);

-- +goose Down
DROP TABLE storm_devservers;
DROP TABLE storms;
