package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// simFile reads a file from a devserver's simulated home directory.
func simFile(t *testing.T, srv *handlertest.Server, name, path string) (string, bool) {
	t.Helper()
	d, err := srv.Store.Devserver(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.Sim.Exec(context.Background(), d.InstanceID, []string{"cat", path})
	if err != nil {
		t.Fatal(err)
	}
	return res.Output, res.ExitCode == 0
}

type featureJSON struct {
	Feature string `json:"feature"`
	Version string `json:"version"`
	State   string `json:"state"`
	Error   string `json:"error"`
}

func featureStates(t *testing.T, srv *handlertest.Server, token, name string) map[string]featureJSON {
	t.Helper()
	resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + name + "/features", Token: token})
	if resp.StatusCode != 200 {
		t.Fatalf("features: %d %s", resp.StatusCode, body)
	}
	out := map[string]featureJSON{}
	for _, f := range decode[struct{ Items []featureJSON }](t, body).Items {
		out[f.Feature] = f
	}
	return out
}

func waitFeature(t *testing.T, srv *handlertest.Server, token, name, feature, state string) featureJSON {
	t.Helper()
	var f featureJSON
	handlertest.Eventually(t, 20*time.Second, feature+" to be "+state, func() bool {
		var ok bool
		f, ok = featureStates(t, srv, token, name)[feature]
		return ok && f.State == state || state == "gone" && !ok
	})
	return f
}

