package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/store"
)

// LeaseCheckArgs is the periodic look at short leases: it reminds owners in
// their inbox before a lease ends, and at the end takes a final backup and
// releases the devserver. Permanent leases never end.
type LeaseCheckArgs struct{}

// Kind names the job.
func (LeaseCheckArgs) Kind() string { return "check_leases" }

// InsertOpts retries a failed check a little; the next tick runs anyway.
func (LeaseCheckArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

// DefaultLeaseReminders are how long before a lease ends its owner is reminded.
var DefaultLeaseReminders = []time.Duration{72 * time.Hour, 24 * time.Hour}

const leaseCheckEvery = 5 * time.Minute

type leaseWorker struct {
	river.WorkerDefaults[LeaseCheckArgs]
	s *store.Store
	r *Runner
	// reminders, shortest first.
	reminders []time.Duration
	log       *slog.Logger
}

func newLeaseWorker(s *store.Store, log *slog.Logger, reminders []time.Duration) *leaseWorker {
	rs := slices.Clone(reminders)
	if len(rs) == 0 {
		rs = slices.Clone(DefaultLeaseReminders)
	}
	slices.Sort(rs)
	return &leaseWorker{s: s, reminders: rs, log: log}
}

func (w *leaseWorker) Timeout(*river.Job[LeaseCheckArgs]) time.Duration { return scheduleTimeout }

func (w *leaseWorker) Work(ctx context.Context, _ *river.Job[LeaseCheckArgs]) error {
	now := w.s.Now()
	ds, err := w.s.LeasesEndingBy(ctx, now.Add(w.reminders[len(w.reminders)-1]), 0)
	if err != nil {
		return err
	}
	reminded, expired := 0, 0
	for _, d := range ds {
		if d.Lease.EndsAt == nil {
			continue
		}
		if !d.Lease.EndsAt.After(now) {
			ok, err := w.expire(ctx, d, now)
			if err != nil {
				return err
			}
			if ok {
				expired++
			}
			continue
		}
		sent, err := w.remind(ctx, d, d.Lease.EndsAt.Sub(now))
		if err != nil {
			return err
		}
		if sent {
			reminded++
		}
	}
	if reminded+expired > 0 {
		w.log.Info("Checked leases", "reminded", reminded, "expired", expired)
	}
	return nil
}

// remind sends the reminder of the nearest offset the lease is within, once:
// the key names the lease, its end and the offset, so a rerun sends nothing
// and an extended lease is reminded again before its new end.
func (w *leaseWorker) remind(ctx context.Context, d store.Devserver, left time.Duration) (bool, error) {
	i := slices.IndexFunc(w.reminders, func(o time.Duration) bool { return left <= o })
	if i < 0 {
		return false, nil
	}
	o := w.reminders[i]
	end := d.Lease.EndsAt.UTC()
	var sent bool
	err := w.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		sent, err = tx.Notify(ctx, store.Notification{
			UserID: d.OwnerID, Kind: "lease_reminder", Link: "/devservers/" + d.Name,
			IdempotencyKey: fmt.Sprintf("lease:%d:%s:%d", d.Lease.ID, offsetLabel(o), end.Unix()),
			Title:          fmt.Sprintf("The lease of %s ends within %s", d.Name, offsetWords(o)),
			Body: fmt.Sprintf("The lease of %s ends at %s. Extend it to keep the devserver; otherwise devport takes a final backup and releases it.",
				d.Name, end.Format("2006-01-02 15:04 UTC")),
		})
		return err
	})
	return sent, err
}

// expire takes a final backup and releases a devserver whose lease ended,
// through the ordinary release path, and tells its owner.
func (w *leaseWorker) expire(ctx context.Context, d store.Devserver, now time.Time) (bool, error) {
	var released bool
	err := w.s.InTx(ctx, func(tx *store.Tx) error {
		fresh, err := tx.DevserverByID(ctx, d.ID)
		if err != nil {
			return err
		}
		// Extended or released meanwhile; a devserver busy migrating is
		// released at a later tick.
		if fresh.Lease.ID != d.Lease.ID || fresh.Lease.EndsAt == nil || fresh.Lease.EndsAt.After(now) || !fresh.Releasable() {
			return nil
		}
		if err := tx.Audit(ctx, store.System, "devserver.lease_expired", "devserver", fresh.Name,
			map[string]any{"ended": fresh.Lease.EndsAt.UTC().Format(time.RFC3339)}); err != nil {
			return err
		}
		_, needsFleet, err := tx.StartRelease(ctx, store.System, fresh)
		if err != nil {
			return err
		}
		if needsFleet {
			if err := w.r.Enqueue(ctx, tx, ReleaseArgs{DevserverID: fresh.ID, BackupKind: store.BackupFinal}); err != nil {
				return err
			}
		}
		released = true
		_, err = tx.Notify(ctx, store.Notification{
			UserID: fresh.OwnerID, Kind: "lease_expired", Link: "/devservers/" + fresh.Name,
			IdempotencyKey: "lease:" + strconv.FormatInt(fresh.Lease.ID, 10) + ":expired",
			Title:          fmt.Sprintf("The lease of %s ended; it is being released", fresh.Name),
			Body:           fmt.Sprintf("devport takes a final backup of %s before releasing it. Its backups stay listed on its page and can be restored onto another of your devservers.", fresh.Name),
		})
		return err
	})
	var ce *store.ConflictError
	if errors.As(err, &ce) {
		return false, nil // changed state meanwhile
	}
	return released, err
}

// offsetLabel names an offset in an idempotency key, such as "72h".
func offsetLabel(o time.Duration) string {
	if o%time.Hour == 0 {
		return strconv.FormatInt(int64(o/time.Hour), 10) + "h"
	}
	return o.String()
}

// offsetWords says an offset for people, such as "3 days" or "12 hours".
func offsetWords(o time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return strconv.FormatInt(n, 10) + " " + unit + "s"
	}
	switch {
	case o%(24*time.Hour) == 0:
		return plural(int64(o/(24*time.Hour)), "day")
	case o%time.Hour == 0:
		return plural(int64(o/time.Hour), "hour")
	case o%time.Minute == 0:
		return plural(int64(o/time.Minute), "minute")
	}
	return o.String()
}
