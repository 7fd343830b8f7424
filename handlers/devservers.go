package handlers

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// reserve takes capacity and enqueues provisioning in one transaction, so a
// reservation is never left without the job that builds it.
func reserve(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, req store.Reservation) (store.Devserver, error) {
	var d store.Devserver
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, who, req); err != nil {
			return err
		}
		if err := setUp(ctx, s, tx, q, who, d, req.Features); err != nil {
			return err
		}
		if d.State == store.StateReady {
			// Served from a pool: it is ready, but holds no keys of its new owner yet.
			if err := q.Enqueue(ctx, tx, jobs.SyncKeysArgs{DevserverID: d.ID}); err != nil {
				return err
			}
		}
		if d.FromPool() {
			return nil // taken from a pool: built and ready already
		}
		return q.Enqueue(ctx, tx, jobs.ProvisionArgs{DevserverID: d.ID})
	})
	return d, err
}

// visibleDevserver returns the devserver if the user may see it; otherwise
// it is not found, so nobody learns what exists.
func visibleDevserver(ctx context.Context, s *store.Store, u store.User, name string) (store.Devserver, error) {
	d, err := s.Devserver(ctx, name)
	if err == nil && !store.CanSeeDevserver(u, d) {
		err = store.ErrNotFound
	}
	d.Relation = store.RelationOf(u, d)
	d.Connection = store.ConnectionFor(d, u, web.Gateway(ctx))
	return d, err
}

// allowedDevserver returns a devserver the user may act on as may says:
// strangers get 404 (as from visibleDevserver), people who may only look 403.
func allowedDevserver(ctx context.Context, s *store.Store, u store.User, name string, may func(store.User, store.Devserver) bool) (store.Devserver, error) {
	d, err := visibleDevserver(ctx, s, u, name)
	if err == nil && !may(u, d) {
		err = web.ErrForbidden
	}
	return d, err
}

// release starts a release, enqueueing the fleet's part in the same transaction.
func release(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name string) (store.Devserver, error) {
	d, err := visibleDevserver(ctx, s, u, name)
	if err != nil {
		return store.Devserver{}, err
	}
	if !store.CanManageDevserver(u, d) {
		return store.Devserver{}, web.ErrForbidden
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		var needsFleet bool
		if d, needsFleet, err = tx.StartRelease(ctx, who, d); err != nil || !needsFleet {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.ReleaseArgs{DevserverID: d.ID})
	})
	return d, err
}

func listDevservers(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ds, err := s.Devservers(r.Context(), store.DevserverFilter{Viewer: web.User(r).ID, OwnOrShared: true, Limit: 500})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Chrome(r).Refresh = store.AnyTransitional(ds)
		v := views.Dashboard{Devservers: ds, Now: s.Now()}
		web.Render(w, r, log, views.DevserversPage(v), views.DevserverRows(v))
	}
}

// devserverView loads everything the devserver page shows.
func devserverView(ctx context.Context, s *store.Store, u store.User, d store.Devserver) (views.DevserverView, error) {
	v, err := featuresSection(ctx, s, u, d)
	if err != nil {
		return v, err
	}
	if v.Activity, err = s.AuditEvents(ctx, "devserver", d.Name); err != nil {
		return v, err
	}
	if v.Migration, err = latestMigration(ctx, s, d); err != nil {
		return v, err
	}
	if v.MoveMe, err = drainMoveMe(ctx, s, u, d); err != nil {
		return v, err
	}
	if v.CanManage {
		if v.Regions, err = s.Regions(ctx); err != nil {
			return v, err
		}
		if v.Flavors, err = s.Flavors(ctx); err != nil {
			return v, err
		}
	}
	if v.Lease, err = leaseView(ctx, s, u, d, views.LeaseView{}); err != nil {
		return v, err
	}
	if v.Shares, err = s.Shares(ctx, d.ID); err != nil {
		return v, err
	}
	if err := loadBackups(ctx, s, d, &v); err != nil {
		return v, err
	}
	return v, nil
}

