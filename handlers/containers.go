package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// On Demand containers: request one (from a pool when one waits), see it
// and its countdown, get in (terminal, SSH, VS Code, sandbox), take a fresh
// one, end it.

// visibleContainer returns the container if the user may see it; otherwise
// it is not found, so nobody learns what exists.
func visibleContainer(ctx context.Context, s *store.Store, u store.User, name string) (store.Container, error) {
	if !store.IsContainerName(name) {
		return store.Container{}, fmt.Errorf("container %q: %w", name, store.ErrNotFound)
	}
	c, err := s.Container(ctx, name)
	if err == nil && !store.CanSeeContainer(u, c) {
		err = store.ErrNotFound
	}
	return c, err
}

// requestContainer records the request and enqueues its work in one
// transaction, so a container is never left without the job that builds it.
func requestContainer(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, req store.ContainerRequest) (store.Container, error) {
	var c store.Container
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if c, err = tx.RequestContainer(ctx, who, req); err != nil {
			return err
		}
		return enqueueAll(ctx, tx, q, jobs.ContainerWork(c))
	})
	return c, err
}

// freshContainer ends the named container and requests a new one like it.
func freshContainer(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name string) (fresh, old store.Container, err error) {
	old, err = visibleContainer(ctx, s, u, name)
	if err != nil {
		return fresh, old, err
	}
	if !store.CanRenewContainer(u, old) {
		return fresh, old, web.ErrForbidden
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		if fresh, old, err = tx.FreshContainer(ctx, who, u, old); err != nil {
			return err
		}
		if err := q.Enqueue(ctx, tx, jobs.EndContainerArgs{ContainerID: old.ID}); err != nil {
			return err
		}
		return enqueueAll(ctx, tx, q, jobs.ContainerWork(fresh))
	})
	return fresh, old, err
}

// endContainer begins a container's end, enqueueing the fleet's part.
func endContainer(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name string) (store.Container, error) {
	c, err := visibleContainer(ctx, s, u, name)
	if err != nil {
		return c, err
	}
	if !store.CanManageContainer(u, c) {
		return c, web.ErrForbidden
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		var needsFleet bool
		if c, needsFleet, err = tx.EndContainer(ctx, who, c, store.EndByOwner); err != nil || !needsFleet {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.EndContainerArgs{ContainerID: c.ID})
	})
	return c, err
}

func enqueueAll(ctx context.Context, tx *store.Tx, q Enqueuer, work []jobs.Args) error {
	for _, a := range work {
		if err := q.Enqueue(ctx, tx, a); err != nil {
			return err
		}
	}
	return nil
}

// servedText tells the owner where their container came from.
func servedText(c store.Container) string {
	var b strings.Builder
	if c.State == store.ContainerReady {
		fmt.Fprintf(&b, "%s (%s, %s) is ready in %s: it came from the pool.", c.Name, c.Type, c.Profile, c.Region)
	} else {
		fmt.Fprintf(&b, "Building %s (%s, %s) in %s on %s.", c.Name, c.Type, c.Profile, c.Region, c.Host)
	}
	if c.PlacementNote != "" {
		b.WriteString(" " + c.PlacementNote)
	}
	return b.String()
}

// containerAccess fills how the owner gets into a ready container.
func containerAccess(ctx context.Context, c store.Container, t store.ContainerType) *store.ContainerAccess {
	if c.State != store.ContainerReady {
		return nil
	}
	return &store.ContainerAccess{
		Terminal:   views.ContainerURL(c.Name),
		Connection: store.ContainerConnectionFor(c, web.Gateway(ctx)),
		SandboxURL: t.Sandbox(c),
	}
}

// containerView loads everything the container page shows.
func containerView(ctx context.Context, s *store.Store, u store.User, c store.Container) (views.ContainerView, error) {
	v := views.ContainerView{Container: c, Now: s.Now(), CanManage: store.CanManageContainer(u, c),
		CanRenew: store.CanRenewContainer(u, c), CanShell: store.CanShellContainer(u, c)}
	var err error
	if v.Type, err = s.ContainerType(ctx, c.Type); err != nil {
		return v, err
	}
	// A fresh one is like this one: offered while the type still allows it.
	v.CanRenew = v.CanRenew && v.Type.Allows(c.Profile) &&
		!slices.ContainsFunc(c.Features, func(f store.ContainerFeature) bool { return !v.Type.AllowsFeature(f.Feature) })
	if v.CanShell {
		if a := containerAccess(ctx, c, v.Type); a != nil {
			v.Connection, v.Sandbox = a.Connection, a.SandboxURL
		}
	}
	v.Activity, err = s.AuditEvents(ctx, "container", c.Name)
	return v, err
}

