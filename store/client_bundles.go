package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Diagnostic bundles the CLI sends (`devport doctor --rage`): the CLI
// collects the parts on the person's machine and sends them whole.

// Limits of a bundle from the CLI.
const (
	MaxClientBundleParts = 20
	maxBundlePartName    = 64
	maxBundleNote        = 2000
)

// ClientBundle is what the CLI sends.
type ClientBundle struct {
	Note string
	// Devserver is the name of a devserver the sender may see, or nil.
	Devserver *Devserver
	Parts     map[string]json.RawMessage
}

// AddClientBundle stores a bundle from the CLI, ready at once, and opens a
// support task for every admin. One per person each RagePause.
func (tx *Tx) AddClientBundle(ctx context.Context, who Actor, in ClientBundle) (DiagnosticBundle, error) {
	p := Problems{}
	if len(in.Note) > maxBundleNote {
		p.Add("note", "is longer than 2000 characters")
	}
	switch {
	case len(in.Parts) == 0:
		p.Add("parts", "is required: at least one part")
	case len(in.Parts) > MaxClientBundleParts:
		p.Add("parts", fmt.Sprintf("has %d parts; at most %d are allowed", len(in.Parts), MaxClientBundleParts))
	}
	names := make([]string, 0, len(in.Parts))
	for name := range in.Parts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.TrimSpace(name) == "" || len(name) > maxBundlePartName || !cliPrintable(name) {
			p.Add("parts", fmt.Sprintf("has a part named %q; names are 1 to %d printable characters", name, maxBundlePartName))
		} else if raw := in.Parts[name]; len(raw) == 0 || !json.Valid(raw) {
			p.Add("parts", fmt.Sprintf("part %q is not a JSON value", name))
		}
	}
	if err := p.Err(); err != nil {
		return DiagnosticBundle{}, err
	}
	var recent int
	err := getNamed(ctx, tx, &recent, `SELECT COUNT(*) FROM diagnostic_bundles WHERE source = 'cli' AND requested_by = :by AND created_at > :since`,
		arg{"by": who.Name, "since": tx.Now().Add(-RagePause)})
	if err != nil {
		return DiagnosticBundle{}, fmt.Errorf("bundle from the CLI: %w", err)
	}
	if recent > 0 {
		return DiagnosticBundle{}, &QuotaError{Message: fmt.Sprintf("You sent a diagnostic bundle less than %s ago; the platform team has it.", RagePause)}
	}
	body, err := json.Marshal(in.Parts)
	if err != nil {
		return DiagnosticBundle{}, fmt.Errorf("bundle from the CLI: %w", err)
	}
	var devserverID *int64
	devserver := ""
	if in.Devserver != nil {
		id := in.Devserver.ID
		devserverID, devserver = &id, in.Devserver.Name
	}
	now := tx.Now()
	var id int64
	err = getNamed(ctx, tx, &id, `INSERT INTO diagnostic_bundles (devserver_id, devserver, source, requested_by, note, state, body, created_at, ready_at)
VALUES (:d, :name, 'cli', :by, :note, 'ready', :body, :now, :now) RETURNING id`,
		arg{"d": devserverID, "name": devserver, "by": who.Name, "note": in.Note, "body": string(body), "now": now})
	if err != nil {
		return DiagnosticBundle{}, fmt.Errorf("bundle from the CLI: %w", err)
	}
	b, err := bundleBy(ctx, tx, id)
	if err != nil {
		return DiagnosticBundle{}, err
	}
	if err := tx.notifyBundle(ctx, b); err != nil {
		return DiagnosticBundle{}, err
	}
	objectType, objectID := "bundle", strconv.FormatInt(id, 10)
	if devserver != "" {
		objectType, objectID = "devserver", devserver
	}
	if err := tx.Audit(ctx, who, "bundle.upload", objectType, objectID, map[string]any{"bundle": id, "parts": names, "bytes": len(body)}); err != nil {
		return DiagnosticBundle{}, err
	}
	return b, nil
}
