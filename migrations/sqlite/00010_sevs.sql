-- +goose Up
-- The SEV review workspace: incidents and exercises, their timelines,
-- reports, review meetings and follow-ups.

-- A SEV's number (SEV-N) is its id.
CREATE TABLE sevs (
    id                INTEGER PRIMARY KEY,
    title             TEXT NOT NULL,
    severity          INTEGER NOT NULL CHECK (severity BETWEEN 0 AND 4),
    kind              TEXT NOT NULL CHECK (kind IN ('incident', 'exercise')),
    state             TEXT NOT NULL CHECK (state IN ('open', 'mitigated', 'closed', 'in_review', 'reviewed')),
    services          TEXT NOT NULL DEFAULT '', -- comma-separated service names
    -- When the impact began is kept apart from when it was reported.
    impact_started_at TIMESTAMP,
    detected_at       TIMESTAMP,
    reported_at       TIMESTAMP NOT NULL,
    mitigated_at      TIMESTAMP,
    closed_at         TIMESTAMP,
    reviewed_at       TIMESTAMP,
    commander_id      INTEGER REFERENCES users (id),
    run_id            INTEGER, -- the runbook run that opened it, if one did
    created_by        TEXT NOT NULL,
    created_at        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL
);
CREATE INDEX sevs_state ON sevs (state, closed_at);
CREATE INDEX sevs_reported ON sevs (reported_at);

CREATE TABLE sev_regions (
    sev_id INTEGER NOT NULL REFERENCES sevs (id) ON DELETE CASCADE,
    region TEXT NOT NULL REFERENCES regions (code),
    PRIMARY KEY (sev_id, region)
);

CREATE TABLE sev_subscribers (
    sev_id  INTEGER NOT NULL REFERENCES sevs (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (sev_id, user_id)
);
CREATE INDEX sev_subscribers_user ON sev_subscribers (user_id);

-- The timeline: manual entries with their own time, and automatic entries
-- from the portal's own events; append-only.
CREATE TABLE sev_timeline (
    id         INTEGER PRIMARY KEY,
    sev_id     INTEGER NOT NULL REFERENCES sevs (id) ON DELETE CASCADE,
    at         TIMESTAMP NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('note', 'event', 'state', 'severity', 'broadcast')),
    text       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    source     TEXT NOT NULL DEFAULT '', -- e.g. "run 12 step drain" for automatic entries
    -- Automatic entries carry a key so a retried job adds each once.
    event_key  TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX sev_timeline_sev ON sev_timeline (sev_id, at);
CREATE UNIQUE INDEX sev_timeline_event_key ON sev_timeline (sev_id, event_key) WHERE event_key IS NOT NULL;
-- +goose StatementBegin
CREATE TRIGGER sev_timeline_no_update BEFORE UPDATE ON sev_timeline
BEGIN
    SELECT RAISE(ABORT, 'the SEV timeline is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER sev_timeline_no_delete BEFORE DELETE ON sev_timeline
WHEN (SELECT COUNT(*) FROM sevs WHERE id = OLD.sev_id) > 0
BEGIN
    SELECT RAISE(ABORT, 'the SEV timeline is append-only');
END;
-- +goose StatementEnd

-- The report, one template, each section Markdown.
CREATE TABLE sev_reports (
    sev_id     INTEGER PRIMARY KEY REFERENCES sevs (id) ON DELETE CASCADE,
    summary    TEXT NOT NULL DEFAULT '',
    impact     TEXT NOT NULL DEFAULT '',
    detection  TEXT NOT NULL DEFAULT '',
    root_cause TEXT NOT NULL DEFAULT '',
    mitigation TEXT NOT NULL DEFAULT '',
    went_well  TEXT NOT NULL DEFAULT '',
    went_wrong TEXT NOT NULL DEFAULT '',
    lessons    TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    updated_by TEXT NOT NULL DEFAULT ''
);

-- The review meeting of a SEV; sign-off moves the SEV to reviewed.
CREATE TABLE sev_reviews (
    sev_id         INTEGER PRIMARY KEY REFERENCES sevs (id) ON DELETE CASCADE,
    meeting_at     TIMESTAMP NOT NULL,
    facilitator_id INTEGER NOT NULL REFERENCES users (id),
    attendees      TEXT NOT NULL DEFAULT '', -- comma-separated emails
    notes          TEXT NOT NULL DEFAULT '',
    checklist      TEXT NOT NULL DEFAULT '{}', -- JSON {"criterion": true|false}
    signed_off_at  TIMESTAMP,
    signed_off_by  TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL
);

CREATE TABLE followups (
    id         INTEGER PRIMARY KEY,
    sev_id     INTEGER NOT NULL REFERENCES sevs (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('critical', 'medium', 'exploratory')),
    title      TEXT NOT NULL,
    owner_id   INTEGER NOT NULL REFERENCES users (id),
    due_at     TIMESTAMP NOT NULL,
    status     TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'in_progress', 'done', 'wont_do')),
    reason     TEXT NOT NULL DEFAULT '', -- why "won't do"
    run_id     INTEGER, -- the runbook run step that failed, where there is one
    run_step   TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    done_at    TIMESTAMP,
    CHECK ((status = 'wont_do') = (reason != ''))
);
CREATE INDEX followups_sev ON followups (sev_id);
CREATE INDEX followups_owner ON followups (owner_id, status);
CREATE INDEX followups_due ON followups (status, due_at);

-- +goose Down
DROP TABLE followups;
DROP TABLE sev_reviews;
DROP TABLE sev_reports;
DROP TRIGGER sev_timeline_no_delete;
DROP TRIGGER sev_timeline_no_update;
DROP TABLE sev_timeline;
DROP TABLE sev_subscribers;
DROP TABLE sev_regions;
DROP TABLE sevs;
