package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// SimInstance is an environment of the simulated fleet. It lives in the
// database so that a restarted portal and a retried job see what the
// simulated fleet already did.
type SimInstance struct {
	ID             string    `db:"id"`
	IdempotencyKey string    `db:"idempotency_key"`
	Host           string    `db:"host"`
	Name           string    `db:"name"`
	State          string    `db:"state"`
	Address        string    `db:"address"`
	CPUs           int       `db:"cpus"`
	MemoryGB       int       `db:"memory_gb"`
	Home           string    `db:"home"` // JSON: path → content, the instance's persistent data
	CreatedAt      time.Time `db:"created_at"`
	UpdatedAt      time.Time `db:"updated_at"`
}

const simColumns = `id, idempotency_key, host, name, state, address, cpus, memory_gb, home, created_at, updated_at`

// SimInstanceByKey returns the instance made for an idempotency key.
func (s *Store) SimInstanceByKey(ctx context.Context, key string) (SimInstance, error) {
	var in SimInstance
	if err := getNamed(ctx, s.read, &in, `SELECT `+simColumns+` FROM sim_instances WHERE idempotency_key = :key`, arg{"key": key}); err != nil {
		return SimInstance{}, fmt.Errorf("sim instance %s: %w", key, err)
	}
	return in, nil
}

// SimInstance returns an instance by ID.
func (s *Store) SimInstance(ctx context.Context, id string) (SimInstance, error) {
	var in SimInstance
	if err := getNamed(ctx, s.read, &in, `SELECT `+simColumns+` FROM sim_instances WHERE id = :id`, arg{"id": id}); err != nil {
		return SimInstance{}, fmt.Errorf("sim instance %s: %w", id, err)
	}
	return in, nil
}

// CreateSimInstance records a new instance, or returns the one already made
// for the same idempotency key.
func (s *Store) CreateSimInstance(ctx context.Context, in SimInstance) (SimInstance, error) {
	var out SimInstance
	err := s.InTx(ctx, func(tx *Tx) error {
		in.CreatedAt, in.UpdatedAt = tx.Now(), tx.Now()
		if _, err := execNamed(ctx, tx, `
INSERT INTO sim_instances (`+simColumns+`)
VALUES (:id, :idempotency_key, :host, :name, :state, :address, :cpus, :memory_gb, :home, :created_at, :updated_at)
ON CONFLICT (idempotency_key) DO NOTHING`, in); err != nil {
			return err
		}
		return getNamed(ctx, tx, &out, `SELECT `+simColumns+` FROM sim_instances WHERE idempotency_key = :key`, arg{"key": in.IdempotencyKey})
	})
	if err != nil {
		return SimInstance{}, fmt.Errorf("create sim instance %s: %w", in.IdempotencyKey, err)
	}
	return out, nil
}

// UpdateSimInstance sets an instance's state and persistent data.
func (s *Store) UpdateSimInstance(ctx context.Context, id, state, home string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		n, err := execNamed(ctx, tx, `UPDATE sim_instances SET state = :state, home = :home, updated_at = :now WHERE id = :id`,
			arg{"id": id, "state": state, "home": home, "now": tx.Now()})
		if err != nil {
			return fmt.Errorf("update sim instance %s: %w", id, err)
		}
		if n == 0 {
			return fmt.Errorf("update sim instance %s: %w", id, ErrNotFound)
		}
		return nil
	})
}

// EditSimHome changes an instance's simulated home in one write
// transaction: read, edit, write back, so that two commands at once (a key
// sync and a restore, say) cannot undo each other. The state is left alone.
func (s *Store) EditSimHome(ctx context.Context, id string, edit func(home map[string]string)) error {
	return s.InTx(ctx, func(tx *Tx) error {
		var raw string
		if err := getNamed(ctx, tx, &raw, `SELECT home FROM sim_instances WHERE id = :id`, arg{"id": id}); err != nil {
			return fmt.Errorf("edit sim home %s: %w", id, err)
		}
		home := map[string]string{}
		_ = json.Unmarshal([]byte(raw), &home)
		edit(home)
		b, err := json.Marshal(home)
		if err != nil {
			return fmt.Errorf("edit sim home %s: %w", id, err)
		}
		_, err = execNamed(ctx, tx, `UPDATE sim_instances SET home = :home, updated_at = :now WHERE id = :id`,
			arg{"id": id, "home": string(b), "now": tx.Now()})
		return err
	})
}

// SimInstancesOn lists the live instances on a host.
func (s *Store) SimInstancesOn(ctx context.Context, host string) ([]SimInstance, error) {
	var ins []SimInstance
	err := selectNamed(ctx, s.read, &ins, `SELECT `+simColumns+` FROM sim_instances WHERE host = :host AND state <> 'destroyed' ORDER BY id`, arg{"host": host})
	if err != nil {
		return nil, fmt.Errorf("sim instances on %s: %w", host, err)
	}
	return ins, nil
}

// MoveSimInstance records that an instance now runs on another host.
func (s *Store) MoveSimInstance(ctx context.Context, id, host string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		n, err := execNamed(ctx, tx, `UPDATE sim_instances SET host = :host, updated_at = :now WHERE id = :id AND state <> 'destroyed'`,
			arg{"id": id, "host": host, "now": tx.Now()})
		if err != nil {
			return fmt.Errorf("move sim instance %s: %w", id, err)
		}
		if n == 0 {
			return fmt.Errorf("move sim instance %s: %w", id, ErrNotFound)
		}
		return nil
	})
}
