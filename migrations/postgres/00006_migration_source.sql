-- +goose Up
-- The source instance of a devserver migration, destroyed after the switch.
ALTER TABLE devserver_migrations ADD COLUMN from_instance_id TEXT NOT NULL DEFAULT '';
-- What an idempotent request carried, so a key reused for another request is refused.
ALTER TABLE idempotency_keys ADD COLUMN request_hash TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE idempotency_keys DROP COLUMN request_hash;
ALTER TABLE devserver_migrations DROP COLUMN from_instance_id;
