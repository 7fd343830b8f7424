package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCLIFollowGivesUpOnADeadPortal: a followed operation whose portal
// stops answering ends the command with a clear error instead of waiting
// forever, and a short outage (a restart) is ridden out.
func TestCLIFollowGivesUpOnADeadPortal(t *testing.T) {
	poll, outage := followPoll, followOutage
	followPoll, followOutage = 10*time.Millisecond, 200*time.Millisecond
	defer func() { followPoll, followOutage = poll, outage }()
	var stderr bytes.Buffer
	c := &cli{env: cliEnv{Stderr: &stderr, Now: time.Now}}
	dead := &unreachableError{Portal: "http://portal.test", Err: errors.New("connection refused")}

	t.Run("a portal that never answers again", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		calls := 0
		_, err := c.follow(ctx, "reserve ada-1", func(context.Context) (progressState, error) {
			calls++
			if calls == 1 {
				return progressState{State: "provisioning", Progress: 40}, nil
			}
			return progressState{}, dead
		})
		if ctx.Err() != nil {
			t.Fatal("follow was still waiting on a dead portal after 10 s")
		}
		if err == nil || !strings.Contains(err.Error(), "did not answer") || !strings.Contains(err.Error(), "reserve ada-1") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a portal that comes back in time", func(t *testing.T) {
		calls := 0
		st, err := c.follow(context.Background(), "reserve ada-2", func(context.Context) (progressState, error) {
			calls++
			switch {
			case calls < 5:
				return progressState{}, dead // 40 ms, well within the outage allowed
			case calls < 8:
				return progressState{State: "provisioning", Progress: 50}, nil
			}
			return progressState{State: "ready", Progress: 100, Done: true}, nil
		})
		if err != nil || !st.Done {
			t.Errorf("follow through a short outage: %+v %v", st, err)
		}
	})
}
