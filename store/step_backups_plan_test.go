package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// A region's backup step reads its backups every second while they run,
// inside the write transaction: SQLite must look each one up by its primary
// key, not scan every backup for every effect (seconds for a region of
// thousands).
func TestStepBackupsLookUpBackupsByKey(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "devport.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.read.QueryxContext(ctx, `EXPLAIN QUERY PLAN SELECT b.state FROM `+stepBackupsJoin+`
WHERE e.run_id = 1 AND e.step = 'backup' AND e.key LIKE 'backup:%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	joined := strings.Join(plan, "; ")
	if !strings.Contains(joined, "SEARCH b USING INTEGER PRIMARY KEY") {
		t.Errorf("plan %q: backups are not looked up by their key", joined)
	}
}