func showDevserver(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		d, err := visibleDevserver(r.Context(), s, *u, chi.URLParam(r, "name"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		can := store.CanManageDevserver(*u, d)
		web.Chrome(r).Refresh = d.Transitional()
		if web.IsHTMX(r) {
			// Only a panel that is changing polls: when the devserver has
			// stopped changing, the page's other sections refresh too.
			if !d.Transitional() {
				w.Header().Set("HX-Trigger", views.SettledEvent)
			}
			web.Render(w, r, log, nil, views.DevserverStatus(d, can))
			return
		}
		v, err := devserverView(r.Context(), s, *u, d)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.DevserverPage(v), nil)
	}
}

// reserveFormData fills the form's choices: flavours, and regions with their
// free room for the chosen flavour.
func reserveFormData(ctx context.Context, s *store.Store, u store.User, f views.ReserveForm) (views.ReserveForm, error) {
	flavors, err := s.Flavors(ctx)
	if err != nil {
		return f, err
	}
	f.Flavors = flavors
	if f.Catalogue, err = s.Features(ctx); err != nil {
		return f, err
	}
	if f.Region == "" {
		f.Region = u.HomeRegion
	}
	return reserveRegionData(ctx, s, u, f)
}

// reserveRegionData fills what depends on the chosen flavour: the regions,
// nearest to the user's home first, with free room and pool-ready devservers;
// the lease policy; and the quota.
func reserveRegionData(ctx context.Context, s *store.Store, u store.User, f views.ReserveForm) (views.ReserveForm, error) {
	f.Regions = nil
	regions, err := s.Regions(ctx)
	if err != nil {
		return f, err
	}
	ms, err := s.Latencies(ctx, u.HomeRegion)
	if err != nil {
		return f, err
	}
	f.Home = u.HomeRegion
	if f.Quota, err = s.QuotaUse(ctx, u); err != nil {
		return f, err
	}
	flavor, err := s.Flavor(ctx, f.Flavor)
	if errors.Is(err, store.ErrNotFound) {
		f.Flavor = ""
		// Until a flavour is chosen the form shows the usual policy.
		f.Policy = store.DefaultLeasePolicy(store.Flavor{})
		for _, r := range store.ByNearness(regions, u.HomeRegion, ms) {
			f.Regions = append(f.Regions, views.RegionChoice{Region: r, LatencyMS: ms[r.Code]})
		}
		return reserveLeaseData(s, u, f), nil
	}
	if err != nil {
		return f, err
	}
	if f.Policy, err = s.LeasePolicy(ctx, flavor); err != nil {
		return f, err
	}
	f.GPU = flavor.GPUs > 0
	caps, err := s.Capacity(ctx, flavor)
	if err != nil {
		return f, err
	}
	ready, err := s.PoolReady(ctx)
	if err != nil {
		return f, err
	}
	free := map[string]int{}
	for _, c := range caps {
		free[c.Region.Code] = c.Free
	}
	for _, r := range store.ByNearness(regions, u.HomeRegion, ms) {
		f.Regions = append(f.Regions, views.RegionChoice{Region: r, Free: free[r.Code], PoolReady: ready[r.Code][flavor.Name], LatencyMS: ms[r.Code]})
	}
	return reserveLeaseData(s, u, f), nil
}

// reserveLeaseData fills the lease choice from the flavour's policy.
func reserveLeaseData(s *store.Store, u store.User, f views.ReserveForm) views.ReserveForm {
	now := s.Now()
	f.CanPermanent = f.Policy.AllowsPermanent(u)
	f.LeaseMax = f.Policy.MaxUntil(now).Format(time.DateOnly)
	if f.LeaseUntil == "" {
		f.LeaseUntil = f.Policy.DefaultUntil(now).Format(time.DateOnly)
	}
	return f
}

func reserveForm(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		f, err := reserveFormData(r.Context(), s, *u, views.ReserveForm{Flavor: r.URL.Query().Get("flavor"), Region: r.URL.Query().Get("region")})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.ReservePage(f), nil)
	}
}

