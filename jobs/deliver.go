package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/devport/devport/store"
)

// DeliverArgs is the periodic sending of due email and chat deliveries.
type DeliverArgs struct{}

// Kind names the job.
func (DeliverArgs) Kind() string { return "deliver_notifications" }

// InsertOpts: a failed run is not retried; the next tick, seconds later, is the retry.
//
// One deliver run at a time: a slow or hung mail server holds one worker,
// never all of them (the periodic insert is skipped while one waits or runs).
func (DeliverArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 1, UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning, rivertype.JobStateScheduled, rivertype.JobStateRetryable,
	}}}
}

// DefaultDeliverEvery is how often due deliveries are sent.
const DefaultDeliverEvery = 3 * time.Second

const (
	deliverTimeout = 2 * time.Minute
	// sendTimeout bounds one send; the claim outlasts it, so a slow send is
	// never taken over by another sender while it still runs.
	sendTimeout = 30 * time.Second
	claimFor    = sendTimeout + 30*time.Second
)

type deliverWorker struct {
	river.WorkerDefaults[DeliverArgs]
	s       *store.Store
	senders Senders
	log     *slog.Logger
}

func (w *deliverWorker) Timeout(*river.Job[DeliverArgs]) time.Duration { return deliverTimeout }

func (w *deliverWorker) Work(ctx context.Context, _ *river.Job[DeliverArgs]) error {
	_, err := Deliver(ctx, w.s, w.senders, w.log)
	return err
}

// DeliverResult counts what one run did.
type DeliverResult struct {
	Sent, Retrying, Failed, Skipped int
}

// Deliver sends every due delivery once. Each is claimed in the database
// first (a conditional update), so two runs at once never send one twice; a
// failed attempt waits its backoff, and after store.DeliveryMaxAttempts the
// delivery fails for good and shows as failed in the delivery log.
func Deliver(ctx context.Context, s *store.Store, senders Senders, log *slog.Logger) (DeliverResult, error) {
	var res DeliverResult
	due, err := s.DueDeliveries(ctx, s.Now(), 200)
	if err != nil {
		return res, err
	}
	for _, candidate := range due {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		var d store.Delivery
		var claimed bool
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			d, claimed, err = tx.ClaimDelivery(ctx, candidate.ID, tx.Now().Add(claimFor))
			return err
		})
		if err != nil {
			return res, err
		}
		if !claimed {
			res.Skipped++ // another run has it, or it was sent meanwhile
			continue
		}
		sendErr := send(ctx, senders, d)
		// The outcome is recorded even when the job's time is up: a message
		// the server took must not be sent again.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = s.InTx(rctx, func(tx *store.Tx) error {
			ctx := rctx
			if sendErr == nil {
				_, err := tx.DeliverySent(ctx, d)
				return err
			}
			after, err := tx.DeliveryAttemptFailed(ctx, d, sendErr)
			if err == nil && after.State == store.DeliveryFailed {
				res.Failed++
				log.Warn("Delivery failed for good", "delivery", d.ID, "channel", d.Channel, "attempts", d.Attempts, "error", sendErr)
			} else if err == nil {
				res.Retrying++
				log.Info("Delivery attempt failed", "delivery", d.ID, "channel", d.Channel, "attempts", d.Attempts, "error", sendErr)
			}
			return err
		})
		cancel()
		if err != nil {
			return res, fmt.Errorf("record delivery %d: %w", d.ID, err)
		}
		if sendErr == nil {
			res.Sent++
		}
	}
	if res.Sent+res.Failed > 0 {
		log.Info("Delivered notifications", "sent", res.Sent, "retrying", res.Retrying, "failed", res.Failed)
	}
	return res, nil
}

// errChannelOff is an attempt on a channel the portal no longer sends over.
var errChannelOff = errors.New("is not set up on this portal")

func send(ctx context.Context, senders Senders, d store.Delivery) error {
	var snd Sender
	switch d.Channel {
	case store.ChannelEmail:
		snd = senders.Email
	case store.ChannelChat:
		snd = senders.Chat
	}
	if snd == nil {
		return fmt.Errorf("%s %w", d.Channel, errChannelOff)
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return snd.Send(ctx, d)
}
