package views

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/devport/devport/store"
)

// activityWords says what each kind of event on a devserver did.
var activityWords = map[string]string{
	"devserver.reserve":             "reserved it",
	"devserver.ready":               "finished provisioning",
	"devserver.fail":                "provisioning failed",
	"devserver.release":             "started the release",
	"devserver.released":            "released it",
	"devserver.extend":              "extended the lease",
	"devserver.lease_expired":       "the lease expired",
	"devserver.feature_add":         "asked for a feature",
	"devserver.feature_installed":   "installed a feature",
	"devserver.feature_failed":      "a feature failed to install",
	"devserver.feature_remove":      "asked to remove a feature",
	"devserver.feature_removed":     "removed a feature",
	"devserver.oneoffs_apply":       "asked to apply the one-offs",
	"devserver.oneoffs_applied":     "applied the one-offs",
	"devserver.oneoffs_failed":      "the one-offs failed",
	"devserver.backup":              "started a backup",
	"devserver.backup_done":         "finished a backup",
	"devserver.backup_failed":       "a backup failed",
	"devserver.backup_deleted":      "deleted an old backup",
	"devserver.restore":             "started a restore",
	"devserver.restored":            "restored a backup",
	"devserver.restore_failed":      "a restore failed",
	"devserver.migrate":             "started a migration",
	"devserver.migrate_switch":      "moved its hostname to the new host",
	"devserver.migrated":            "finished the migration",
	"devserver.migrate_rolled_back": "the migration failed and was rolled back",
	"devserver.share":               "shared it",
	"devserver.unshare":             "stopped sharing it",
	"devserver.keys_synced":         "updated its SSH keys",
	"ssh.session.open":              "opened an SSH session",
	"ssh.session.close":             "closed an SSH session",
	"terminal.session.open":         "opened the web terminal",
	"terminal.session.close":        "closed the web terminal",
}

// activityText says what an audit event did, in words.
func activityText(e store.AuditEvent) string {
	var detail map[string]any
	_ = json.Unmarshal([]byte(e.Detail), &detail)
	text, ok := activityWords[e.Action]
	if !ok {
		text = strings.ReplaceAll(strings.TrimPrefix(e.Action, "devserver."), "_", " ")
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(detail)) {
		parts = append(parts, fmt.Sprintf("%s: %v", k, detail[k]))
	}
	if len(parts) > 0 {
		text += " (" + strings.Join(parts, ", ") + ")"
	}
	return text
}
