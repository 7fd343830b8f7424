package jobs

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/devport/devport/store"
)

// A run that carries a "sev" parameter writes its start, each failed step and
// its end on the SEV's timeline once each, however often its jobs retry and
// even when a person retries the failed step and it fails again.
func TestRunbookRunWritesSevTimelineOnce(t *testing.T) {
	g := newRunbookRig(t)
	ctx := context.Background()
	var sev store.Sev
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		title, severity, kind := "exercise in tst", 4, store.SevExercise
		sev, err = tx.CreateSev(ctx, admin, store.SevInput{Title: &title, Severity: &severity, Kind: &kind})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	addRunbook(t, g.s, `
name: sev-drill
version: 1
params:
  sev: {type: int, default: 0, doc: the SEV}
steps:
  - name: tell
    op: notify
    params: {audience: host_devservers, host: missing-hv01, title: Drill}
    retry: {attempts: 3, backoff: 50ms}
  - {name: after, op: log, params: {message: done}}
`)
	run := startRun(t, g, "sev-drill", map[string]any{"sev": sev.ID})
	waitRun(t, g.s, run.ID, store.RunFailed)
	// A person retries; the step fails again and the run ends again.
	if err := RetryRunStep(ctx, g.s, g.runner, admin, run.ID, "tell"); err != nil {
		t.Fatal(err)
	}
	waitStep(t, g.s, run.ID, "tell", store.StepFailed)
	waitRun(t, g.s, run.ID, store.RunFailed)

	id := strconv.FormatInt(run.ID, 10)
	keys := map[string]int{}
	tl, err := g.s.SevTimeline(ctx, sev.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tl {
		if e.EventKey != nil && strings.HasPrefix(*e.EventKey, "run:") {
			keys[*e.EventKey]++
			if e.Kind != store.TimelineEvent || e.Source == "" || e.Actor != "system" {
				t.Errorf("entry %+v", e)
			}
		}
	}
	want := map[string]int{"run:" + id + ":started": 1, "run:" + id + ":step:tell:failed": 1, "run:" + id + ":finished": 1}
	if len(keys) != len(want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	for k, n := range want {
		if keys[k] != n {
			t.Errorf("%s written %d times, want %d (all: %v)", k, keys[k], n, keys)
		}
	}

	t.Run("a run without a SEV, or with one that does not exist, writes nothing and still runs", func(t *testing.T) {
		before, _ := g.s.SevTimeline(ctx, sev.ID)
		other := startRun(t, g, "sev-drill", map[string]any{"sev": 999999})
		waitRun(t, g.s, other.ID, store.RunFailed)
		after, _ := g.s.SevTimeline(ctx, sev.ID)
		if len(after) != len(before) {
			t.Errorf("timeline grew from %d to %d", len(before), len(after))
		}
	})
}
