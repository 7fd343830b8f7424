package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestCheckHostOperation(t *testing.T) {
	cases := []struct {
		state, op, code string
	}{
		{"ready", store.HostOpMaintenance, ""},
		{"ready", store.HostOpDecommission, ""},
		{"maintenance", store.HostOpDecommission, ""},
		{"maintenance", store.HostOpMaintenance, "already_in_maintenance"},
		{"decommissioning", store.HostOpMaintenance, "already_decommissioning"},
		{"decommissioning", store.HostOpDecommission, "already_decommissioning"},
		{"retired", store.HostOpMaintenance, "host_retired"},
		{"retired", store.HostOpDecommission, "host_retired"},
		{"unreachable", store.HostOpMaintenance, "invalid_host_state"},
		{"unreachable", store.HostOpDecommission, "invalid_host_state"},
	}
	for _, c := range cases {
		err := store.CheckHostOperation(store.Host{Name: "h1", State: c.state}, c.op)
		var ce *store.ConflictError
		switch {
		case c.code == "" && err != nil:
			t.Errorf("%s of a %s host: %v", c.op, c.state, err)
		case c.code != "" && (!errors.As(err, &ce) || ce.Code != c.code):
			t.Errorf("%s of a %s host: %v, want %s", c.op, c.state, err, c.code)
		}
	}
}

func TestLiveMoveCapacity(t *testing.T) {
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	ctx := context.Background()
	u := storetest.User(t, s, "ann@example.com")
	var d store.Devserver
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: u, Flavor: "vm.small", Region: "tst"}); err != nil {
			return err
		}
		_, err = tx.MarkReady(ctx, d.ID, "sim-1", "2001:db8::1")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	d, _ = s.DevserverByID(ctx, d.ID)
	used := func(name string) int {
		h, _ := s.HostByName(ctx, name)
		return h.UsedCPUs
	}

	t.Run("a move off a host in maintenance takes room in the nearest active region and gives the source's back once", func(t *testing.T) {
		var m store.HostMove
		err := s.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.SetHostState(ctx, store.System, "tst-hv01", []string{"ready"}, "maintenance"); err != nil {
				return err
			}
			var err error
			m, err = tx.StartLiveMove(ctx, store.System, d, nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if m.ToHost != "alt-hv01" || used("alt-hv01") != 2 || used("tst-hv01") != 2 {
			t.Fatalf("to %s; used alt %d, tst %d", m.ToHost, used("alt-hv01"), used("tst-hv01"))
		}
		for range 2 { // a second finish changes nothing
			if err := s.InTx(ctx, func(tx *store.Tx) error { return tx.FinishLiveMove(ctx, m, "") }); err != nil {
				t.Fatal(err)
			}
		}
		now, _ := s.DevserverByID(ctx, d.ID)
		if now.Host != "alt-hv01" || now.Region != "alt" || now.State != store.StateReady || now.Hostname != d.Name+".alt.devport.internal" {
			t.Errorf("devserver on %s in %s (%s) as %s", now.Host, now.Region, now.State, now.Hostname)
		}
		if used("tst-hv01") != 0 || used("alt-hv01") != 2 {
			t.Errorf("used tst %d, alt %d", used("tst-hv01"), used("alt-hv01"))
		}
		d = now
	})

	t.Run("a failed move gives the target's room back and leaves the devserver where it was", func(t *testing.T) {
		var m store.HostMove
		err := s.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.SetHostState(ctx, store.System, "tst-hv01", []string{"maintenance"}, "ready"); err != nil {
				return err
			}
			var err error
			m, err = tx.StartLiveMove(ctx, store.System, d, nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.InTx(ctx, func(tx *store.Tx) error { return tx.FailLiveMove(ctx, m, errors.New("boom")) }); err != nil {
			t.Fatal(err)
		}
		now, _ := s.DevserverByID(ctx, d.ID)
		if now.Host != "alt-hv01" || now.State != store.StateReady || used("tst-hv01") != 0 || used("alt-hv01") != 2 {
			t.Errorf("devserver on %s (%s); used tst %d, alt %d", now.Host, now.State, used("tst-hv01"), used("alt-hv01"))
		}
	})

	t.Run("a host that runs a devserver is not retired", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.SetHostState(ctx, store.System, "alt-hv01", []string{"ready"}, "decommissioning"); err != nil {
				return err
			}
			_, err := tx.RetireHost(ctx, store.System, "alt-hv01")
			return err
		})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "host_not_empty" {
			t.Errorf("retire a busy host: %v", err)
		}
		if h, _ := s.HostByName(ctx, "alt-hv01"); h.State != "ready" {
			t.Errorf("host is %s after a refused retirement", h.State)
		}
	})

	t.Run("one health episode at a time per devserver", func(t *testing.T) {
		bad := store.HealthResult{DevserverID: d.ID, Cause: store.CauseInstanceStopped, Detail: "instance is stopped", At: time.Now()}
		var opened []store.Remediation
		for range 3 {
			err := s.InTx(ctx, func(tx *store.Tx) error {
				rs, err := tx.RecordHealth(ctx, []store.HealthResult{bad}, "periodic")
				opened = append(opened, rs...)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		h, err := s.LatestHealth(ctx, d.ID)
		if len(opened) != 1 || err != nil || h.Failures != 3 || h.OK {
			t.Errorf("opened %d episodes; latest %+v, %v", len(opened), h, err)
		}
		hist, _ := s.HealthHistory(ctx, d.ID, 10)
		if len(hist) != 3 {
			t.Errorf("%d failures in the history", len(hist))
		}
	})
}

func TestNoRemediationOnAHostKnownDown(t *testing.T) {
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	ctx := context.Background()
	u := storetest.User(t, s, "ann@example.com")
	var d store.Devserver
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: u, Flavor: "vm.small", Region: "tst"}); err != nil {
			return err
		}
		if _, err = tx.MarkReady(ctx, d.ID, "sim-1", "2001:db8::1"); err != nil {
			return err
		}
		_, err = tx.SetHostState(ctx, store.System, "tst-hv01", []string{"ready"}, "unreachable")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var opened []store.Remediation
	err = s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		opened, err = tx.RecordHealth(ctx, []store.HealthResult{{DevserverID: d.ID, Cause: store.CauseHostUnreachable, Detail: "host unreachable", At: time.Now()}}, "periodic")
		return err
	})
	if err != nil || len(opened) != 0 {
		t.Errorf("opened %d episodes on a host known down: %v", len(opened), err)
	}
	if h, err := s.LatestHealth(ctx, d.ID); err != nil || h.OK || h.Cause != store.CauseHostUnreachable {
		t.Errorf("the check is not recorded: %+v %v", h, err)
	}
}
