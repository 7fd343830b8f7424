-- +goose Up
-- The devport CLI.
--
-- cli_login_codes: the one-time codes of the browser sign-in of `devport
-- login`. The signed-in person approves on /cli/login; the CLI exchanges the
-- code (stored hashed, valid 2 minutes, used once) and the PKCE verifier whose
-- S256 challenge the page saw for a personal access token named name.
CREATE TABLE cli_login_codes (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL UNIQUE,
    challenge  TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at    TIMESTAMP
);
CREATE INDEX cli_login_codes_user ON cli_login_codes (user_id);

-- diagnostic_bundles: bundles come from a devserver's "Rage" (collected by a
-- job) or from `devport doctor --rage` (sent whole by the CLI, about no
-- devserver or one). SQLite cannot drop NOT NULL in place: rebuild the table.
CREATE TABLE diagnostic_bundles_new (
    id           INTEGER PRIMARY KEY,
    devserver_id INTEGER REFERENCES devservers (id),
    devserver    TEXT NOT NULL DEFAULT '',
    source       TEXT NOT NULL DEFAULT 'devserver' CHECK (source IN ('devserver', 'cli')),
    requested_by TEXT NOT NULL,
    note         TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL CHECK (state IN ('collecting', 'ready', 'failed')),
    body         TEXT NOT NULL DEFAULT '{}',
    error        TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMP NOT NULL,
    ready_at     TIMESTAMP
);
INSERT INTO diagnostic_bundles_new (id, devserver_id, devserver, source, requested_by, note, state, body, error, created_at, ready_at)
SELECT id, devserver_id, devserver, 'devserver', requested_by, note, state, body, error, created_at, ready_at FROM diagnostic_bundles;
DROP TABLE diagnostic_bundles;
ALTER TABLE diagnostic_bundles_new RENAME TO diagnostic_bundles;
CREATE INDEX diagnostic_bundles_devserver ON diagnostic_bundles (devserver_id, id);
CREATE INDEX diagnostic_bundles_requested ON diagnostic_bundles (requested_by, created_at);

-- +goose Down
-- Bundles the CLI sent about no devserver cannot go back into the old table.
CREATE TABLE diagnostic_bundles_old (
    id           INTEGER PRIMARY KEY,
    devserver_id INTEGER NOT NULL REFERENCES devservers (id),
    devserver    TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    note         TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL CHECK (state IN ('collecting', 'ready', 'failed')),
    body         TEXT NOT NULL DEFAULT '{}',
    error        TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMP NOT NULL,
    ready_at     TIMESTAMP
);
INSERT INTO diagnostic_bundles_old (id, devserver_id, devserver, requested_by, note, state, body, error, created_at, ready_at)
SELECT id, devserver_id, devserver, requested_by, note, state, body, error, created_at, ready_at FROM diagnostic_bundles
WHERE devserver_id IS NOT NULL;
DROP TABLE diagnostic_bundles;
ALTER TABLE diagnostic_bundles_old RENAME TO diagnostic_bundles;
CREATE INDEX diagnostic_bundles_devserver ON diagnostic_bundles (devserver_id, id);

DROP TABLE cli_login_codes;
