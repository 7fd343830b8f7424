-- +goose Up
-- portal_settings: values the replicas of one portal must agree on, recorded
-- by the first replica that starts. Today: the SHA-256 of the session
-- signing key and the SSH host key's fingerprint (never the secrets
-- themselves), so that a replica started with other secrets refuses to run
-- instead of signing everyone out or changing the SSH host key behind the
-- load balancer.
CREATE TABLE portal_settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE portal_settings;
