package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// The admins' side of On Demand containers: the catalogue of types and
// hardware profiles, and the capacity page with the container pools.
// Routes put all of it behind web.RequireRole(admin).

// catalogueView loads what the catalogue page shows.
func catalogueView(ctx context.Context, s *store.Store) (views.CatalogueView, error) {
	var v views.CatalogueView
	var err error
	if v.Catalogue, err = s.ContainerCatalogue(ctx); err != nil {
		return v, err
	}
	v.Features, err = s.Features(ctx)
	return v, err
}

func adminContainers(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := catalogueView(r.Context(), s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminContainersPage(v), nil)
	}
}

// parseVersioned reads "name version" lines; blank lines are skipped.
func parseVersioned(text string) (store.VersionedList, string) {
	l := store.VersionedList{}
	for i, line := range strings.Split(text, "\n") {
		words := strings.Fields(line)
		switch len(words) {
		case 0:
			continue
		case 2:
			l = append(l, store.Versioned{Name: words[0], Version: words[1]})
		default:
			return l, fmt.Sprintf("line %d: write a name and a version separated by a space, such as \"node 22.12.0\"", i+1)
		}
	}
	return l, ""
}

// parseImages reads "driver image" lines; blank lines are skipped.
func parseImages(text string) (store.DriverImages, string) {
	m := store.DriverImages{}
	for i, line := range strings.Split(text, "\n") {
		words := strings.Fields(line)
		switch {
		case len(words) == 0:
			continue
		case len(words) != 2:
			return m, fmt.Sprintf("line %d: write a driver and an image separated by a space, such as \"docker devport-base:latest\"", i+1)
		case m[words[0]] != "":
			return m, fmt.Sprintf("line %d: %q has an image already", i+1, words[0])
		}
		m[words[0]] = words[1]
	}
	return m, ""
}

// typeFromForm reads a type's form: the type to save, the form as entered
// (to show again when refused) and what could not be read, by field.
func typeFromForm(r *http.Request, name string, isNew bool) (store.ContainerType, views.ContainerTypeForm, store.Problems) {
	field := func(k string) string { return strings.TrimSpace(r.PostForm.Get(k)) }
	f := views.ContainerTypeForm{
		New: isNew, Name: name, Stack: field("stack"), Description: field("description"), Lifetime: field("lifetime_hours"),
		Images: field("images"), Tools: field("tools"), Repos: field("repos"), SandboxURL: field("sandbox_url"),
		Profiles: r.PostForm["profiles"], Features: r.PostForm["features"],
	}
	if f.Profiles == nil {
		f.Profiles = []string{}
	}
	if f.Features == nil {
		f.Features = []string{}
	}
	problems := store.Problems{}
	t := store.ContainerType{Name: name, Stack: f.Stack, Description: f.Description, SandboxURL: f.SandboxURL, Profiles: f.Profiles, Features: f.Features}
	var msg string
	if t.LifetimeHours, msg = wholeNumber(f.Lifetime, 1, store.MaxContainerLifetimeHours, " of hours"); msg != "" {
		problems.Add("lifetime_hours", msg)
	}
	if t.Images, msg = parseImages(f.Images); msg != "" {
		problems.Add("images", msg)
	}
	if t.Tools, msg = parseVersioned(f.Tools); msg != "" {
		problems.Add("tools", msg)
	}
	if t.Repos, msg = parseVersioned(f.Repos); msg != "" {
		problems.Add("repos", msg)
	}
	return t, f, problems
}

// mergeProblems adds a store validation error's fields to problems (a
// problem already found for a field stays); other errors are returned.
func mergeProblems(problems store.Problems, err error) error {
	var ve *store.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	for k, msg := range ve.Fields {
		problems.Add(k, msg)
	}
	return nil
}