func reserveRegions(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		region := r.URL.Query().Get("region")
		if region == "" {
			region = u.HomeRegion
		}
		q := r.URL.Query()
		f, err := reserveRegionData(r.Context(), s, *u, views.ReserveForm{Flavor: q.Get("flavor"), Region: region,
			LeaseKind: q.Get("lease_kind"), LeaseUntil: q.Get("lease_until")})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if f.LeaseUntil > f.LeaseMax { // dates as YYYY-MM-DD compare as strings
			// The new flavour allows less than the date chosen for the old one.
			f.LeaseUntil = f.Policy.DefaultUntil(s.Now()).Format(time.DateOnly)
		}
		web.Render(w, r, log, views.ReserveRegions(f), views.ReserveFlavorChoices(f))
	}
}

// leaseEnd reads the form's lease date: the lease ends at the end of that day (UTC).
func leaseEnd(date string) (*time.Time, bool) {
	if date == "" {
		return nil, true
	}
	d, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return nil, false
	}
	end := d.Add(24*time.Hour - time.Second)
	return &end, true
}

func reserveDevserver(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		u := web.User(r)
		form := views.ReserveForm{
			Flavor: r.PostForm.Get("flavor"), Region: r.PostForm.Get("region"),
			LeaseKind: r.PostForm.Get("lease_kind"), LeaseUntil: r.PostForm.Get("lease_until"), Features: r.PostForm["features"],
		}
		req := store.Reservation{Owner: *u, Flavor: form.Flavor, Region: form.Region, LeaseKind: form.LeaseKind, Features: form.Features}
		until, ok := leaseEnd(form.LeaseUntil)
		var err error
		if !ok {
			err = &store.ValidationError{Fields: map[string]string{"lease.until": "must be a date such as 2026-12-31"}}
		} else {
			if req.LeaseKind != store.LeasePermanent {
				req.LeaseUntil = until
			}
			var d store.Devserver
			if d, err = reserve(r.Context(), s, q, web.Actor(r), req); err == nil {
				if d.FromPool() {
					sessions.Flash(w, r, "success", d.Name+" ("+d.Flavor+") in "+d.Region+" is ready: it came from the pool.")
				} else {
					sessions.Flash(w, r, "success", "Reserving "+d.Name+" ("+d.Flavor+") in "+d.Region+" on "+d.Host+".")
				}
				web.Redirect(w, r, views.DevserverURL(d.Name))
				return
			}
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		form.Errors, form.Message = fields, message
		f, ferr := reserveFormData(r.Context(), s, *u, form)
		if ferr != nil {
			web.Error(w, r, log, ferr)
			return
		}
		web.RenderStatus(w, r, log, status, views.ReservePage(f), nil)
	}
}

func releaseDevserver(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		d, err := release(r.Context(), s, q, web.Actor(r), *u, chi.URLParam(r, "name"))
		var ce *store.ConflictError
		if errors.As(err, &ce) {
			sessions.Flash(w, r, "error", ce.Message)
			web.Redirect(w, r, views.DevserverURL(chi.URLParam(r, "name")))
			return
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Releasing "+d.Name+".")
		web.Redirect(w, r, views.DevserverURL(d.Name))
	}
}

// The API.

type reserveRequest struct {
	Flavor string `json:"flavor"`
	Region string `json:"region"`
	Lease  *struct {
		Kind  string     `json:"kind"`
		Until *time.Time `json:"until"`
	} `json:"lease"`
	Features []string `json:"features"`
}

func apiReserveDevserver(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in reserveRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		req := store.Reservation{Owner: *web.User(r), Flavor: in.Flavor, Region: in.Region, Features: in.Features}
		if in.Lease != nil {
			req.LeaseKind, req.LeaseUntil = in.Lease.Kind, in.Lease.Until
		}
		d, err := reserve(r.Context(), s, q, web.Actor(r), req)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.Header().Set("Location", "/api/v1/devservers/"+d.Name)
		web.WriteJSON(w, http.StatusAccepted, d)
	}
}

func apiShowDevserver(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := visibleDevserver(r.Context(), s, *web.User(r), chi.URLParam(r, "name"))
		if err == nil {
			d.Shares, err = s.Shares(r.Context(), d.ID)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, d)
	}
}

func apiReleaseDevserver(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := release(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		writeAccepted(w, d.State == store.StateReleased, d)
	}
}

// writeAccepted answers a long operation: 202 with the object on its way,
// or 200 when it is done already.
func writeAccepted(w http.ResponseWriter, done bool, v any) {
	status := http.StatusAccepted
	if done {
		status = http.StatusOK
	}
	web.WriteJSON(w, status, v)
}

