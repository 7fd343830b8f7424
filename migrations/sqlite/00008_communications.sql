-- +goose Up
-- Communications: which channels each person wants, one delivery per
-- notification and channel (the email and chat senders work through them),
-- tasks a notification asks of its person, and banners.

-- Channels a person wants besides the in-app inbox, which is always on.
-- No row means the inbox only.
CREATE TABLE notification_preferences (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email      INTEGER NOT NULL DEFAULT 0 CHECK (email IN (0, 1)),
    chat       INTEGER NOT NULL DEFAULT 0 CHECK (chat IN (0, 1)),
    updated_at TIMESTAMP NOT NULL
);

-- One row per (notification, channel). A sender claims a due row with a
-- conditional update of claimed_until, so two senders never send it twice.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel         TEXT NOT NULL CHECK (channel IN ('inbox', 'email', 'chat')),
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      TEXT NOT NULL DEFAULT '',
    next_attempt_at TIMESTAMP,
    claimed_until   TIMESTAMP,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    sent_at         TIMESTAMP,
    UNIQUE (notification_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_state ON deliveries (state, id);

-- Something a notification asks its person to do by a date.
CREATE TABLE tasks (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    notification_id INTEGER REFERENCES notifications (id) ON DELETE SET NULL,
    title           TEXT NOT NULL,
    link            TEXT NOT NULL DEFAULT '',
    due_at          TIMESTAMP NOT NULL,
    done_at         TIMESTAMP,
    created_at      TIMESTAMP NOT NULL
);
CREATE INDEX tasks_user ON tasks (user_id, done_at, due_at);
CREATE INDEX tasks_open_due ON tasks (due_at) WHERE done_at IS NULL;

-- A message shown on every page of the people it is for, between its start and end.
CREATE TABLE banners (
    id         INTEGER PRIMARY KEY,
    message    TEXT NOT NULL,
    severity   TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    region     TEXT REFERENCES regions (code),
    starts_at  TIMESTAMP NOT NULL,
    ends_at    TIMESTAMP,
    audience   TEXT NOT NULL CHECK (audience IN ('all', 'affected')),
    sev_id     INTEGER,
    created_by TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CHECK (ends_at IS NULL OR ends_at > starts_at),
    CHECK (audience = 'all' OR region IS NOT NULL)
);
CREATE INDEX banners_window ON banners (starts_at, ends_at);

-- +goose Down
DROP TABLE banners;
DROP TABLE tasks;
DROP TABLE deliveries;
DROP TABLE notification_preferences;
