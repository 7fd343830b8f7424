package jobs_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func newKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
}

// authorizedKeys reads the file the job writes, as the devserver holds it.
func (g *rig) authorizedKeys(t *testing.T, d store.Devserver) string {
	t.Helper()
	res, err := g.sim.Exec(context.Background(), d.InstanceID, []string{"cat", jobs.AuthorizedKeysPath})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		return ""
	}
	return res.Output
}

func (g *rig) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *rig) syncKeys(t *testing.T, d store.Devserver, change func(tx *store.Tx) error) {
	t.Helper()
	ctx := context.Background()
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		if change != nil {
			if err := change(tx); err != nil {
				return err
			}
		}
		return g.runner.Enqueue(ctx, tx, jobs.SyncKeysArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (g *rig) keysSynced(t *testing.T, d store.Devserver) int {
	t.Helper()
	events, err := g.s.AuditEvents(context.Background(), "devserver", d.Name)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events {
		if e.Action == "devserver.keys_synced" {
			n++
		}
	}
	return n
}

func TestSyncKeys(t *testing.T) {
	ctx := context.Background()
	g := newRig(t, 0, nil)
	ownerKey := newKey(t)
	if err := g.s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.AddSSHKey(ctx, store.System, g.owner, "laptop", ownerKey)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	bob := storetest.User(t, g.s, "bob@example.com")
	bobKey := newKey(t)
	if err := g.s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.AddSSHKey(ctx, store.System, bob, "", bobKey)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	d := g.wait(t, g.reserve(t).ID, store.StateReady)

	t.Run("a devserver that becomes ready gets its owner's keys", func(t *testing.T) {
		g.eventually(t, "the owner's key on the devserver", func() bool {
			return strings.Contains(g.authorizedKeys(t, d), ownerKey+" alice@example.com\n")
		})
		if strings.Contains(g.authorizedKeys(t, d), bobKey) {
			t.Error("bob's key is there before the devserver is shared with him")
		}
	})

	t.Run("sharing puts the sharee's key on it", func(t *testing.T) {
		g.syncKeys(t, d, func(tx *store.Tx) error {
			_, err := tx.AddShare(ctx, store.UserActor(g.owner, "", ""), d, "bob@example.com")
			return err
		})
		g.eventually(t, "bob's key on the devserver", func() bool {
			return strings.Contains(g.authorizedKeys(t, d), bobKey+" bob@example.com\n")
		})
		want, _ := g.s.AuthorizedKeys(ctx, d.ID)
		if got := g.authorizedKeys(t, d); got != want {
			t.Errorf("authorized_keys =\n%s\nwant\n%s", got, want)
		}
	})

	t.Run("a job with nothing to change writes nothing", func(t *testing.T) {
		before := g.keysSynced(t, d)
		g.syncKeys(t, d, nil)
		g.syncKeys(t, d, nil)
		g.eventually(t, "the sync jobs to finish", func() bool { return g.jobsDone(t) })
		if after := g.keysSynced(t, d); after != before {
			t.Errorf("keys_synced events %d → %d for no change", before, after)
		}
	})

	t.Run("unsharing takes the key off", func(t *testing.T) {
		g.syncKeys(t, d, func(tx *store.Tx) error {
			_, err := tx.RemoveShare(ctx, store.UserActor(g.owner, "", ""), d, "bob@example.com")
			return err
		})
		g.eventually(t, "bob's key gone from the devserver", func() bool {
			keys := g.authorizedKeys(t, d)
			return !strings.Contains(keys, bobKey) && strings.Contains(keys, ownerKey)
		})
	})

	t.Run("does nothing for a released devserver", func(t *testing.T) {
		g.release(t, d)
		g.wait(t, d.ID, store.StateReleased)
		before := g.keysSynced(t, d)
		g.syncKeys(t, d, nil)
		g.eventually(t, "the sync job to finish", func() bool { return g.jobsDone(t) })
		if after := g.keysSynced(t, d); after != before {
			t.Errorf("keys_synced events %d → %d on a released devserver", before, after)
		}
	})
}

// jobsDone tells whether no sync job is waiting or running.
func (g *rig) jobsDone(t *testing.T) bool {
	t.Helper()
	var n int
	err := g.s.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.GetContext(context.Background(), &n, `SELECT COUNT(*) FROM river_job WHERE kind = 'sync_ssh_keys' AND state NOT IN ('completed', 'cancelled', 'discarded')`)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n == 0
}
