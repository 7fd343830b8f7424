-- +goose Up
-- A restore of a backup onto a devserver of the same owner: verify the file,
-- take a pre_restore backup of the target, then replace its data. At most one
-- restore runs per devserver, held by the partial unique index.
CREATE TABLE restores (
    id            INTEGER PRIMARY KEY,
    backup_id     INTEGER NOT NULL REFERENCES backups (id),
    devserver_id  INTEGER NOT NULL REFERENCES devservers (id),
    pre_backup_id INTEGER REFERENCES backups (id),
    state         TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    step          TEXT NOT NULL DEFAULT 'verify' CHECK (step IN ('verify', 'pre_backup', 'restore', 'done')),
    error         TEXT NOT NULL DEFAULT '',
    requested_by  TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP
);
CREATE UNIQUE INDEX restores_one_running ON restores (devserver_id) WHERE state IN ('pending', 'running');
CREATE INDEX restores_backup ON restores (backup_id);

-- The scheduler looks for each devserver's newest finished backup.
CREATE INDEX backups_devserver_state ON backups (devserver_id, state, created_at);

-- +goose Down
DROP INDEX backups_devserver_state;
DROP TABLE restores;