// saveTypeForm saves a type from the catalogue's form (a new one when
// isNew), in one transaction that changes nothing when a field is wrong.
func saveTypeForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore, isNew bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		name := chi.URLParam(r, "name")
		if isNew {
			name = strings.TrimSpace(r.PostForm.Get("name"))
		} else if _, err := s.ContainerType(r.Context(), name); err != nil {
			web.Error(w, r, log, err)
			return
		}
		t, form, problems := typeFromForm(r, name, isNew)
		if isNew {
			if _, err := s.ContainerType(r.Context(), name); err == nil {
				problems.Add("name", fmt.Sprintf("a type called %s exists already; change it in its row", name))
			}
		}
		verb := map[bool]string{true: "Added", false: "Saved"}[isNew]
		saveCatalogue(log, s, sessions, w, r, problems, func(tx *store.Tx) error {
			_, err := tx.SaveContainerType(r.Context(), web.Actor(r), t)
			return err
		}, fmt.Sprintf("%s the %s container type; containers built from now on get it.", verb, name), views.ContainerTypesID,
			func(v *views.CatalogueView, errs map[string]string) { form.Errors = errs; v.RefusedType = &form })
	}
}

// saveCatalogue saves a catalogue form in one transaction that changes
// nothing when a field is wrong (problems found reading the form, or the
// store's), then flashes done and goes back to the section anchor, or shows
// the page again (422) with the refused form filled in by refused.
func saveCatalogue(log *slog.Logger, s *store.Store, sessions *web.SessionStore, w http.ResponseWriter, r *http.Request,
	problems store.Problems, save func(tx *store.Tx) error, done, anchor string, refused func(*views.CatalogueView, map[string]string)) {
	err := s.InTx(r.Context(), func(tx *store.Tx) error {
		if err := save(tx); mergeProblems(problems, err) != nil {
			return err
		}
		return problems.Err()
	})
	if err == nil {
		sessions.Flash(w, r, "success", done)
		web.Redirect(w, r, views.AdminContainersURL+"#"+anchor)
		return
	}
	var ve *store.ValidationError
	if !errors.As(err, &ve) {
		web.Error(w, r, log, err)
		return
	}
	v, err := catalogueView(r.Context(), s)
	if err != nil {
		web.Error(w, r, log, err)
		return
	}
	refused(&v, ve.Fields)
	web.RenderStatus(w, r, log, http.StatusUnprocessableEntity, views.AdminContainersPage(v), nil)
}

// profileFromForm reads a profile's form.
func profileFromForm(r *http.Request, name string, isNew bool) (store.ContainerProfile, views.ContainerProfileForm, store.Problems) {
	field := func(k string) string { return strings.TrimSpace(r.PostForm.Get(k)) }
	f := views.ContainerProfileForm{New: isNew, Name: name, Description: field("description"),
		CPUs: field("cpus"), Memory: field("memory_gb"), Disk: field("disk_gb"), GPUs: field("gpus")}
	problems := store.Problems{}
	p := store.ContainerProfile{Name: name, Description: f.Description}
	for _, n := range []struct {
		field, value string
		to           *int
		lo, hi       int
	}{{"cpus", f.CPUs, &p.CPUs, 1, 256}, {"memory_gb", f.Memory, &p.MemoryGB, 1, 4096}, {"disk_gb", f.Disk, &p.DiskGB, 1, 65536}, {"gpus", f.GPUs, &p.GPUs, 0, 16}} {
		var msg string
		if *n.to, msg = wholeNumber(n.value, n.lo, n.hi, ""); msg != "" {
			problems.Add(n.field, msg)
		}
	}
	return p, f, problems
}

func saveProfileForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore, isNew bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		cur, err := s.ContainerCatalogue(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		name := chi.URLParam(r, "name")
		if isNew {
			name = strings.TrimSpace(r.PostForm.Get("name"))
		} else if _, ok := cur.Profile(name); !ok {
			web.Error(w, r, log, store.ErrNotFound)
			return
		}
		p, form, problems := profileFromForm(r, name, isNew)
		if _, exists := cur.Profile(name); isNew && exists {
			problems.Add("name", fmt.Sprintf("a profile called %s exists already; change it in its row", name))
		}
		verb := map[bool]string{true: "Added", false: "Saved"}[isNew]
		saveCatalogue(log, s, sessions, w, r, problems, func(tx *store.Tx) error {
			_, err := tx.SaveContainerProfile(r.Context(), web.Actor(r), p)
			return err
		}, fmt.Sprintf("%s the %s profile; running containers keep what they were given.", verb, name), views.ContainerProfilesID,
			func(v *views.CatalogueView, errs map[string]string) { form.Errors = errs; v.RefusedProfile = &form })
	}
}

