package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progressState is where a long operation stands, as its object tells it.
type progressState struct {
	State    string
	Progress int // 0-100
	Note     string
	Done     bool
	// Failed is a final state that is not success; Note says why.
	Failed bool
}

// followPoll is how often a followed operation is asked where it stands.
var followPoll = 500 * time.Millisecond

// followOutage is how long follow keeps asking a portal that does not
// answer (a restart) before it gives up: a dead portal must not hold the
// command forever.
var followOutage = 30 * time.Second

// follow asks fetch where an operation stands until it is done or failed,
// and shows it: a progress bar on a terminal, a line per change otherwise.
// An interrupted follow leaves the operation running on the portal.
func (c *cli) follow(ctx context.Context, what string, fetch func(context.Context) (progressState, error)) (progressState, error) {
	var bar *progressbar.ProgressBar
	if c.env.Interactive {
		bar = progressbar.NewOptions(100,
			progressbar.OptionSetWriter(c.env.Stderr),
			progressbar.OptionSetDescription(what),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionClearOnFinish(),
		)
		defer bar.Exit()
	}
	last := progressState{Progress: -1}
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	var silentSince time.Time // zero while the portal answers
	for {
		st, err := fetch(ctx)
		if err != nil {
			var ue *unreachableError
			if !errors.As(err, &ue) || ctx.Err() != nil {
				return st, err
			}
			if silentSince.IsZero() {
				silentSince = time.Now()
			} else if time.Since(silentSince) >= followOutage {
				if bar != nil {
					fmt.Fprintln(c.env.Stderr)
				}
				return last, fmt.Errorf("stopped following %s after the portal did not answer for %s; it may go on in the portal: %w",
					what, followOutage, err)
			}
			// The portal may be restarting: keep following, and say so.
			st = last
			st.Note = "the portal does not answer; still trying"
		} else {
			silentSince = time.Time{}
		}
		if st != last {
			desc := what + ": " + st.State
			if st.Note != "" {
				desc += " (" + st.Note + ")"
			}
			if bar != nil {
				bar.Describe(desc)
				_ = bar.Set(max(st.Progress, 0))
			} else {
				fmt.Fprintf(c.env.Stderr, "%s %d%%\n", desc, max(st.Progress, 0))
			}
			last = st
		}
		if st.Done || st.Failed {
			if bar != nil {
				if st.Done {
					_ = bar.Finish()
				}
				fmt.Fprintln(c.env.Stderr)
			}
			if st.Failed {
				msg := what + " ended " + st.State
				if st.Note != "" {
					msg += ": " + st.Note
				}
				return st, errors.New(msg)
			}
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("stopped following %s; it goes on in the portal: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}