func TestFeatures(t *testing.T) {
	srv := handlertest.New(t)
	tok := srv.Token(t, "fay@example.com")
	stranger := srv.Token(t, "sam@example.com")

	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: `{"flavor":"vm.small","features":["git","python"]}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve with features: %d %s", resp.StatusCode, body)
	}
	name := decode[devserverJSON](t, body).Name
	srv.WaitState(t, name, store.StateReady)

	t.Run("features named at reservation are installed once it is ready", func(t *testing.T) {
		git := waitFeature(t, srv, tok, name, "git", "installed")
		waitFeature(t, srv, tok, name, "python", "installed")
		if content, ok := simFile(t, srv, name, ".devport/features/git"); !ok || content != "git "+git.Version+"\n" {
			t.Errorf("the devserver's git marker = %q (%v)", content, ok)
		}
	})

	t.Run("a feature is added and removed later, one job each", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/features", Token: tok, Body: `{"feature":"rust"}`})
		if resp.StatusCode != http.StatusAccepted || decode[featureJSON](t, body).State != "pending" {
			t.Fatalf("add: %d %s", resp.StatusCode, body)
		}
		waitFeature(t, srv, tok, name, "rust", "installed")
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/devservers/" + name + "/features/python", Token: tok})
		if resp.StatusCode != http.StatusAccepted || decode[featureJSON](t, body).State != "removing" {
			t.Fatalf("remove: %d %s", resp.StatusCode, body)
		}
		waitFeature(t, srv, tok, name, "python", "gone")
		if _, ok := simFile(t, srv, name, ".devport/features/python"); ok {
			t.Error("python is still on the devserver")
		}
	})

	t.Run("a failed install shows its error", func(t *testing.T) {
		srv2 := handlertest.New(t, handlertest.Options{MaxAttempts: map[string]int{"devserver_feature": 1}})
		tok2 := srv2.Token(t, "fay@example.com")
		_, body := srv2.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok2, Body: `{"flavor":"vm.small"}`})
		n := decode[devserverJSON](t, body).Name
		srv2.WaitState(t, n, store.StateReady)
		// The host stops answering: every call to it fails, whatever else runs.
		d, _ := srv2.Store.Devserver(context.Background(), n)
		err := srv2.Store.InTx(context.Background(), func(tx *store.Tx) error {
			_, err := tx.ExecContext(context.Background(), `UPDATE hosts SET state = 'unreachable' WHERE id = ?`, d.HostID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		srv2.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + n + "/features", Token: tok2, Body: `{"feature":"docker"}`})
		f := waitFeature(t, srv2, tok2, n, "docker", "failed")
		if !strings.Contains(f.Error, "unreachable") {
			t.Errorf("error = %q", f.Error)
		}
		_, page := srv2.Do(t, srv2.SignIn(t, "fay@example.com"), handlertest.Request{Path: "/devservers/" + n})
		if !strings.Contains(handlertest.Doc(t, page).Find(`tr[data-feature=docker]`).Text(), "unreachable") {
			t.Error("the page does not show the failed install's error")
		}
	})

	t.Run("the page lists features and installs one from a form", func(t *testing.T) {
		c := srv.SignIn(t, "fay@example.com")
		resp, _ := srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/devservers/" + name + "/features", Form: url.Values{"feature": {"node"}}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("form: %d", resp.StatusCode)
		}
		waitFeature(t, srv, tok, name, "node", "installed")
		_, page := srv.Do(t, c, handlertest.Request{Path: "/devservers/" + name})
		doc := handlertest.Doc(t, page)
		if doc.Find(`#devserver-features tr[data-feature=node][data-state=installed]`).Length() != 1 {
			t.Error("the page does not list node as installed")
		}
		if doc.Find(`#add-feature option[value=node]`).Length() != 0 || doc.Find(`#add-feature option[value=go]`).Length() != 1 {
			t.Error("the add list should offer what is not installed, and only that")
		}
	})

	before := counts(t, srv.Store)
	bad := []struct {
		name   string
		req    handlertest.Request
		status int
		code   string
	}{
		{"an unknown feature at reservation", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: `{"flavor":"vm.small","features":["cobol"]}`}, 422, "invalid"},
		{"a feature named twice", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: `{"flavor":"vm.small","features":["git","git"]}`}, 422, "invalid"},
		{"an unknown feature added later", handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/features", Token: tok, Body: `{"feature":"cobol"}`}, 422, "invalid"},
		{"removing a feature that is not there", handlertest.Request{Method: "DELETE", Path: "/api/v1/devservers/" + name + "/features/cuda", Token: tok}, 404, "not_found"},
		{"a stranger adding a feature", handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/features", Token: stranger, Body: `{"feature":"go"}`}, 404, "not_found"},
		{"a stranger listing features", handlertest.Request{Path: "/api/v1/devservers/" + name + "/features", Token: stranger}, 404, "not_found"},
	}
	for _, c := range bad {
		t.Run("refuses "+c.name, func(t *testing.T) {
			resp, body := srv.Do(t, nil, c.req)
			if resp.StatusCode != c.status || decode[apiError](t, body).Error.Code != c.code {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, body, c.status, c.code)
			}
			if after := counts(t, srv.Store); after != before {
				t.Errorf("changed: %s -> %s", before, after)
			}
		})
	}
}

