package handlers

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// loadBackups fills the devserver page's backups section: its backups, the
// latest restore onto it, and where its backups can be restored.
func loadBackups(ctx context.Context, s *store.Store, d store.Devserver, v *views.DevserverView) error {
	var err error
	if v.Backups, err = s.Backups(ctx, store.BackupFilter{DevserverID: d.ID, Limit: 50}); err != nil {
		return err
	}
	if v.Restores, err = s.Restores(ctx, d.ID, 1); err != nil {
		return err
	}
	v.RestoreTargets = nil
	if v.CanManage && d.OwnerID != 0 {
		// Those who manage this devserver manage every one of its owner's.
		if v.RestoreTargets, err = s.Devservers(ctx, store.DevserverFilter{OwnerID: d.OwnerID, State: store.StateReady, Limit: 500}); err != nil {
			return err
		}
	}
	return nil
}

// requestBackup records an on-demand backup and enqueues the job that takes
// it, in one transaction. Only the owner or an admin may; a sharee is refused.
func requestBackup(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name string) (store.Backup, error) {
	d, err := visibleDevserver(ctx, s, u, name)
	if err != nil {
		return store.Backup{}, err
	}
	if !store.CanManageDevserver(u, d) {
		return store.Backup{}, web.ErrForbidden
	}
	var b store.Backup
	err = s.InTx(ctx, func(tx *store.Tx) error {
		fresh, err := tx.DevserverByID(ctx, d.ID)
		if err != nil {
			return err
		}
		if b, err = tx.RequestBackup(ctx, who, fresh, store.BackupManual); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.BackupArgs{BackupID: b.ID})
	})
	return b, err
}

// requestRestore records a restore of a backup onto target and enqueues its
// job, in one transaction. The caller must manage the target, and the backup
// must be its owner's: a backup that is not theirs does not exist for them.
func requestRestore(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, backupID int64, target string) (store.Restore, error) {
	if strings.TrimSpace(target) == "" {
		return store.Restore{}, &store.ValidationError{Fields: map[string]string{"target": "choose the devserver to restore onto"}}
	}
	d, err := visibleDevserver(ctx, s, u, target)
	if err != nil {
		return store.Restore{}, err
	}
	if !store.CanManageDevserver(u, d) {
		return store.Restore{}, web.ErrForbidden
	}
	b, err := s.Backup(ctx, backupID)
	if err != nil {
		return store.Restore{}, err
	}
	if !store.CanRestoreBackup(u, b, d) {
		return store.Restore{}, store.ErrNotFound
	}
	var r store.Restore
	err = s.InTx(ctx, func(tx *store.Tx) error {
		fresh, err := tx.DevserverByID(ctx, d.ID)
		if err != nil {
			return err
		}
		if r, err = tx.RequestRestore(ctx, who, b, fresh); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.RestoreArgs{RestoreID: r.ID})
	})
	return r, err
}

// showBackups is the backups section alone (for HTMX polling), or the
// devserver page.
func showBackups(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		d, err := visibleDevserver(r.Context(), s, *u, chi.URLParam(r, "name"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v := views.DevserverView{Devserver: d, CanManage: store.CanManageDevserver(*u, d)}
		if !web.IsHTMX(r) {
			if v, err = devserverView(r.Context(), s, *u, d); err != nil {
				web.Error(w, r, log, err)
				return
			}
		}
		if err := loadBackups(r.Context(), s, d, &v); err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.DevserverPage(v), views.DevserverBackups(v))
	}
}

// flashConflict turns a conflict or a validation problem into a flash on the
// devserver page; other errors are answered as errors. It reports whether it
// answered.
func flashConflict(w http.ResponseWriter, r *http.Request, sessions *web.SessionStore, err error, back string) bool {
	if !flashProblem(w, r, sessions, err, "Not restored") {
		return false
	}
	web.Redirect(w, r, back)
	return true
}

func backUpDevserver(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "name")
		b, err := requestBackup(r.Context(), s, q, web.Actor(r), *web.User(r), name)
		if err != nil {
			if !flashConflict(w, r, sessions, err, views.DevserverURL(name)) {
				web.Error(w, r, log, err)
			}
			return
		}
		sessions.Flash(w, r, "success", fmt.Sprintf("Backing up %s (backup %d).", b.Devserver, b.ID))
		web.Redirect(w, r, views.DevserverURL(b.Devserver)+"#"+views.DevserverBackupsID)
	}
}

// restoreBackup is the page's restore: the backup in the path, the target
// devserver in the form.
func restoreBackup(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
		if err != nil || id <= 0 {
			web.Error(w, r, log, store.ErrNotFound)
			return
		}
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		target := r.PostForm.Get("target")
		rs, err := requestRestore(r.Context(), s, q, web.Actor(r), *web.User(r), id, target)
		if err != nil {
			back := "/devservers"
			if target != "" {
				back = views.DevserverURL(target)
			}
			if !flashConflict(w, r, sessions, err, back) {
				web.Error(w, r, log, err)
			}
			return
		}
		sessions.Flash(w, r, "success", fmt.Sprintf("Restoring backup %d of %s onto %s.", rs.BackupID, rs.Source, rs.Devserver))
		web.Redirect(w, r, views.DevserverURL(rs.Devserver)+"#"+views.DevserverBackupsID)
	}
}

// The API.

func apiListBackups(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := visibleDevserver(r.Context(), s, *web.User(r), chi.URLParam(r, "name"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		limit, after, err := pagination(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		bs, err := s.Backups(r.Context(), store.BackupFilter{DevserverID: d.ID, AfterID: after, Limit: limit + 1})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		out := pageOf(bs, limit, func(v store.Backup) int64 { return v.ID })
		web.WriteJSON(w, http.StatusOK, out)
	}
}

func apiBackUpDevserver(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := requestBackup(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, b)
	}
}

// restoreJSON is a restore as the API shows it, with its progress.
type restoreJSON struct {
	store.Restore
	Progress int `json:"progress"`
}

// restoreRequest is the body of POST /api/v1/devservers/{name}/restore.
type restoreRequest struct {
	BackupID *int64 `json:"backup_id" required:"true" description:"A backup of this or another of the caller's devservers."`
}

func apiRestoreBackup(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in restoreRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		if in.BackupID == nil || *in.BackupID <= 0 {
			web.Error(w, r, log, &store.ValidationError{Fields: map[string]string{"backup_id": "is required: the id of one of your backups"}})
			return
		}
		rs, err := requestRestore(r.Context(), s, q, web.Actor(r), *web.User(r), *in.BackupID, chi.URLParam(r, "name"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, restoreJSON{rs, rs.Progress()})
	}
}

func apiListRestores(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := visibleDevserver(r.Context(), s, *web.User(r), chi.URLParam(r, "name"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		rs, err := s.Restores(r.Context(), d.ID, 50)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		out := page[restoreJSON]{Items: []restoreJSON{}}
		for _, x := range rs {
			out.Items = append(out.Items, restoreJSON{x, x.Progress()})
		}
		web.WriteJSON(w, http.StatusOK, out)
	}
}