// The capacity page.

// freshnessOr is the freshness limit, the default when unset.
func freshnessOr(d time.Duration) time.Duration {
	if d <= 0 {
		return store.DefaultContainerFreshness
	}
	return d
}

// capacityView loads the capacity page: every region's container hosts
// and pools.
func capacityView(ctx context.Context, s *store.Store, freshness time.Duration) (views.CapacityView, error) {
	v := views.CapacityView{Now: s.Now(), Freshness: freshness}
	regions, err := s.Regions(ctx)
	if err != nil {
		return v, err
	}
	hosts, err := s.Hosts(ctx, "")
	if err != nil {
		return v, err
	}
	pools, err := s.ContainerPools(ctx, v.Now.Add(-freshness))
	if err != nil {
		return v, err
	}
	if v.Catalogue, err = s.ContainerCatalogue(ctx); err != nil {
		return v, err
	}
	if v.Devservers, err = s.CapacityReport(ctx); err != nil {
		return v, err
	}
	for _, rg := range regions {
		rc := views.RegionContainers{Region: rg}
		for _, h := range hosts {
			if h.Region != rg.Code || h.Kind != store.HostKindFor("container") {
				continue
			}
			rc.Hosts.Hosts++
			if h.State != "ready" {
				rc.Hosts.Unavailable++
				continue
			}
			rc.Hosts.CPUs += h.CPUs
			rc.Hosts.UsedCPUs += h.UsedCPUs
			rc.Hosts.MemoryGB += h.MemoryGB
			rc.Hosts.UsedGB += h.UsedMemoryGB
			rc.Hosts.GPUs += h.GPUs
			rc.Hosts.UsedGPUs += h.UsedGPUs
		}
		for _, p := range pools {
			if p.Region == rg.Code {
				rc.Pools = append(rc.Pools, p)
			}
		}
		v.Regions = append(v.Regions, rc)
	}
	return v, nil
}

func adminCapacity(log *slog.Logger, s *store.Store, freshness time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := capacityView(r.Context(), s, freshness)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminCapacityPage(v), views.ContainerPools(v))
	}
}

// setContainerPool saves a pool and, in the same transaction, asks for its
// refill, so a raised target starts filling at once.
func setContainerPool(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, t store.ContainerPoolTarget) error {
	return s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetContainerPool(ctx, who, t); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.RefillContainerPoolArgs{Region: t.Region, Type: t.Type, Profile: t.Profile})
	})
}

// containerPoolPath is the pool named by the URL; an unknown region, type
// or profile is not found.
func containerPoolPath(r *http.Request, s *store.Store) (store.ContainerPoolTarget, error) {
	t := store.ContainerPoolTarget{Region: chi.URLParam(r, "region"), Type: chi.URLParam(r, "type"), Profile: chi.URLParam(r, "profile")}
	if _, err := s.Region(r.Context(), t.Region); err != nil {
		return t, err
	}
	c, err := s.ContainerCatalogue(r.Context())
	if err != nil {
		return t, err
	}
	if _, ok := c.Type(t.Type); !ok {
		return t, fmt.Errorf("container type %q: %w", t.Type, store.ErrNotFound)
	}
	if _, ok := c.Profile(t.Profile); !ok {
		return t, fmt.Errorf("container profile %q: %w", t.Profile, store.ErrNotFound)
	}
	return t, nil
}