func listContainers(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		u := web.User(r)
		live, err := s.Containers(ctx, store.ContainerFilter{OwnerID: u.ID, Limit: 500})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v := views.ContainerList{Live: live, Now: s.Now()}
		if v.Quota, err = s.ContainerQuotaUse(ctx, *u); err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Chrome(r).Refresh = store.AnyContainerTransitional(live)
		if !web.IsHTMX(r) {
			all, err := s.Containers(ctx, store.ContainerFilter{OwnerID: u.ID, Ended: true, Limit: 50})
			if err != nil {
				web.Error(w, r, log, err)
				return
			}
			for _, c := range all {
				if !c.Live() && c.State != store.ContainerEnding && len(v.Recent) < 10 {
					v.Recent = append(v.Recent, c)
				}
			}
		}
		web.Render(w, r, log, views.ContainersPage(v), views.ContainerRows(v))
	}
}

// containerFormData fills the request form's choices: the catalogue, and
// the regions nearest the user first, with what waits in their pools for
// the chosen type and profile.
func containerFormData(ctx context.Context, s *store.Store, u store.User, f views.ContainerForm) (views.ContainerForm, error) {
	var err error
	if f.Catalogue, err = s.ContainerCatalogue(ctx); err != nil {
		return f, err
	}
	if f.Features, err = s.Features(ctx); err != nil {
		return f, err
	}
	if f.Quota, err = s.ContainerQuotaUse(ctx, u); err != nil {
		return f, err
	}
	t := f.SelectedType()
	f.Type = t.Name
	if !t.Allows(f.Profile) && len(t.Profiles) > 0 {
		f.Profile = t.Profiles[0]
		if slices.Contains(t.Profiles, "medium") {
			f.Profile = "medium"
		}
	}
	f.Chosen = slices.DeleteFunc(slices.Clone(f.Chosen), func(name string) bool { return !t.AllowsFeature(name) })
	f.Home = u.HomeRegion
	regions, err := s.RegionsByNearness(ctx, u.HomeRegion)
	if err != nil {
		return f, err
	}
	ms, err := s.Latencies(ctx, u.HomeRegion)
	if err != nil {
		return f, err
	}
	ready, err := s.ContainerPoolReady(ctx)
	if err != nil {
		return f, err
	}
	f.Regions = nil
	for _, r := range regions {
		f.Regions = append(f.Regions, views.ContainerRegion{Region: r, LatencyMS: ms[r.Code],
			PoolReady: ready[store.ContainerPoolKey(r.Code, f.Type, f.Profile)]})
	}
	return f, nil
}

func containerRequestForm(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f, err := containerFormData(r.Context(), s, *web.User(r), views.ContainerForm{
			Type: q.Get("type"), Profile: q.Get("profile"), Region: q.Get("region"), Chosen: q["features"]})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.ContainerRequestPage(f), views.ContainerOptions(f))
	}
}

func postContainerRequest(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		u := web.User(r)
		form := views.ContainerForm{Type: r.PostForm.Get("type"), Profile: r.PostForm.Get("profile"),
			Region: r.PostForm.Get("region"), Chosen: r.PostForm["features"]}
		c, err := requestContainer(r.Context(), s, q, web.Actor(r),
			store.ContainerRequest{Owner: *u, Type: form.Type, Profile: form.Profile, Region: form.Region, Features: form.Chosen})
		if err == nil {
			sessions.Flash(w, r, "success", servedText(c))
			web.Redirect(w, r, views.ContainerURL(c.Name))
			return
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		form.Errors, form.Message = fields, message
		f, ferr := containerFormData(r.Context(), s, *u, form)
		if ferr != nil {
			web.Error(w, r, log, ferr)
			return
		}
		// What the person chose stays chosen, valid or not.
		f.Type, f.Profile = cmpOr(form.Type, f.Type), cmpOr(form.Profile, f.Profile)
		web.RenderStatus(w, r, log, status, views.ContainerRequestPage(f), nil)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func showContainer(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		c, err := visibleContainer(r.Context(), s, *u, chi.URLParam(r, "id"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v, err := containerView(r.Context(), s, *u, c)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Chrome(r).Refresh = c.Transitional()
		if web.IsHTMX(r) {
			if !c.Transitional() {
				// Settled: the Access section refreshes itself.
				w.Header().Set("HX-Trigger", views.SettledEvent)
			}
			web.Render(w, r, log, nil, views.ContainerStatus(v))
			return
		}
		web.Render(w, r, log, views.ContainerPage(v), nil)
	}
}

func showContainerAccess(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		c, err := visibleContainer(r.Context(), s, *u, chi.URLParam(r, "id"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v, err := containerView(r.Context(), s, *u, c)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.ContainerPage(v), views.ContainerAccess(v))
	}
}

func postEndContainer(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "id")
		c, err := endContainer(r.Context(), s, q, web.Actor(r), *web.User(r), name)
		var ce *store.ConflictError
		if errors.As(err, &ce) {
			sessions.Flash(w, r, "error", ce.Message)
			web.Redirect(w, r, views.ContainerURL(name))
			return
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Ending "+c.Name+"; everything on it is being destroyed.")
		web.Redirect(w, r, views.ContainerURL(c.Name))
	}
}

func postFreshContainer(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "id")
		fresh, old, err := freshContainer(r.Context(), s, q, web.Actor(r), *web.User(r), name)
		var ce *store.ConflictError
		var qe *store.QuotaError
		var ve *store.ValidationError
		switch {
		case errors.As(err, &ve):
			// The type changed since: it no longer allows this profile or a feature.
			sessions.Flash(w, r, "error", "No fresh one like "+name+" can be given: "+web.FieldsText(ve.Fields)+". Request a new container instead; "+name+" is unchanged.")
			web.Redirect(w, r, views.ContainerURL(name))
			return
		case errors.As(err, &ce) || errors.As(err, &qe):
			sessions.Flash(w, r, "error", err.Error())
			web.Redirect(w, r, views.ContainerURL(name))
			return
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", servedText(fresh)+" "+old.Name+" is ending.")
		web.Redirect(w, r, views.ContainerURL(fresh.Name))
	}
}

// containerShell is the container a terminal websocket asks for, once its
// owner asks and it is ready.
func containerShell(s *store.Store, f *fleet.Fleet) func(*http.Request) (shellTarget, error) {
	return func(r *http.Request) (shellTarget, error) {
		if err := shellChecks(r); err != nil {
			return shellTarget{}, err
		}
		u := web.User(r)
		c, err := visibleContainer(r.Context(), s, *u, chi.URLParam(r, "id"))
		if err != nil {
			return shellTarget{}, err
		}
		if !store.CanShellContainer(*u, c) {
			return shellTarget{}, web.ErrForbidden
		}
		if c.State != store.ContainerReady || c.InstanceID == "" {
			return shellTarget{}, store.Conflict("not_ready", fmt.Sprintf("Container %s is %s; a terminal opens once it is ready.", c.Name, c.State))
		}
		if !sameOrigin(r) {
			return shellTarget{}, errTerminalOrigin
		}
		shells, err := interactive(f, "Container", c.Name, c.Host, c.Driver)
		return shellTarget{kind: "container", name: c.Name, instanceID: c.InstanceID, shells: shells}, err
	}
}

// The API.

func apiContainerTypes(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.ContainerCatalogue(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, c)
	}
}

