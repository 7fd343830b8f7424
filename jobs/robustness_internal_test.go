package jobs

import (
	"testing"
	"time"
)

// TestRescueWindowExceedsEveryTimeout: River rescues a job that has been
// running longer than RescueStuckJobsAfter, so a job kind whose timeout is
// longer would be rescued while it still runs, and a second copy of it (a
// second migration run, freeing capacity twice) would start beside it.
func TestRescueWindowExceedsEveryTimeout(t *testing.T) {
	timeouts := map[string]time.Duration{
		ProvisionArgs{}.Kind():      (&provisionWorker{}).Timeout(nil),
		ReleaseArgs{}.Kind():        (&releaseWorker{}).Timeout(nil),
		SessionCleanupArgs{}.Kind(): (&sessionCleanupWorker{}).Timeout(nil),
		BackupArgs{}.Kind():         (&backupWorker{}).Timeout(nil),
		RestoreArgs{}.Kind():        (&restoreWorker{}).Timeout(nil),
		BackupScheduleArgs{}.Kind(): (&backupScheduleWorker{}).Timeout(nil),
		LeaseCheckArgs{}.Kind():     (&leaseWorker{}).Timeout(nil),
		PoolRefillArgs{}.Kind():     (&poolRefillWorker{}).Timeout(nil),
		SyncKeysArgs{}.Kind():       (&syncKeysWorker{}).Timeout(nil),
		FeatureArgs{}.Kind():        (&featureWorker{}).Timeout(nil),
		OneoffsArgs{}.Kind():        (&oneoffsWorker{}).Timeout(nil),
		RolloutArgs{}.Kind():        (&rolloutWorker{}).Timeout(nil),
		MigrateArgs{}.Kind():        (&migrateWorker{}).Timeout(nil),
	}
	for kind, d := range timeouts {
		if d <= 0 {
			t.Errorf("%s has no timeout", kind)
		}
		if d >= rescueAfter {
			t.Errorf("%s times out after %s, but River rescues (and reruns) a job running longer than %s", kind, d, rescueAfter)
		}
	}
}