func TestOneoffs(t *testing.T) {
	srv := handlertest.New(t)
	tok := srv.Token(t, "olga@example.com")
	put := func(body string) (*http.Response, string) {
		return srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/me/oneoffs", Token: tok, Body: body})
	}
	resp, body := put(`{"dotfiles":[{"path":"~/.bashrc","content":"alias ll='ls -l'\n"},{"path":".config/git/config","content":"[user]\n"}],"setup_script":"echo hi","env":{"EDITOR":"vim","GREETING":"it's me"}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("save: %d %s", resp.StatusCode, body)
	}
	var saved store.Oneoffs
	_ = json.Unmarshal([]byte(body), &saved)
	if len(saved.Dotfiles) != 2 || saved.Dotfiles[0].Path != ".bashrc" {
		t.Errorf("saved = %+v", saved)
	}

	_, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: `{"flavor":"vm.small"}`})
	name := decode[devserverJSON](t, body).Name
	srv.WaitState(t, name, store.StateReady)

	t.Run("a new devserver gets the one-offs", func(t *testing.T) {
		handlertest.Eventually(t, 20*time.Second, "one-offs applied", func() bool {
			d, _ := srv.Store.Devserver(context.Background(), name)
			return d.OneoffsState == "applied"
		})
		if got, _ := simFile(t, srv, name, ".bashrc"); got != "alias ll='ls -l'\n" {
			t.Errorf(".bashrc = %q", got)
		}
		env, _ := simFile(t, srv, name, ".devport/env.sh")
		if !strings.Contains(env, "export EDITOR='vim'\n") || !strings.Contains(env, `export GREETING='it'\''s me'`) {
			t.Errorf("env.sh = %q", env)
		}
		if got, _ := simFile(t, srv, name, ".devport/setup.sh"); got != "echo hi" {
			t.Errorf("setup.sh = %q", got)
		}
	})

	t.Run("changed one-offs are applied again on request", func(t *testing.T) {
		put(`{"dotfiles":[{"path":".bashrc","content":"export PS1='$ '\n"}]}`)
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/oneoffs", Token: tok})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("re-apply: %d %s", resp.StatusCode, body)
		}
		handlertest.Eventually(t, 20*time.Second, "new .bashrc", func() bool {
			got, _ := simFile(t, srv, name, ".bashrc")
			return got == "export PS1='$ '\n"
		})
	})

	t.Run("the editor page saves and shows problems by field", func(t *testing.T) {
		c := srv.SignIn(t, "olga@example.com")
		resp, body := srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/profile/oneoffs", Form: url.Values{
			"dotfile_path": {"../etc/passwd", ""}, "dotfile_content": {"x", ""}, "env": {"GOOD=1\nnot a line"},
		}})
		doc := handlertest.Doc(t, body)
		if resp.StatusCode != 422 || doc.Find(`#error-dotfiles\[0\]\.path`).Length() != 1 || doc.Find(`#error-env`).Length() != 1 {
			t.Errorf("bad form: %d %.500s", resp.StatusCode, body)
		}
		resp, _ = srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/profile/oneoffs", Form: url.Values{
			"dotfile_path": {".vimrc", ""}, "dotfile_content": {"set nu", ""}, "env": {"# mine\nA=1"},
		}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("good form: %d", resp.StatusCode)
		}
		_, body = srv.Do(t, c, handlertest.Request{Path: "/profile/oneoffs"})
		doc = handlertest.Doc(t, body)
		if v, _ := doc.Find("#dotfile-path-0").Attr("value"); v != ".vimrc" || doc.Find("#dotfile-path-1").Length() != 1 || !strings.Contains(doc.Find("#env").Text(), "A=1") {
			t.Errorf("the editor does not show what was saved: %.800s", body)
		}
		_, body = srv.Do(t, c, handlertest.Request{Path: "/profile"})
		section := handlertest.Doc(t, body).Find("#profile-oneoffs")
		if !strings.Contains(section.Text(), "1 dotfiles, 1 environment variables") || section.Find(`a[href="/profile/oneoffs"]`).Length() != 1 {
			t.Errorf("the profile's one-offs section: %q", section.Text())
		}
	})

	before, _ := srv.Store.Oneoffs(context.Background(), mustUserID(t, srv, "olga@example.com"))
	for _, c := range []struct{ name, body, field string }{
		{"an absolute path", `{"dotfiles":[{"path":"/etc/passwd","content":"x"}]}`, "dotfiles[0].path"},
		{"a path out of home", `{"dotfiles":[{"path":"a/../../x","content":"x"}]}`, "dotfiles[0].path"},
		{"a path twice", `{"dotfiles":[{"path":"a","content":"x"},{"path":"./a","content":"y"}]}`, "dotfiles[1].path"},
		{"a bad variable name", `{"env":{"1BAD":"x"}}`, "env"},
		{"an oversized dotfile", `{"dotfiles":[{"path":"big","content":"` + strings.Repeat("x", 70<<10) + `"}]}`, "dotfiles[0].content"},
	} {
		t.Run("refuses "+c.name, func(t *testing.T) {
			resp, body := put(c.body)
			if resp.StatusCode != 422 || decode[apiError](t, body).Error.Fields[c.field] == "" {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
			after, _ := srv.Store.Oneoffs(context.Background(), mustUserID(t, srv, "olga@example.com"))
			if len(after.Dotfiles) != len(before.Dotfiles) || after.Dotfiles[0].Path != before.Dotfiles[0].Path {
				t.Error("a refused save changed the one-offs")
			}
		})
	}
	t.Run("refuses to apply one-offs to someone else's devserver", func(t *testing.T) {
		other := srv.Token(t, "oscar@example.com")
		resp, _ := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/oneoffs", Token: other})
		if resp.StatusCode != 404 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func TestRollingUpdate(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.Token(t, "root@example.com", store.RoleAdmin)
	tok := srv.Token(t, "rita@example.com")
	var names []string
	for i := 0; i < 5; i++ {
		_, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: `{"flavor":"vm.small","features":["git"]}`})
		names = append(names, decode[devserverJSON](t, body).Name)
	}
	for _, n := range names {
		srv.WaitState(t, n, store.StateReady)
		waitFeature(t, srv, tok, n, "git", "installed")
	}
	// One devserver is migrating: the rollout must pass it by until it is ready again.
	migrating := names[0]
	setState := func(state string) {
		err := srv.Store.InTx(context.Background(), func(tx *store.Tx) error {
			_, err := tx.ExecContext(context.Background(), `UPDATE devservers SET state = ? WHERE name = ?`, state, migrating)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setState(store.StateMigrating)

	resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/features/git", Token: admin, Body: `{"version":"2.48.0","batch_size":2}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("bump: %d %s", resp.StatusCode, body)
	}
	for _, n := range names[1:] {
		f := waitFeature(t, srv, tok, n, "git", "installed")
		handlertest.Eventually(t, 20*time.Second, n+" at 2.48.0", func() bool {
			f = featureStates(t, srv, tok, n)["git"]
			return f.Version == "2.48.0" && f.State == "installed"
		})
		if got, _ := simFile(t, srv, n, ".devport/features/git"); got != "git 2.48.0\n" {
			t.Errorf("%s has %q", n, got)
		}
	}
	if f := featureStates(t, srv, tok, migrating)["git"]; f.Version == "2.48.0" {
		t.Error("the rollout upgraded a migrating devserver")
	}
	rollouts, _ := srv.Store.Rollouts(context.Background(), 1)
	if rollouts[0].State != "running" {
		t.Errorf("the rollout is %s while a devserver still waits", rollouts[0].State)
	}
	setState(store.StateReady)
	handlertest.Eventually(t, 20*time.Second, "the rollout to finish", func() bool {
		rs, _ := srv.Store.Rollouts(context.Background(), 1)
		return rs[0].State == "done" && rs[0].Upgraded == 5
	})
	if got, _ := simFile(t, srv, migrating, ".devport/features/git"); got != "git 2.48.0\n" {
		t.Errorf("the devserver that was migrating has %q", got)
	}

	t.Run("refuses a second rollout of the same version, and bad versions", func(t *testing.T) {
		for _, c := range []struct {
			body   string
			status int
		}{
			{`{"version":"2.48.0"}`, 422},
			{`{"version":"not a version!"}`, 422},
			{`{"version":"3.0","batch_size":0}`, 422},
		} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/features/git", Token: admin, Body: c.body})
			if resp.StatusCode != c.status {
				t.Errorf("%s: %d %s", c.body, resp.StatusCode, body)
			}
		}
		resp, _ := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/features/git", Token: tok, Body: `{"version":"9"}`})
		if resp.StatusCode != 403 {
			t.Errorf("an engineer bumped a feature: %d", resp.StatusCode)
		}
		resp, _ = srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/features/cobol", Token: admin, Body: `{"version":"9"}`})
		if resp.StatusCode != 404 {
			t.Errorf("an unknown feature: %d", resp.StatusCode)
		}
	})
}

func mustUserID(t *testing.T, srv *handlertest.Server, email string) int64 {
	t.Helper()
	u, err := srv.Store.UserByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}