type containerRequestBody struct {
	Type     string   `json:"type"`
	Profile  string   `json:"profile"`
	Region   string   `json:"region"`
	Features []string `json:"features"`
}

// withAccess fills what the owner needs to get in.
func withAccess(ctx context.Context, s *store.Store, u store.User, c store.Container) (store.Container, error) {
	if !store.CanShellContainer(u, c) || c.State != store.ContainerReady {
		return c, nil
	}
	t, err := s.ContainerType(ctx, c.Type)
	if err != nil {
		return c, err
	}
	c.Access = containerAccess(ctx, c, t)
	return c, nil
}

func apiRequestContainer(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in containerRequestBody
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		u := web.User(r)
		c, err := requestContainer(r.Context(), s, q, web.Actor(r),
			store.ContainerRequest{Owner: *u, Type: in.Type, Profile: in.Profile, Region: in.Region, Features: in.Features})
		if err == nil {
			c, err = withAccess(r.Context(), s, *u, c)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.Header().Set("Location", "/api/v1/containers/"+c.Name)
		web.WriteJSON(w, http.StatusCreated, c)
	}
}

var containerStates = []string{store.ContainerProvisioning, store.ContainerReady, store.ContainerEnding, store.ContainerEnded, store.ContainerFailed}

func apiListContainers(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		limit, after, err := pagination(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		qs := r.URL.Query()
		f := store.ContainerFilter{OwnerID: u.ID, Region: qs.Get("region"), State: qs.Get("state"), AfterID: after, Limit: limit + 1,
			Ended: qs.Get("ended") == "1"}
		if f.State != "" && !slices.Contains(containerStates, f.State) {
			web.Error(w, r, log, &store.ValidationError{Fields: map[string]string{"state": "must be one of " + strings.Join(containerStates, ", ")}})
			return
		}
		if qs.Get("all") == "1" {
			if !store.CanListAllDevservers(*u) {
				web.Error(w, r, log, web.ErrForbidden)
				return
			}
			f.OwnerID = 0
		}
		cs, err := s.Containers(r.Context(), f)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		out := pageOf(cs, limit, func(v store.Container) int64 { return v.ID })
		web.WriteJSON(w, http.StatusOK, out)
	}
}

func apiShowContainer(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		c, err := visibleContainer(r.Context(), s, *u, chi.URLParam(r, "id"))
		if err == nil {
			c, err = withAccess(r.Context(), s, *u, c)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, c)
	}
}

func apiEndContainer(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := endContainer(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "id"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		writeAccepted(w, c.State == store.ContainerEnded, c)
	}
}

func apiFreshContainer(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		fresh, _, err := freshContainer(r.Context(), s, q, web.Actor(r), *u, chi.URLParam(r, "id"))
		if err == nil {
			fresh, err = withAccess(r.Context(), s, *u, fresh)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.Header().Set("Location", "/api/v1/containers/"+fresh.Name)
		web.WriteJSON(w, http.StatusCreated, fresh)
	}
}