// page is a list answer: items and the cursor of the next page.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// pageOf is the answer for a list read with limit+1 rows: at most limit
// items (never null), and the cursor after the last when there are more.
func pageOf[T any](items []T, limit int, id func(T) int64) page[T] {
	out := page[T]{Items: items}
	if len(items) > limit {
		out.Items = items[:limit]
		out.NextCursor = cursorAfter(id(items[limit-1]))
	}
	if out.Items == nil {
		out.Items = []T{}
	}
	return out
}

// pagination reads limit (default 50, at most 500) and cursor.
func pagination(r *http.Request) (limit int, after int64, err error) {
	limit = 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return 0, 0, web.BadRequest("invalid_limit", "limit must be a whole number from 1 to 500.")
		}
		limit = n
	}
	if c := r.URL.Query().Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err == nil {
			after, err = strconv.ParseInt(strings.TrimPrefix(string(b), "id:"), 10, 64)
		}
		if err != nil || after <= 0 || !strings.HasPrefix(string(b), "id:") {
			return 0, 0, web.BadRequest("invalid_cursor", "cursor is not one this server gave out.")
		}
	}
	return limit, after, nil
}

// offsetPagination reads limit and an offset cursor ("at:N"), for lists
// sorted by something other than their ID (tasks and follow-ups by due date).
func offsetPagination(r *http.Request) (limit, offset int, err error) {
	q := r.URL.Query()
	c := q.Get("cursor")
	q.Del("cursor")
	plain := r.Clone(r.Context())
	plain.URL.RawQuery = q.Encode()
	if limit, _, err = pagination(plain); err != nil || c == "" {
		return limit, 0, err
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil && strings.HasPrefix(string(b), "at:") {
		if n, err := strconv.Atoi(strings.TrimPrefix(string(b), "at:")); err == nil && n > 0 {
			return limit, n, nil
		}
	}
	return 0, 0, web.BadRequest("invalid_cursor", "cursor is not one this server gave out.")
}

// offsetPage is the answer for a list read from offset with limit+1 rows.
func offsetPage[T any](items []T, limit, offset int) page[T] {
	out := page[T]{Items: items}
	if len(items) > limit {
		out.Items = items[:limit]
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte("at:" + strconv.Itoa(offset+limit)))
	}
	if out.Items == nil {
		out.Items = []T{}
	}
	return out
}

func cursorAfter(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("id:" + strconv.FormatInt(id, 10)))
}

var devserverStates = []string{store.StateProvisioning, store.StateReady, store.StateMigrating, store.StateUnreachable,
	store.StateLost, store.StateReleasing, store.StateReleased, store.StateFailed}

func apiListDevservers(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		limit, after, err := pagination(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		q := r.URL.Query()
		f := store.DevserverFilter{Viewer: u.ID, OwnOrShared: true, Region: q.Get("region"), State: q.Get("state"), AfterID: after, Limit: limit + 1}
		if f.State != "" && !slices.Contains(devserverStates, f.State) {
			web.Error(w, r, log, &store.ValidationError{Fields: map[string]string{"state": "must be one of " + strings.Join(devserverStates, ", ")}})
			return
		}
		if q.Get("all") == "1" {
			if !store.CanListAllDevservers(*u) {
				web.Error(w, r, log, web.ErrForbidden)
				return
			}
			f.OwnOrShared = false
		}
		ds, err := s.Devservers(r.Context(), f)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		for i := range ds {
			ds[i].Connection = store.ConnectionFor(ds[i], *u, web.Gateway(r.Context()))
		}
		out := pageOf(ds, limit, func(v store.Devserver) int64 { return v.ID })
		web.WriteJSON(w, http.StatusOK, out)
	}
}

// showActivity is the devserver page's activity section alone.
func showActivity(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := visibleDevserver(r.Context(), s, *web.User(r), chi.URLParam(r, "name"))
		var events []store.AuditEvent
		if err == nil {
			events, err = s.AuditEvents(r.Context(), "devserver", d.Name)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.DevserverActivity(d.Name, events), views.DevserverActivity(d.Name, events))
	}
}
