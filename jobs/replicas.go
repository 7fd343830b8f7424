package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/devport/devport/store"
)

// NewReplicaID names a process among the replicas sharing a database:
// <hostname>-<pid>-<4 random hex>. It is River's client ID, so a job's
// attempted_by says which replica ran it.
func NewReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "devport"
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// lockReplica is the first key of a replica's advisory lock (the two-int4
// form: hashtext(replica ID) is the second), "devr". The store's locks use
// the one-bigint form, so they cannot collide.
const lockReplica int32 = 0x64657672

// liveness is a replica's proof of life on PostgreSQL and its janitor. The
// replica holds a session advisory lock keyed by its ID on a dedicated
// connection for as long as it runs; PostgreSQL frees the lock the moment
// the process dies (even by SIGKILL: the socket closes). Every few seconds
// each replica looks at the running jobs: one whose last attempt belongs to
// another replica whose lock is free was left by a replica that stopped,
// and goes back to available at once (River's rescuer would wait for the
// longest job timeout). Every job re-reads its state and does its effect
// once, so running one again is safe.
type liveness struct {
	id     string
	pool   *pgxpool.Pool
	conn   *pgxpool.Conn
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// startLiveness takes the replica's lock and starts the janitor.
func startLiveness(ctx context.Context, s *store.Store, id string, every time.Duration, log *slog.Logger) (*liveness, error) {
	ctx = context.WithoutCancel(ctx)
	conn, err := lockReplicaID(ctx, s.Pool(), id)
	if err != nil {
		return nil, err
	}
	jctx, cancel := context.WithCancel(ctx)
	l := &liveness{id: id, pool: s.Pool(), conn: conn, log: log, cancel: cancel, done: make(chan struct{})}
	// A running job whose last attempt bears this very ID was left by an
	// earlier process that had it (a restarted container keeps its
	// hostname and, as PID 1, its PID: only the random part tells them
	// apart). No other process holds the ID (the lock says so) and this
	// one runs no job yet: nobody else would ever requeue it.
	if n, err := l.requeue(ctx, id); err != nil {
		l.log.Warn("Could not requeue the jobs an earlier process with this replica's ID left running", "replica", id, "err", err)
	} else if n > 0 {
		l.log.Info("Requeued the jobs an earlier process with this replica's ID left running", "jobs", n, "replica", id)
	}
	// A first sweep at once: the jobs of a replica that died before this
	// one started need not wait.
	l.sweep(jctx)
	go l.run(jctx, every)
	return l, nil
}

func (l *liveness) run(ctx context.Context, every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.sweep(ctx)
		}
	}
}

// lockReplicaID takes replica id's lock on a connection of its own.
func lockReplicaID(ctx context.Context, pool *pgxpool.Pool, id string) (*pgxpool.Conn, error) {
	conn, err := pool.Acquire(ctx)
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
	return conn, nil
}

// sweep requeues the running jobs of replicas that stopped.
func (l *liveness) sweep(ctx context.Context) {
	if l.conn == nil || l.conn.Conn().IsClosed() {
		// The connection broke and the lock went with it: the other
		// replicas may already have taken this one's running jobs (they
		// re-read their state, so running them twice is safe). Take the
		// lock again.
		if l.conn != nil {
			l.conn.Release()
			l.conn = nil
		}
		conn, err := lockReplicaID(ctx, l.pool, l.id)
		if err != nil {
			if ctx.Err() == nil {
				l.log.Error("Lost this replica's lock and cannot take it again", "replica", l.id, "err", err)
			}
			return
		}
		l.conn = conn
		l.log.Warn("Lost this replica's lock with its connection; took it again", "replica", l.id)
	}
	rows, err := l.conn.Query(ctx, `SELECT DISTINCT attempted_by[array_upper(attempted_by, 1)] FROM river_job
		WHERE state = 'running' AND array_upper(attempted_by, 1) IS NOT NULL`)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("Could not look for jobs of stopped replicas", "err", err)
		}
		return
	}
	var owners []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err == nil && o != l.id {
			owners = append(owners, o)
		}
	}
	rows.Close()
	for _, o := range owners {
		n, err := l.requeueIfStopped(ctx, o)
		if err != nil {
			if ctx.Err() == nil {
				l.log.Warn("Could not requeue jobs of a stopped replica", "replica", o, "err", err)
			}
			continue
		}
		if n > 0 {
			l.log.Info("Requeued the jobs of a stopped replica", "jobs", n, "replica", o)
		}
	}
}

// requeueIfStopped makes the running jobs of replica o available again when
// o holds no lock (it stopped), and says how many there were.
func (l *liveness) requeueIfStopped(ctx context.Context, o string) (int64, error) {
	var free bool
	if err := l.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockReplica, o).Scan(&free); err != nil {
		return 0, err
	}
	if !free {
		return 0, nil // alive
	}
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockReplica, o); err != nil {
		return 0, err
	}
	return l.requeue(ctx, o)
}

// requeue makes the running jobs whose last attempt is replica o's
// available again.
func (l *liveness) requeue(ctx context.Context, o string) (int64, error) {
	tag, err := l.conn.Exec(ctx, `UPDATE river_job SET state = 'available', scheduled_at = now()
		WHERE state = 'running' AND attempted_by[array_upper(attempted_by, 1)] = $1`, o)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// stop ends the janitor and gives the replica's lock up.
func (l *liveness) stop() {
	l.once.Do(func() {
		l.cancel()
		<-l.done
		if l.conn == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var ok bool
		err := l.conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockReplica, l.id).Scan(&ok)
		if err != nil || !ok {
			// A lock we cannot release dies with its connection.
			_ = l.conn.Conn().Close(ctx)
			if err == nil {
				err = errors.New("not held")
			}
			l.log.Warn("Replica lock: closed its connection", "err", err)
		}
		l.conn.Release()
	})
}
