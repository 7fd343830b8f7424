package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

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
	s      *store.Store
	lock   *store.ReplicaLock
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// startLiveness takes the replica's lock and starts the janitor.
func startLiveness(ctx context.Context, s *store.Store, id string, every time.Duration, log *slog.Logger) (*liveness, error) {
	ctx = context.WithoutCancel(ctx)
	lock, err := s.LockReplica(ctx, id)
	if err != nil {
		return nil, err
	}
	jctx, cancel := context.WithCancel(ctx)
	l := &liveness{id: id, s: s, lock: lock, log: log, cancel: cancel, done: make(chan struct{})}
	// A running job whose last attempt bears this very ID was left by an
	// earlier process that had it (a restarted container keeps its
	// hostname and, as PID 1, its PID: only the random part tells them
	// apart). No other process holds the ID (the lock says so) and this
	// one runs no job yet: nobody else would ever requeue it.
	if n, err := lock.Requeue(ctx, id); err != nil {
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

// sweep requeues the running jobs of replicas that stopped.
func (l *liveness) sweep(ctx context.Context) {
	if l.lock == nil || l.lock.Lost() {
		// The connection broke and the lock went with it: the other
		// replicas may already have taken this one's running jobs (they
		// re-read their state, so running them twice is safe). Take the
		// lock again.
		if l.lock != nil {
			_ = l.lock.Release(ctx)
			l.lock = nil
		}
		lock, err := l.s.LockReplica(ctx, l.id)
		if err != nil {
			if ctx.Err() == nil {
				l.log.Error("Lost this replica's lock and cannot take it again", "replica", l.id, "err", err)
			}
			return
		}
		l.lock = lock
		l.log.Warn("Lost this replica's lock with its connection; took it again", "replica", l.id)
	}
	owners, err := l.lock.OtherReplicasRunningJobs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("Could not look for jobs of stopped replicas", "err", err)
		}
		return
	}
	for _, o := range owners {
		n, err := l.lock.RequeueIfStopped(ctx, o)
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

// stop ends the janitor and gives the replica's lock up.
func (l *liveness) stop() {
	l.once.Do(func() {
		l.cancel()
		<-l.done
		if l.lock == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.lock.Release(ctx); err != nil {
			// A lock we cannot release dies with its connection.
			l.log.Warn("Replica lock: closed its connection", "err", err)
		}
	})
}