// saveContainerPoolForm saves a pool from a row of the capacity page (the
// pool in the URL) or from the add form (isNew: the pool in the form).
func saveContainerPoolForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore, freshness time.Duration, isNew bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		values := map[string]string{}
		for _, k := range []string{"region", "type", "profile", "min", "target", "max"} {
			values[k] = strings.TrimSpace(r.PostForm.Get(k))
		}
		var t store.ContainerPoolTarget
		refused := views.RefusedNewPool
		if isNew {
			t = store.ContainerPoolTarget{Region: values["region"], Type: values["type"], Profile: values["profile"]}
		} else {
			var err error
			if t, err = containerPoolPath(r, s); err != nil {
				web.Error(w, r, log, err)
				return
			}
			refused = store.ContainerPoolKey(t.Region, t.Type, t.Profile)
		}
		problems := store.Problems{}
		for _, n := range []struct {
			field string
			to    *int
		}{{"min", &t.Min}, {"target", &t.Target}, {"max", &t.Max}} {
			var msg string
			if *n.to, msg = wholeNumber(values[n.field], 0, store.MaxPoolTarget, ""); msg != "" {
				problems.Add(n.field, msg)
			}
		}
		err := problems.Err()
		if err == nil {
			err = setContainerPool(r.Context(), s, q, web.Actor(r), t)
		}
		if err == nil {
			msg := fmt.Sprintf("Saved the %s pool: min %d, target %d, max %d. It fills within the region's free capacity.",
				store.ContainerPoolKey(t.Region, t.Type, t.Profile), t.Min, t.Target, t.Max)
			if t.Target == 0 && t.Max == 0 {
				msg = fmt.Sprintf("Removed the %s pool; its ready containers are recycled.", store.ContainerPoolKey(t.Region, t.Type, t.Profile))
			}
			sessions.Flash(w, r, "success", msg)
			web.Redirect(w, r, views.AdminCapacityURL)
			return
		}
		var ve *store.ValidationError
		if !errors.As(err, &ve) {
			web.Error(w, r, log, err)
			return
		}
		v, verr := capacityView(r.Context(), s, freshness)
		if verr != nil {
			web.Error(w, r, log, verr)
			return
		}
		v.Refused, v.Values, v.Errors = refused, values, ve.Fields
		web.RenderStatus(w, r, log, http.StatusUnprocessableEntity, views.AdminCapacityPage(v), nil)
	}
}

// The catalogue and pools API.

type containerTypeRequest struct {
	Stack         string              `json:"stack"`
	Description   string              `json:"description"`
	Images        store.DriverImages  `json:"images"`
	Tools         store.VersionedList `json:"tools"`
	Repos         store.VersionedList `json:"repos"`
	LifetimeHours *int                `json:"lifetime_hours"`
	SandboxURL    string              `json:"sandbox_url"`
	Profiles      []string            `json:"profiles"`
	Features      []string            `json:"features"`
}

// apiSaveContainerType creates or replaces a type: PUT /containers/types/{name}.
func apiSaveContainerType(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in containerTypeRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		t := store.ContainerType{Name: chi.URLParam(r, "name"), Stack: in.Stack, Description: in.Description, Images: in.Images,
			Tools: in.Tools, Repos: in.Repos, SandboxURL: in.SandboxURL, Profiles: in.Profiles, Features: in.Features}
		switch {
		case in.LifetimeHours == nil: // the default lifetime
		case *in.LifetimeHours == 0:
			t.LifetimeHours = -1 // the store reads 0 as the default; a 0 sent is out of range
		default:
			t.LifetimeHours = *in.LifetimeHours
		}
		var out store.ContainerType
		err := s.InTx(r.Context(), func(tx *store.Tx) error {
			var err error
			out, err = tx.SaveContainerType(r.Context(), web.Actor(r), t)
			return err
		})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, out)
	}
}

type containerProfileRequest struct {
	Description string `json:"description"`
	CPUs        *int   `json:"cpus"`
	MemoryGB    *int   `json:"memory_gb"`
	DiskGB      *int   `json:"disk_gb"`
	GPUs        int    `json:"gpus"`
}

