-- +goose Up
-- On Demand containers: ephemeral environments of a type (a stack) and a
-- hardware profile, served from pre-warmed pools and destroyed at the end of
-- their lifetime.

-- Hardware profiles: what a container is given on its host.
CREATE TABLE container_profiles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    cpus        INTEGER NOT NULL CHECK (cpus > 0),
    memory_gb   INTEGER NOT NULL CHECK (memory_gb > 0),
    disk_gb     INTEGER NOT NULL CHECK (disk_gb > 0),
    gpus        INTEGER NOT NULL DEFAULT 0 CHECK (gpus >= 0),
    position    INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

-- Container types: a stack with its image per fleet driver, the tools and
-- repositories it comes with, and how long a container of it lives.
CREATE TABLE container_types (
    name           TEXT PRIMARY KEY,
    stack          TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    images         TEXT NOT NULL DEFAULT '{}', -- JSON {"driver": "image"}
    tools          TEXT NOT NULL DEFAULT '[]', -- JSON [{"name": ..., "version": ...}]
    repos          TEXT NOT NULL DEFAULT '[]', -- JSON [{"name": ..., "version": ...}]
    lifetime_hours INTEGER NOT NULL DEFAULT 36 CHECK (lifetime_hours BETWEEN 1 AND 720),
    sandbox_url    TEXT NOT NULL DEFAULT '', -- a template: {name}, {hostname}, {region}
    position       INTEGER NOT NULL DEFAULT 0,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    updated_by     TEXT NOT NULL DEFAULT ''
);

-- The profiles a type may run on, and the features that may be added to it.
CREATE TABLE container_type_profiles (
    type    TEXT NOT NULL REFERENCES container_types (name) ON DELETE CASCADE,
    profile TEXT NOT NULL REFERENCES container_profiles (name),
    PRIMARY KEY (type, profile)
);
CREATE TABLE container_type_features (
    type    TEXT NOT NULL REFERENCES container_types (name) ON DELETE CASCADE,
    feature TEXT NOT NULL REFERENCES features (name),
    PRIMARY KEY (type, feature)
);

-- Pre-warmed pools per region, type and profile. The refill keeps target
-- containers ready or building, never more than max_size in all (stale ones
-- awaiting their replacement included); recycling never leaves fewer than
-- min_ready ready.
CREATE TABLE container_pools (
    region     TEXT NOT NULL REFERENCES regions (code),
    type       TEXT NOT NULL REFERENCES container_types (name) ON DELETE CASCADE,
    profile    TEXT NOT NULL REFERENCES container_profiles (name),
    target     INTEGER NOT NULL,
    min_ready  INTEGER NOT NULL,
    max_size   INTEGER NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    updated_by TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (region, type, profile),
    CHECK (min_ready >= 0 AND min_ready <= target AND target <= max_size AND max_size <= 500)
);

CREATE TABLE containers (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,  -- the public ID, also the SSH gateway's user
    owner_id     INTEGER REFERENCES users (id),
    type         TEXT NOT NULL REFERENCES container_types (name),
    profile      TEXT NOT NULL REFERENCES container_profiles (name),
    region       TEXT NOT NULL REFERENCES regions (code),
    host_id      INTEGER NOT NULL REFERENCES hosts (id),
    hostname     TEXT NOT NULL,
    address      TEXT NOT NULL DEFAULT '',
    instance_id  TEXT NOT NULL DEFAULT '',
    image        TEXT NOT NULL DEFAULT '',
    -- What it took from its host, given back exactly when it ends.
    cpus         INTEGER NOT NULL,
    memory_gb    INTEGER NOT NULL,
    disk_gb      INTEGER NOT NULL,
    gpus         INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL CHECK (state IN ('provisioning', 'ready', 'ending', 'ended', 'failed')),
    progress     INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    status_note  TEXT NOT NULL DEFAULT '',
    -- Where the request asked for, and why another region served it.
    requested_region TEXT NOT NULL DEFAULT '',
    placement_note   TEXT NOT NULL DEFAULT '',
    -- Features and one-offs put on it for its owner.
    setup_state  TEXT NOT NULL DEFAULT 'none' CHECK (setup_state IN ('none', 'pending', 'done', 'failed')),
    setup_error  TEXT NOT NULL DEFAULT '',
    end_reason   TEXT NOT NULL DEFAULT '',
    ended_by     TEXT NOT NULL DEFAULT '',
    replaced_by  INTEGER REFERENCES containers (id),
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL,
    ready_at     TIMESTAMP,
    pooled_at    TIMESTAMP,
    assigned_at  TIMESTAMP,
    expires_at   TIMESTAMP,
    ended_at     TIMESTAMP,
    CHECK (owner_id IS NOT NULL OR pooled_at IS NOT NULL),
    CHECK ((owner_id IS NULL) = (expires_at IS NULL))
);
CREATE INDEX containers_owner ON containers (owner_id, state);
CREATE INDEX containers_pool ON containers (region, type, profile, state) WHERE owner_id IS NULL;
CREATE INDEX containers_expires ON containers (expires_at) WHERE expires_at IS NOT NULL AND state IN ('provisioning', 'ready');
CREATE INDEX containers_host ON containers (host_id, state);

CREATE TABLE container_features (
    container_id INTEGER NOT NULL REFERENCES containers (id),
    feature      TEXT NOT NULL REFERENCES features (name),
    version      TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'installed', 'failed')),
    error        TEXT NOT NULL DEFAULT '',
    updated_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (container_id, feature)
);

-- How many containers a role may hold at once.
ALTER TABLE quotas ADD COLUMN containers INTEGER NOT NULL DEFAULT 3 CHECK (containers >= 0);
UPDATE quotas SET containers = 10 WHERE role = 'admin';

-- +goose Down
ALTER TABLE quotas DROP COLUMN containers;
DROP TABLE container_features;
DROP TABLE containers;
DROP TABLE container_pools;
DROP TABLE container_type_features;
DROP TABLE container_type_profiles;
DROP TABLE container_types;
DROP TABLE container_profiles;
