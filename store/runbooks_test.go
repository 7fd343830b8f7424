package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestRunbookStore(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	who := store.Actor{Name: "admin@example.com"}
	add := func(version int) error {
		return s.InTx(ctx, func(tx *store.Tx) error {
			return tx.AddRunbookVersion(ctx, who, store.RunbookVersion{Name: "drill", Version: version, YAML: "name: drill", Description: "v"})
		})
	}
	t.Run("versions only grow", func(t *testing.T) {
		if err := add(1); err != nil {
			t.Fatal(err)
		}
		if err := add(3); err != nil {
			t.Fatal(err)
		}
		var ce *store.ConflictError
		if err := add(2); !errors.As(err, &ce) || ce.Code != "version_not_newer" {
			t.Errorf("an older version: %v", err)
		}
		vs, err := s.RunbookVersions(ctx, "drill")
		if err != nil || len(vs) != 2 || vs[0].Version != 3 || vs[1].Version != 1 || vs[0].CreatedBy != who.Name {
			t.Fatalf("versions %+v %v", vs, err)
		}
		if v, err := s.RunbookVersion(ctx, "drill", 0); err != nil || v.Version != 3 {
			t.Errorf("newest %+v %v", v, err)
		}
		if _, err := s.RunbookVersion(ctx, "drill", 2); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a missing version: %v", err)
		}
		rs, err := s.Runbooks(ctx)
		if err != nil || len(rs) != 1 || rs[0].Latest != 3 || rs[0].Versions != 2 {
			t.Errorf("summary %+v %v", rs, err)
		}
	})

	var run store.Run
	t.Run("a run's steps start ready when they need nothing, and count off what they need", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			run, err = tx.CreateRun(ctx, who, store.Run{Runbook: "drill", Version: 3, ParamsJSON: `{"region":"prn","n":2}`}, []store.RunStep{
				{Name: "a", Kind: "operation", NeedsJSON: `[]`},
				{Name: "b", Kind: "manual", NeedsJSON: `["a"]`, NeedsLeft: 1},
				{Name: "join", Kind: "barrier", NeedsJSON: `["a","b"]`, NeedsLeft: 2},
			})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if p := run.Params(); p["region"] != "prn" || p["n"] != int64(2) {
			t.Errorf("params %v", p)
		}
		steps, _ := s.RunSteps(ctx, run.ID)
		if steps[0].State != store.StepReady || steps[1].State != store.StepPending || steps[2].NeedsLeft != 2 {
			t.Fatalf("steps %+v", steps)
		}
		err = s.InTx(ctx, func(tx *store.Tx) error {
			if ok, err := tx.SetStepState(ctx, run.ID, "a", []string{store.StepReady}, store.StepRunning, "", ""); err != nil || !ok {
				t.Fatalf("start a: %v %v", ok, err)
			}
			if ok, _ := tx.SetStepState(ctx, run.ID, "a", []string{store.StepReady}, store.StepRunning, "", ""); ok {
				t.Error("started twice")
			}
			if _, err := tx.SetStepState(ctx, run.ID, "a", []string{store.StepRunning}, store.StepSucceeded, "", ""); err != nil {
				return err
			}
			return tx.StepDone(ctx, run.ID, []string{"b", "join"})
		})
		if err != nil {
			t.Fatal(err)
		}
		steps, _ = s.RunSteps(ctx, run.ID)
		if steps[0].StartedAt == nil || steps[0].FinishedAt == nil || steps[1].State != store.StepReady || steps[2].State != store.StepPending || steps[2].NeedsLeft != 1 {
			t.Errorf("steps after a: %+v", steps)
		}
	})
	t.Run("an effect is recorded once", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.RecordStepEffect(ctx, run.ID, "a", "backup:x", "1"); err != nil {
				return err
			}
			if err := tx.RecordStepEffect(ctx, run.ID, "a", "backup:x", "2"); err == nil {
				t.Error("recorded twice")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		_ = s.InTx(ctx, func(tx *store.Tx) error {
			v, ok, err := tx.StepEffect(ctx, run.ID, "a", "backup:x")
			if err != nil || !ok || v != "1" {
				t.Errorf("effect %q %v %v", v, ok, err)
			}
			return nil
		})
	})
	t.Run("the timeline is append-only", func(t *testing.T) {
		if _, err := s.DB().Exec(s.DB().Rebind(`UPDATE runbook_run_events SET message = 'rewritten' WHERE run_id = ?`), run.ID); err == nil {
			t.Error("an event was rewritten")
		}
		if _, err := s.DB().Exec(s.DB().Rebind(`DELETE FROM runbook_run_events WHERE run_id = ?`), run.ID); err == nil {
			t.Error("an event was deleted")
		}
		es, err := s.RunEvents(ctx, run.ID)
		if err != nil || len(es) != 1 || es[0].Kind != store.EventRunStarted {
			t.Errorf("events %+v %v", es, err)
		}
	})
	t.Run("a run finishes once", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			if ok, err := tx.FinishRun(ctx, who, run.ID, store.RunCancelled, "stop"); err != nil || !ok {
				t.Fatalf("finish: %v %v", ok, err)
			}
			if ok, _ := tx.FinishRun(ctx, who, run.ID, store.RunSucceeded, ""); ok {
				t.Error("finished twice")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := s.Run(ctx, run.ID); r.State != store.RunCancelled || r.FinishedAt == nil || r.Error != "stop" {
			t.Errorf("run %+v", r)
		}
	})
}