// apiSaveContainerProfile creates or replaces a profile: PUT /containers/profiles/{name}.
func apiSaveContainerProfile(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in containerProfileRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		problems := store.Problems{}
		for _, f := range []struct {
			field string
			v     *int
		}{{"cpus", in.CPUs}, {"memory_gb", in.MemoryGB}, {"disk_gb", in.DiskGB}} {
			if f.v == nil {
				problems.Add(f.field, "is required")
			}
		}
		if err := problems.Err(); err != nil {
			web.Error(w, r, log, err)
			return
		}
		p := store.ContainerProfile{Name: chi.URLParam(r, "name"), Description: in.Description, CPUs: *in.CPUs, MemoryGB: *in.MemoryGB, DiskGB: *in.DiskGB, GPUs: in.GPUs}
		var out store.ContainerProfile
		err := s.InTx(r.Context(), func(tx *store.Tx) error {
			var err error
			out, err = tx.SaveContainerProfile(r.Context(), web.Actor(r), p)
			return err
		})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, out)
	}
}

// containerPoolJSON is a pool as the API shows it, with its health.
type containerPoolJSON struct {
	store.ContainerPool
	Health string `json:"health"`
}

func poolOut(p store.ContainerPool) containerPoolJSON {
	return containerPoolJSON{ContainerPool: p, Health: p.Health()}
}

func apiContainerPools(log *slog.Logger, s *store.Store, freshness time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pools, err := s.ContainerPools(r.Context(), s.Now().Add(-freshness))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		out := make([]containerPoolJSON, 0, len(pools))
		for _, p := range pools {
			out = append(out, poolOut(p))
		}
		web.WriteJSON(w, http.StatusOK, page[containerPoolJSON]{Items: out})
	}
}

type containerPoolRequest struct {
	Target *int `json:"target"`
	Min    *int `json:"min"`
	Max    *int `json:"max"`
}

// apiSetContainerPool sets one pool: PUT /containers/pools/{region}/{type}/{profile}
// {target, min?, max?}. An omitted min or max keeps the pool's (a new pool:
// min 0, max the target). Target and max 0 remove the pool.
func apiSetContainerPool(log *slog.Logger, s *store.Store, q Enqueuer, freshness time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in containerPoolRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		t, err := containerPoolPath(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if in.Target == nil {
			web.Error(w, r, log, &store.ValidationError{Fields: map[string]string{"target": "is required"}})
			return
		}
		pools, err := s.ContainerPools(r.Context(), s.Now().Add(-freshness))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		key := store.ContainerPoolKey(t.Region, t.Type, t.Profile)
		i := slices.IndexFunc(pools, func(p store.ContainerPool) bool { return store.ContainerPoolKey(p.Region, p.Type, p.Profile) == key })
		// A new pool's maximum is its target (within bounds, so that a
		// target out of range is what the refusal names).
		t.Target, t.Max = *in.Target, max(0, min(*in.Target, store.MaxPoolTarget))
		if i >= 0 {
			t.Min, t.Max = pools[i].Min, pools[i].Max
		}
		if in.Min != nil {
			t.Min = *in.Min
		}
		if in.Max != nil {
			t.Max = *in.Max
		}
		if err := setContainerPool(r.Context(), s, q, web.Actor(r), t); err != nil {
			web.Error(w, r, log, err)
			return
		}
		if pools, err = s.ContainerPools(r.Context(), s.Now().Add(-freshness)); err != nil {
			web.Error(w, r, log, err)
			return
		}
		out := store.ContainerPool{Region: t.Region, Type: t.Type, Profile: t.Profile} // removed: target and max 0
		if i := slices.IndexFunc(pools, func(p store.ContainerPool) bool { return store.ContainerPoolKey(p.Region, p.Type, p.Profile) == key }); i >= 0 {
			out = pools[i]
		}
		web.WriteJSON(w, http.StatusOK, poolOut(out))
	}
}
