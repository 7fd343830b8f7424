package handlers_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

func TestIdempotencyKey(t *testing.T) {
	srv := handlertest.New(t, handlertest.Options{NoJobs: true})
	tok := srv.Token(t, "ida@example.com")
	reserve := func(key, body string) (*http.Response, string) {
		return srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: body,
			Headers: map[string]string{"Idempotency-Key": key}})
	}
	mine := func() int {
		u, _ := srv.Store.UserByEmail(context.Background(), "ida@example.com")
		ds, err := srv.Store.Devservers(context.Background(), store.DevserverFilter{OwnerID: u.ID, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return len(ds)
	}

	t.Run("a repeat returns the first answer and reserves nothing more", func(t *testing.T) {
		r1, b1 := reserve("k-1", `{"flavor":"vm.small"}`)
		r2, b2 := reserve("k-1", `{"flavor":"vm.small"}`)
		if r1.StatusCode != 202 || r2.StatusCode != 202 || b1 != b2 {
			t.Fatalf("first %d, repeat %d; bodies equal: %v", r1.StatusCode, r2.StatusCode, b1 == b2)
		}
		if r2.Header.Get("Idempotent-Replayed") != "true" || r1.Header.Get("Idempotent-Replayed") != "" {
			t.Error("the replay is not marked as one")
		}
		if n := mine(); n != 1 {
			t.Errorf("%d devservers, want 1", n)
		}
	})
	t.Run("a refused request is replayed as refused", func(t *testing.T) {
		r1, b1 := reserve("k-2", `{"flavor":"vm.huge"}`)
		r2, b2 := reserve("k-2", `{"flavor":"vm.huge"}`)
		if r1.StatusCode != 422 || r2.StatusCode != 422 || b1 != b2 {
			t.Errorf("%d then %d", r1.StatusCode, r2.StatusCode)
		}
	})
	t.Run("a key reused for another request is refused", func(t *testing.T) {
		resp, body := reserve("k-1", `{"flavor":"vm.medium"}`)
		if resp.StatusCode != 422 || !strings.Contains(body, "idempotency_key_reused") {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		if n := mine(); n != 1 {
			t.Errorf("%d devservers, want 1", n)
		}
	})
	t.Run("a malformed key is refused", func(t *testing.T) {
		resp, body := reserve(strings.Repeat("k", 300), `{"flavor":"vm.small"}`)
		if resp.StatusCode != 400 || !strings.Contains(body, "invalid_idempotency_key") {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("keys belong to one user", func(t *testing.T) {
		other := srv.Token(t, "ole@example.com")
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: other, Body: `{"flavor":"vm.small"}`,
			Headers: map[string]string{"Idempotency-Key": "k-1"}})
		if resp.StatusCode != 202 || resp.Header.Get("Idempotent-Replayed") != "" || !strings.Contains(body, `"owner": "ole@example.com"`) {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("concurrent repeats reserve once", func(t *testing.T) {
		before := mine()
		var wg sync.WaitGroup
		codes := make([]int, 10)
		for i := range codes {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				req, _ := http.NewRequest("POST", srv.URL+"/api/v1/devservers", strings.NewReader(`{"flavor":"vm.small"}`))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", "k-concurrent")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				codes[i] = resp.StatusCode
			}(i)
		}
		wg.Wait()
		for _, c := range codes {
			if c != 202 && c != 409 {
				t.Errorf("status %d among %v", c, codes)
			}
		}
		if n := mine(); n != before+1 {
			t.Errorf("%d new devservers, want 1 (statuses %v)", n-before, codes)
		}
	})
}
