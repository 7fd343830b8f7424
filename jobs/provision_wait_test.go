package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
)

// setHostState makes the devserver's host answer or not, as the sim sees it.
func (g *rig) setHostState(t *testing.T, d store.Devserver, state string) {
	t.Helper()
	err := g.s.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.ExecContext(context.Background(), tx.Rebind(`UPDATE hosts SET state = ? WHERE id = ?`), state, d.HostID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestProvisioningWaitsForAnUnreachableHost(t *testing.T) {
	// One attempt: any other fleet error would fail the devserver at once.
	g := newRig(t, 400*time.Millisecond, map[string]int{"provision_devserver": 1})
	d := g.reserve(t)
	g.setHostState(t, d, "unreachable") // while the sim is still creating
	host, err := g.s.Host(context.Background(), d.HostID)
	if err != nil {
		t.Fatal(err)
	}

	want := "Waiting for its host " + host.Name + ": "
	waitNote := func() store.Devserver {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, err := g.s.DevserverByID(context.Background(), d.ID)
			if err == nil && strings.HasPrefix(got.StatusNote, want) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("devserver is %s (%q), want a note starting %q", got.State, got.StatusNote, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	got := waitNote()
	if got.State != store.StateProvisioning || !strings.Contains(got.StatusNote, "unreachable") {
		t.Errorf("devserver %s, note %q", got.State, got.StatusNote)
	}
	// Several waits later it still waits, instead of failing after its one attempt.
	time.Sleep(5 * time.Second)
	if got := waitNote(); got.State != store.StateProvisioning {
		t.Fatalf("devserver %s after waiting for its host", got.State)
	}

	g.setHostState(t, d, "ready")
	ready := g.wait(t, d.ID, store.StateReady)
	if ready.InstanceID == "" {
		t.Error("ready without an instance")
	}
	if n := g.liveInstances(t); n != 1 {
		t.Errorf("%d instances on the host, want exactly 1", n)
	}
}
