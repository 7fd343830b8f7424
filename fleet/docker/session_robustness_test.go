package docker_test

import (
	"io"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
)

// TestSessionCloseUnblocksReaders: without a terminal, stdout and stderr
// are fed by one copier; when nobody reads stderr the copier used to stay
// blocked on it for ever, so stdout never ended and Close freed neither the
// copier nor a reader waiting on stdout.
func TestSessionCloseUnblocksReaders(t *testing.T) {
	d, _, _ := newDriver(t)
	in := running(t, d, "session:close")
	ctx := ctxT(t, 2*time.Minute)
	s, err := d.OpenSession(ctx, in.ID, fleet.SessionSpec{Cmd: []string{"sh", "-c", "echo to stderr >&2; echo to stdout; sleep 1234"}})
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(s.Stdout()) // stderr is never read
		read <- err
	}()
	time.Sleep(time.Second) // the command has written both lines by now
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("a reader of stdout is still blocked after Close")
	}
	if _, err := s.Wait(ctxT(t, 10*time.Second)); err != nil {
		t.Errorf("Wait after Close: %v", err)
	}
}
