package views

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/devport/devport/store"
)

// activityText says what an audit event did, in words.
func activityText(e store.AuditEvent) string {
	var detail map[string]any
	_ = json.Unmarshal([]byte(e.Detail), &detail)
	words := map[string]string{
		"devserver.reserve":  "reserved it",
		"devserver.ready":    "finished provisioning",
		"devserver.release":  "started the release",
		"devserver.released": "released it",
		"devserver.fail":     "provisioning failed",
	}
	text, ok := words[e.Action]
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
