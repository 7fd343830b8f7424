-- +goose Up
-- Runbooks as code: versioned YAML definitions, their runs, the runs' steps
-- with the counters that say when a step may start, an append-only timeline,
-- and the effects a step has recorded (so a retried step does nothing twice).

-- One row per version of a definition; versions only grow.
CREATE TABLE runbook_versions (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    description TEXT NOT NULL DEFAULT '',
    yaml        TEXT NOT NULL,
    builtin     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMP NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE runbook_runs (
    id            INTEGER PRIMARY KEY,
    runbook       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    params        TEXT NOT NULL DEFAULT '{}', -- JSON, typed
    state         TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    concurrency   INTEGER NOT NULL DEFAULT 0, -- 0: no cap
    deadline_at   TIMESTAMP,
    parent_run_id INTEGER REFERENCES runbook_runs (id),
    parent_step   TEXT NOT NULL DEFAULT '',
    started_by    TEXT NOT NULL,
    error         TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP,
    FOREIGN KEY (runbook, version) REFERENCES runbook_versions (name, version)
);
CREATE INDEX runbook_runs_runbook ON runbook_runs (runbook, id);
CREATE INDEX runbook_runs_parent ON runbook_runs (parent_run_id);

-- A step of a run. needs_left counts the steps it still waits for; the
-- completion of a step decrements its dependents' counters in the same
-- transaction that completes its job and enqueues those that became ready.
CREATE TABLE runbook_run_steps (
    run_id       INTEGER NOT NULL REFERENCES runbook_runs (id),
    name         TEXT NOT NULL,
    position     INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('operation', 'manual', 'barrier', 'runbook')),
    needs        TEXT NOT NULL DEFAULT '[]', -- JSON list of step names
    needs_left   INTEGER NOT NULL CHECK (needs_left >= 0),
    state        TEXT NOT NULL CHECK (state IN ('pending', 'ready', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT NOT NULL DEFAULT '',
    child_run_id INTEGER REFERENCES runbook_runs (id),
    done_by      TEXT NOT NULL DEFAULT '',
    started_at   TIMESTAMP,
    finished_at  TIMESTAMP,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX runbook_run_steps_state ON runbook_run_steps (run_id, state, position);

-- The timeline: append-only.
CREATE TABLE runbook_run_events (
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL REFERENCES runbook_runs (id),
    step    TEXT NOT NULL DEFAULT '',
    kind    TEXT NOT NULL CHECK (kind IN ('run_started', 'run_finished', 'started', 'finished', 'failed', 'retried', 'cancelled', 'log', 'manual_done', 'waiting')),
    message TEXT NOT NULL DEFAULT '',
    actor   TEXT NOT NULL DEFAULT '',
    at      TIMESTAMP NOT NULL
);
CREATE INDEX runbook_run_events_run ON runbook_run_events (run_id, id);

-- +goose StatementBegin
CREATE TRIGGER runbook_run_events_no_update BEFORE UPDATE ON runbook_run_events
BEGIN SELECT RAISE(ABORT, 'runbook run events are append-only'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER runbook_run_events_no_delete BEFORE DELETE ON runbook_run_events
BEGIN SELECT RAISE(ABORT, 'runbook run events are append-only'); END;
-- +goose StatementEnd

-- What a step has done, keyed by run, step and what: a retried step that
-- finds its effect here does not do it again.
CREATE TABLE runbook_step_effects (
    run_id INTEGER NOT NULL REFERENCES runbook_runs (id),
    step   TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL DEFAULT '',
    at     TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, step, key)
);

-- +goose Down
DROP TABLE runbook_step_effects;
DROP TRIGGER runbook_run_events_no_delete;
DROP TRIGGER runbook_run_events_no_update;
DROP TABLE runbook_run_events;
DROP TABLE runbook_run_steps;
DROP TABLE runbook_runs;
DROP TABLE runbook_versions;
