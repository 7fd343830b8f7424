-- +goose Up
-- Host operations and devserver health.
--
-- host_moves: one live migration of a devserver off a host (maintenance,
-- decommissioning), the target's capacity taken when it starts, so a retried
-- job finds its target and capacity moves exactly once.
CREATE TABLE host_moves (
    id           INTEGER PRIMARY KEY,
    devserver_id INTEGER NOT NULL REFERENCES devservers (id),
    from_host_id INTEGER NOT NULL REFERENCES hosts (id),
    to_host_id   INTEGER NOT NULL REFERENCES hosts (id),
    run_id       INTEGER,
    state        TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    error        TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMP NOT NULL,
    finished_at  TIMESTAMP
);
CREATE UNIQUE INDEX host_moves_one_running ON host_moves (devserver_id) WHERE state = 'running';
CREATE INDEX host_moves_from ON host_moves (from_host_id, state);

-- devserver_health: the latest check of each devserver (one row, updated
-- every check); health_checks keeps the history of results that matter (a
-- failure, a recovery), not a row a minute for every healthy devserver.
CREATE TABLE devserver_health (
    devserver_id INTEGER PRIMARY KEY REFERENCES devservers (id),
    ok           BOOLEAN NOT NULL,
    cause        TEXT NOT NULL DEFAULT '',
    detail       TEXT NOT NULL DEFAULT '',
    failures     INTEGER NOT NULL DEFAULT 0, -- consecutive failed checks
    checked_at   TIMESTAMP NOT NULL
);
CREATE TABLE health_checks (
    id           INTEGER PRIMARY KEY,
    devserver_id INTEGER NOT NULL REFERENCES devservers (id),
    ok           BOOLEAN NOT NULL,
    cause        TEXT NOT NULL DEFAULT '',
    detail       TEXT NOT NULL DEFAULT '',
    source       TEXT NOT NULL DEFAULT 'periodic', -- periodic, remediation, rage
    checked_at   TIMESTAMP NOT NULL
);
CREATE INDEX health_checks_devserver ON health_checks (devserver_id, id);

-- remediations: one episode of an unhealthy devserver, through its steps
-- (restart, recreate, escalate). One open episode per devserver.
CREATE TABLE remediations (
    id           INTEGER PRIMARY KEY,
    devserver_id INTEGER NOT NULL REFERENCES devservers (id),
    cause        TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT '',
    step         TEXT NOT NULL CHECK (step IN ('restart', 'recreate', 'escalate')),
    state        TEXT NOT NULL CHECK (state IN ('open', 'resolved', 'escalated')),
    migration_id INTEGER,
    opened_at    TIMESTAMP NOT NULL,
    closed_at    TIMESTAMP
);
CREATE UNIQUE INDEX remediations_one_open ON remediations (devserver_id) WHERE state = 'open';
CREATE INDEX remediations_cause ON remediations (cause, opened_at);

-- remediation_attempts: each action of an episode, once (the unique index
-- makes a retried job find the attempt it began).
CREATE TABLE remediation_attempts (
    id             INTEGER PRIMARY KEY,
    remediation_id INTEGER NOT NULL REFERENCES remediations (id) ON DELETE CASCADE,
    action         TEXT NOT NULL CHECK (action IN ('restart', 'recreate', 'escalate')),
    outcome        TEXT NOT NULL CHECK (outcome IN ('running', 'fixed', 'not_fixed', 'failed', 'done')),
    detail         TEXT NOT NULL DEFAULT '',
    started_at     TIMESTAMP NOT NULL,
    finished_at    TIMESTAMP,
    UNIQUE (remediation_id, action)
);

-- diagnostic_bundles: what a "rage" collected about a devserver, as JSON,
-- for the platform team's support queue.
CREATE TABLE diagnostic_bundles (
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
CREATE INDEX diagnostic_bundles_devserver ON diagnostic_bundles (devserver_id, id);

-- +goose Down
DROP TABLE diagnostic_bundles;
DROP TABLE remediation_attempts;
DROP TABLE remediations;
DROP TABLE health_checks;
DROP TABLE devserver_health;
DROP TABLE host_moves;
