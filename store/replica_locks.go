package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// lockReplica is the first key of a replica's advisory lock (the two-int4
// form: hashtext(replica ID) is the second), "devr". The store's other
// locks use the one-bigint form, so they cannot collide.
const lockReplica int32 = 0x64657672

// ReplicaLock is a replica's proof of life on PostgreSQL: a session
// advisory lock keyed by the replica's ID, held on a connection of its own
// for as long as the replica runs. PostgreSQL frees the lock the moment the
// process dies (even by SIGKILL: the socket closes), so another replica can
// tell that it stopped and requeue the jobs it left running.
type ReplicaLock struct {
	id   string
	conn *pgxpool.Conn
}

// LockReplica takes replica id's lock on a connection of its own. It is
// refused while another process holds it.
func (s *Store) LockReplica(ctx context.Context, id string) (*ReplicaLock, error) {
	if s.pool == nil {
		return nil, errors.New("replica lock: only on PostgreSQL")
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("replica lock: %w", err)
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockReplica, id).Scan(&got); err != nil {
		conn.Release()
		return nil, fmt.Errorf("replica lock: %w", err)
	}
	if !got {
		conn.Release()
		return nil, fmt.Errorf("replica lock: another process runs as replica %s", id)
	}
	return &ReplicaLock{id: id, conn: conn}, nil
}

// Lost tells whether the lock's connection broke; the lock went with it.
func (l *ReplicaLock) Lost() bool { return l.conn.Conn().IsClosed() }

// OtherReplicasRunningJobs lists the replicas, other than this one, whose
// attempt is the last of a running job.
func (l *ReplicaLock) OtherReplicasRunningJobs(ctx context.Context) ([]string, error) {
	rows, err := l.conn.Query(ctx, `SELECT DISTINCT attempted_by[array_upper(attempted_by, 1)] FROM river_job
		WHERE state = 'running' AND array_upper(attempted_by, 1) IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("replicas running jobs: %w", err)
	}
	defer rows.Close()
	var owners []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err == nil && o != l.id {
			owners = append(owners, o)
		}
	}
	return owners, nil
}

// RequeueIfStopped makes the running jobs of replica o available again when
// o holds no lock (it stopped), and says how many there were.
func (l *ReplicaLock) RequeueIfStopped(ctx context.Context, o string) (int64, error) {
	var free bool
	if err := l.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockReplica, o).Scan(&free); err != nil {
		return 0, fmt.Errorf("replica %s: %w", o, err)
	}
	if !free {
		return 0, nil // alive
	}
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockReplica, o); err != nil {
		return 0, fmt.Errorf("replica %s: %w", o, err)
	}
	return l.Requeue(ctx, o)
}

// Requeue makes the running jobs whose last attempt is replica o's
// available again, and says how many there were. The caller knows o runs
// nothing: it stopped, or o is this very lock's ID before its jobs start.
func (l *ReplicaLock) Requeue(ctx context.Context, o string) (int64, error) {
	tag, err := l.conn.Exec(ctx, `UPDATE river_job SET state = 'available', scheduled_at = now()
		WHERE state = 'running' AND attempted_by[array_upper(attempted_by, 1)] = $1`, o)
	if err != nil {
		return 0, fmt.Errorf("requeue the jobs of replica %s: %w", o, err)
	}
	return tag.RowsAffected(), nil
}

// Release gives the lock up and returns its connection to the pool. A lock
// that cannot be released dies with its connection, which is closed; the
// error says why. A lost lock only gives its connection back.
func (l *ReplicaLock) Release(ctx context.Context) error {
	defer l.conn.Release()
	if l.Lost() {
		return errors.New("lost with its connection")
	}
	var ok bool
	err := l.conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockReplica, l.id).Scan(&ok)
	if err == nil && ok {
		return nil
	}
	_ = l.conn.Conn().Close(ctx)
	if err == nil {
		err = errors.New("not held")
	}
	return err
}
