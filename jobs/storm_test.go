package jobs

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/jobs/runbook"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestStormRunbookPlans(t *testing.T) {
	s := storetest.Seeded(t, nil)
	ctx := context.Background()
	if err := LoadBuiltinRunbooks(ctx, s, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	var st store.Storm
	if err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		st, err = tx.BeginStorm(ctx, admin, store.StormInput{Region: "prn", Kind: store.DarkStormKind, Count: 3})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	p, err := PlanRunbook(ctx, s, DarkStormRunbook, 0, map[string]any{"region": "prn", "storm": st.ID})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(planLines(p), "\n")
	if !strings.Contains(text, "Wipe 3 random ready devservers of prn") {
		t.Errorf("plan:\n%s", text)
	}
	if _, err := PlanRunbook(ctx, s, StormRunbook, 0, map[string]any{"region": "nowhere", "storm": st.ID}); err == nil {
		t.Errorf("a storm plan of an unknown region")
	}
}

func TestSimRefusesHostsOfARegionThatIsDown(t *testing.T) {
	s := storetest.Seeded(t, nil)
	ctx := context.Background()
	hs, err := s.Hosts(ctx, "prn")
	if err != nil || len(hs) == 0 {
		t.Fatalf("hosts %v %v", hs, err)
	}
	d := sim.New(s, sim.Options{Seed: 1})
	in, err := d.Create(ctx, fleet.Spec{Key: "test:storm", Name: "x", Host: hs[0].Name, CPUs: 1, MemoryGB: 1})
	if err != nil {
		t.Fatal(err)
	}
	setStatus := func(from []string, to string) {
		if err := s.InTx(ctx, func(tx *store.Tx) error { return tx.SetRegionStatus(ctx, admin, "prn", from, to) }); err != nil {
			t.Fatal(err)
		}
	}
	setStatus([]string{"active"}, "down")
	// The host's own state is still ready: the region being down is enough.
	if _, err := d.Exec(ctx, in.ID, []string{"ls"}); !errors.Is(err, fleet.ErrUnreachable) {
		t.Errorf("exec in a region that is down: %v", err)
	}
	setStatus([]string{"down"}, "active")
	if _, err := d.Exec(ctx, in.ID, []string{"ls"}); err != nil {
		t.Errorf("exec after the region is back: %v", err)
	}
}

func planLines(p runbook.Plan) []string {
	var out []string
	for _, st := range p.Steps {
		out = append(out, st.Lines...)
		if st.Error != "" {
			out = append(out, "error: "+st.Error)
		}
	}
	return out
}
