package sim_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/store/storetest"
)

// TestClosedSessionRunsNothingMore: lines typed ahead of a slow command used
// to run after Close (the shell kept reading its buffered input), changing
// the home directory of a session that had already ended.
func TestClosedSessionRunsNothingMore(t *testing.T) {
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	fast := sim.New(s, sim.Options{})
	d := sim.New(s, sim.Options{Latency: 3 * time.Second}) // a command takes 300 ms
	ctx := context.Background()
	in, err := fast.Create(ctx, fleet.Spec{Key: "k", Name: "ada-1", Host: "tst-hv01"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fast.Start(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	sess, err := d.OpenSession(ctx, in.ID, fleet.SessionSpec{})
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, sess.Stdout())
	io.WriteString(sess.Stdin(), "write a 1\nwrite b 2\nwrite c 3\n")
	time.Sleep(40 * time.Millisecond) // the first command runs now
	if err := sess.Close(); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := sess.Wait(wctx); err == nil {
		t.Error("Wait after Close reports success")
	}
	time.Sleep(1500 * time.Millisecond) // what would still run has run by now
	for _, f := range []string{"b", "c"} {
		res, err := fast.Exec(ctx, in.ID, []string{"cat", f})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode == 0 {
			t.Errorf("%s was written after the session was closed", f)
		}
	}
}
