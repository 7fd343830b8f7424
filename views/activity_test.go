package views

import (
	"testing"

	"github.com/devport/devport/store"
)

func TestActivityText(t *testing.T) {
	for _, c := range []struct {
		action, detail, want string
	}{
		{"ssh.session.open", `{"command":"shell"}`, "opened an SSH session (command: shell)"},
		{"devserver.migrate_rolled_back", `{"step":"restore"}`, "the migration failed and was rolled back (step: restore)"},
		{"devserver.reserve", `{"region":"prn","flavor":"vm.small"}`, "reserved it (flavor: vm.small, region: prn)"},
		{"devserver.something_new", `{}`, "something new"},
	} {
		if got := activityText(store.AuditEvent{Action: c.action, Detail: c.detail}); got != c.want {
			t.Errorf("%s: %q, want %q", c.action, got, c.want)
		}
	}
}
