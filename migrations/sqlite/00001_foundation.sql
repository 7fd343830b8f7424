-- +goose Up
-- Times are written by the application as UTC timestamps; no SQL default
-- calls a clock, so the SQL stays portable and tests can fix the time.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    home_region   TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMP NOT NULL,
    last_login_at TIMESTAMP
);

CREATE TABLE user_roles (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT NOT NULL CHECK (role IN ('engineer', 'admin', 'reviewer')),
    PRIMARY KEY (user_id, role)
);

-- Server-side sessions. The cookie carries the session ID; only its SHA-256
-- is stored, so a copy of the database does not hand out live sessions.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      INTEGER REFERENCES users (id) ON DELETE CASCADE,
    data         TEXT NOT NULL DEFAULT '{}',
    created_at   TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    remote_addr  TEXT NOT NULL DEFAULT '',
    user_agent   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Personal access tokens, hashed at rest.
CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    scope        TEXT NOT NULL DEFAULT 'full' CHECK (scope IN ('full', 'read')),
    created_at   TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP,
    last_used_at TIMESTAMP,
    revoked_at   TIMESTAMP
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE ssh_keys (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    UNIQUE (user_id, fingerprint)
);

CREATE TABLE regions (
    code       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'drained', 'down')),
    position   INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);

-- Capacity is held by the database: used_* only change through conditional
-- updates, and the CHECKs make over-allocation impossible whatever the caller.
CREATE TABLE hosts (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    region      TEXT NOT NULL REFERENCES regions (code),
    kind        TEXT NOT NULL CHECK (kind IN ('hypervisor', 'physical', 'container')),
    driver      TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'maintenance', 'decommissioning', 'retired', 'unreachable')),
    cpus        INTEGER NOT NULL CHECK (cpus >= 0),
    memory_gb   INTEGER NOT NULL CHECK (memory_gb >= 0),
    disk_gb     INTEGER NOT NULL CHECK (disk_gb >= 0),
    gpus        INTEGER NOT NULL DEFAULT 0 CHECK (gpus >= 0),
    tags        TEXT NOT NULL DEFAULT '',
    used_cpus   INTEGER NOT NULL DEFAULT 0,
    used_memory_gb INTEGER NOT NULL DEFAULT 0,
    used_disk_gb   INTEGER NOT NULL DEFAULT 0,
    used_gpus   INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMP NOT NULL,
    CHECK (used_cpus BETWEEN 0 AND cpus),
    CHECK (used_memory_gb BETWEEN 0 AND memory_gb),
    CHECK (used_disk_gb BETWEEN 0 AND disk_gb),
    CHECK (used_gpus BETWEEN 0 AND gpus)
);
CREATE INDEX hosts_region_kind ON hosts (region, kind, state);

CREATE TABLE flavors (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('vm', 'physical', 'container')),
    description TEXT NOT NULL DEFAULT '',
    cpus        INTEGER NOT NULL CHECK (cpus > 0),
    memory_gb   INTEGER NOT NULL CHECK (memory_gb > 0),
    disk_gb     INTEGER NOT NULL CHECK (disk_gb > 0),
    gpus        INTEGER NOT NULL DEFAULT 0 CHECK (gpus >= 0),
    accelerator TEXT NOT NULL DEFAULT '',
    position    INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE features (
    name        TEXT PRIMARY KEY,
    version     TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE devservers (
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
CREATE INDEX devservers_owner ON devservers (owner_id, state);
CREATE INDEX devservers_region ON devservers (region, state);
CREATE INDEX devservers_host ON devservers (host_id, state);

-- A lease is who holds a devserver and until when. At most one is open per
-- devserver, held by the partial unique index.
CREATE TABLE leases (
    id           INTEGER PRIMARY KEY,
    devserver_id INTEGER NOT NULL REFERENCES devservers (id),
    user_id      INTEGER NOT NULL REFERENCES users (id),
    kind         TEXT NOT NULL CHECK (kind IN ('short', 'permanent')),
    starts_at    TIMESTAMP NOT NULL,
    ends_at      TIMESTAMP,
    ended_at     TIMESTAMP,
    CHECK ((kind = 'short') = (ends_at IS NOT NULL))
);
CREATE UNIQUE INDEX leases_one_open ON leases (devserver_id) WHERE ended_at IS NULL;
CREATE INDEX leases_user ON leases (user_id);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    at          TIMESTAMP NOT NULL,
    actor_id    INTEGER REFERENCES users (id),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}',
    remote_addr TEXT NOT NULL DEFAULT '',
    request_id  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_object ON audit_events (object_type, object_id);
CREATE INDEX audit_at ON audit_events (at);

-- The simulated fleet keeps its instances here, so a restart or a retried
-- job sees what the fleet already did.
CREATE TABLE sim_instances (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    host            TEXT NOT NULL,
    name            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('created', 'running', 'stopped', 'destroyed')),
    address         TEXT NOT NULL,
    cpus            INTEGER NOT NULL,
    memory_gb       INTEGER NOT NULL,
    home            TEXT NOT NULL DEFAULT '{}',
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL
);
CREATE INDEX sim_instances_host ON sim_instances (host, state);

-- +goose Down
DROP TABLE sim_instances;
DROP TABLE audit_events;
DROP TABLE leases;
DROP TABLE devservers;
DROP TABLE features;
DROP TABLE flavors;
DROP TABLE hosts;
DROP TABLE regions;
DROP TABLE ssh_keys;
DROP TABLE tokens;
DROP TABLE sessions;
DROP TABLE user_roles;
DROP TABLE users;
