package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// The policies admins set (latencies between regions, lease policies by
// flavour, quotas by role) and the home region each person sets for
// themselves. Routes put the admin ones behind web.RequireRole(admin).

// policiesView loads what the policies page shows.
func policiesView(ctx context.Context, s *store.Store) (views.PoliciesView, error) {
	var v views.PoliciesView
	var err error
	if v.Regions, err = s.Regions(ctx); err != nil {
		return v, err
	}
	latencies, err := s.AllLatencies(ctx)
	if err != nil {
		return v, err
	}
	v.Latencies = map[string]map[string]int{}
	for _, l := range latencies {
		if v.Latencies[l.From] == nil {
			v.Latencies[l.From] = map[string]int{}
		}
		v.Latencies[l.From][l.To] = l.MS
	}
	if v.Flavors, err = s.Flavors(ctx); err != nil {
		return v, err
	}
	if v.Leases, err = s.LeasePolicies(ctx, v.Flavors); err != nil {
		return v, err
	}
	v.Quotas, err = s.Quotas(ctx)
	return v, err
}

func adminPolicies(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := policiesView(r.Context(), s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminPoliciesPage(v), nil)
	}
}

// policyForm is one form of the policies page: save reads the posted
// fields and writes them in tx, adding what is wrong to problems by field.
type policyForm struct {
	section string // the form's section id on the page
	saved   string // the flash after a save
	save    func(ctx context.Context, tx *store.Tx, who store.Actor, cur views.PoliciesView, form map[string]string, problems store.Problems) error
}

// savePolicyForm saves a policies form in one transaction. When any field
// is wrong the transaction rolls back, so nothing changes, and the page
// shows again (422) with what was entered and the problems by field.
func savePolicyForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore, f policyForm) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		form := map[string]string{}
		for field, vs := range r.PostForm {
			if len(vs) > 0 {
				form[field] = strings.TrimSpace(vs[0])
			}
		}
		cur, err := policiesView(r.Context(), s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		problems := store.Problems{}
		err = s.InTx(r.Context(), func(tx *store.Tx) error {
			if err := f.save(r.Context(), tx, web.Actor(r), cur, form, problems); err != nil {
				return err
			}
			return problems.Err()
		})
		if err == nil {
			sessions.Flash(w, r, "success", f.saved)
			web.Redirect(w, r, views.AdminPoliciesURL+"#"+f.section)
			return
		}
		var ve *store.ValidationError
		if !errors.As(err, &ve) {
			web.Error(w, r, log, err)
			return
		}
		v, err := policiesView(r.Context(), s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v.Refused, v.Values, v.Errors = f.section, form, ve.Fields
		web.RenderStatus(w, r, log, http.StatusUnprocessableEntity, views.AdminPoliciesPage(v), nil)
	}
}

// addProblems records a store validation error's problems under one form
// field, in the order of fields (the first one wins); other errors are
// returned.
func addProblems(problems store.Problems, field string, err error, fields ...string) error {
	var ve *store.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	for _, f := range fields {
		if msg, ok := ve.Fields[f]; ok {
			problems.Add(field, msg)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(ve.Fields)) {
		problems.Add(field, ve.Fields[f])
	}
	return nil
}

// wholeNumber parses a form value as a whole number, or says what it must be.
func wholeNumber(v string, lo, hi int, unit string) (int, string) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Sprintf("must be a whole number%s from %d to %d", unit, lo, hi)
	}
	return n, ""
}

// fieldsWithPrefix lists the form's fields that start with prefix, sorted,
// each with the rest of its name.
func fieldsWithPrefix(form map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for field := range form {
		if rest, ok := strings.CutPrefix(field, prefix); ok {
			out[field] = rest
		}
	}
	return out
}

var latencyForm = policyForm{
	section: views.LatenciesID,
	saved:   "Saved the latencies between regions.",
	save: func(ctx context.Context, tx *store.Tx, who store.Actor, cur views.PoliciesView, form map[string]string, problems store.Problems) error {
		fields := fieldsWithPrefix(form, "latency-")
		for _, field := range slices.Sorted(maps.Keys(fields)) {
			a, b, ok := strings.Cut(fields[field], "/")
			if !ok {
				problems.Add(field, "is not a pair of regions (from/to)")
				continue
			}
			v := form[field]
			_, known := cur.Latencies[a][b]
			if v == "" && !known {
				continue // an unknown latency left unknown
			}
			ms, msg := wholeNumber(v, 0, store.MaxLatencyMS, " of milliseconds")
			if msg != "" {
				problems.Add(field, msg)
				continue
			}
			if err := addProblems(problems, field, tx.SetRegionLatency(ctx, who, a, b, ms), "from", "to", "ms"); err != nil {
				return err
			}
		}
		return nil
	},
}

var leaseForm = policyForm{
	section: views.LeasesID,
	saved:   "Saved the lease policies.",
	save: func(ctx context.Context, tx *store.Tx, who store.Actor, cur views.PoliciesView, form map[string]string, problems store.Problems) error {
		flavors := map[string]bool{}
		for _, prefix := range []string{"max_days-", "permanent-"} {
			for _, f := range fieldsWithPrefix(form, prefix) {
				flavors[f] = true
			}
		}
		for _, flavor := range slices.Sorted(maps.Keys(flavors)) {
			daysField, permField := views.MaxDaysField(flavor), views.PermanentField(flavor)
			p, known := cur.Leases[flavor]
			days, permanent := p.MaxLeaseDays, p.PermanentChoice()
			if v, ok := form[daysField]; ok || !known {
				var msg string
				if days, msg = wholeNumber(v, 1, store.MaxPolicyLeaseDays, " of days"); msg != "" {
					problems.Add(daysField, msg)
					continue
				}
			}
			if v, ok := form[permField]; ok {
				permanent = v
			}
			_, err := tx.SetFlavorLeasePolicy(ctx, who, flavor, days, permanent)
			var ve *store.ValidationError
			if errors.As(err, &ve) {
				if msg, ok := ve.Fields["flavor"]; ok {
					problems.Add(daysField, msg)
				}
				if msg, ok := ve.Fields["max_days"]; ok {
					problems.Add(daysField, msg)
				}
				if msg, ok := ve.Fields["permanent"]; ok {
					problems.Add(permField, msg)
				}
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	},
}

var quotaForm = policyForm{
	section: views.QuotasID,
	saved:   "Saved the quotas.",
	save: func(ctx context.Context, tx *store.Tx, who store.Actor, cur views.PoliciesView, form map[string]string, problems store.Problems) error {
		roles := map[string]bool{}
		for _, prefix := range []string{"devservers-", "gpu_devservers-", "containers-"} {
			for _, r := range fieldsWithPrefix(form, prefix) {
				roles[r] = true
			}
		}
		for _, role := range slices.Sorted(maps.Keys(roles)) {
			dsField, gpuField, ctField := views.DevserversQuotaField(role), views.GPUQuotaField(role), views.ContainersQuotaField(role)
			q := store.Quota{Role: role}
			for _, c := range cur.Quotas {
				if c.Role == role {
					q = c
				}
			}
			bad := false
			if v, ok := form[dsField]; ok {
				var msg string
				if q.Devservers, msg = wholeNumber(v, 0, store.MaxRoleDevservers, ""); msg != "" {
					problems.Add(dsField, msg)
					bad = true
				}
			}
			if v, ok := form[gpuField]; ok {
				var msg string
				if q.GPUDevservers, msg = wholeNumber(v, 0, store.MaxRoleGPUDevservers, ""); msg != "" {
					problems.Add(gpuField, msg)
					bad = true
				}
			}
			if v, ok := form[ctField]; ok {
				var msg string
				if q.Containers, msg = wholeNumber(v, 0, store.MaxRoleContainers, ""); msg != "" {
					problems.Add(ctField, msg)
					bad = true
				}
			}
			if bad {
				continue
			}
			err := tx.SetRoleQuota(ctx, who, q)
			var ve *store.ValidationError
			if errors.As(err, &ve) {
				for key, field := range map[string]string{"role": dsField, "devservers": dsField, "gpu_devservers": gpuField, "containers": ctField} {
					if msg, ok := ve.Fields[key]; ok {
						problems.Add(field, msg)
					}
				}
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	},
}

// The policies API: every GET returns the whole table.

func apiLatencies(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ls, err := s.AllLatencies(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if ls == nil {
			ls = []store.RegionLatency{}
		}
		web.WriteJSON(w, http.StatusOK, page[store.RegionLatency]{Items: ls})
	}
}

type latencyRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
	MS   *int   `json:"ms"`
}

// apiSetLatency sets the latency between two regions, both ways:
// PUT /policies/latencies {from, to, ms}.
func apiSetLatency(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in latencyRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		if in.MS == nil {
			web.Error(w, r, log, &store.ValidationError{Fields: map[string]string{"ms": "is required"}})
			return
		}
		err := s.InTx(r.Context(), func(tx *store.Tx) error {
			return tx.SetRegionLatency(r.Context(), web.Actor(r), in.From, in.To, *in.MS)
		})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, store.RegionLatency{From: in.From, To: in.To, MS: *in.MS})
	}
}

// leasePolicyJSON is a flavour's lease policy as the API shows and takes it.
type leasePolicyJSON struct {
	Flavor    string `json:"flavor"`
	MaxDays   int    `json:"max_days"`
	Permanent string `json:"permanent"`
}

func leasePolicyOut(p store.LeasePolicy) leasePolicyJSON {
	return leasePolicyJSON{Flavor: p.Flavor, MaxDays: p.MaxLeaseDays, Permanent: p.PermanentChoice()}
}

func apiLeasePolicies(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		flavors, err := s.Flavors(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		ps, err := s.LeasePolicies(r.Context(), flavors)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		out := make([]leasePolicyJSON, 0, len(flavors))
		for _, f := range flavors {
			out = append(out, leasePolicyOut(ps[f.Name]))
		}
		web.WriteJSON(w, http.StatusOK, page[leasePolicyJSON]{Items: out})
	}
}

func apiLeasePolicy(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f, err := s.Flavor(r.Context(), chi.URLParam(r, "flavor"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		p, err := s.LeasePolicy(r.Context(), f)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, leasePolicyOut(p))
	}
}

type leasePolicyRequest struct {
	MaxDays   *int    `json:"max_days"`
	Permanent *string `json:"permanent"`
}

// apiSetLeasePolicy sets a flavour's lease policy:
// PUT /policies/leases/{flavor} {max_days, permanent: nobody|admins|everyone}.
func apiSetLeasePolicy(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in leasePolicyRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		f, err := s.Flavor(r.Context(), chi.URLParam(r, "flavor"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		problems := store.Problems{}
		if in.MaxDays == nil {
			problems.Add("max_days", "is required")
		}
		if in.Permanent == nil {
			problems.Add("permanent", "is required: nobody, admins or everyone")
		}
		if err := problems.Err(); err != nil {
			web.Error(w, r, log, err)
			return
		}
		var p store.LeasePolicy
		err = s.InTx(r.Context(), func(tx *store.Tx) error {
			var err error
			p, err = tx.SetFlavorLeasePolicy(r.Context(), web.Actor(r), f.Name, *in.MaxDays, *in.Permanent)
			return err
		})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, leasePolicyOut(p))
	}
}

func apiQuotas(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		qs, err := s.Quotas(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, page[store.Quota]{Items: qs})
	}
}

// roleQuota is the quota of the role in the URL; an unknown role is not found.
func roleQuota(ctx context.Context, s *store.Store, role string) (store.Quota, error) {
	qs, err := s.Quotas(ctx)
	if err != nil {
		return store.Quota{}, err
	}
	for _, q := range qs {
		if q.Role == role {
			return q, nil
		}
	}
	return store.Quota{}, store.ErrNotFound
}

func apiQuota(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := roleQuota(r.Context(), s, chi.URLParam(r, "role"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, q)
	}
}

type quotaRequest struct {
	Devservers    *int `json:"devservers"`
	GPUDevservers *int `json:"gpu_devservers"`
	Containers    *int `json:"containers"`
}

// apiSetQuota sets a role's quota: PUT /policies/quotas/{role}
// {devservers, gpu_devservers, containers?}. An omitted containers keeps the
// role's current one, so a client that predates it changes nothing there.
func apiSetQuota(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in quotaRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		q, err := roleQuota(r.Context(), s, chi.URLParam(r, "role"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		problems := store.Problems{}
		if in.Devservers == nil {
			problems.Add("devservers", "is required")
		}
		if in.GPUDevservers == nil {
			problems.Add("gpu_devservers", "is required")
		}
		if err := problems.Err(); err != nil {
			web.Error(w, r, log, err)
			return
		}
		q.Devservers, q.GPUDevservers = *in.Devservers, *in.GPUDevservers
		if in.Containers != nil {
			q.Containers = *in.Containers
		}
		err = s.InTx(r.Context(), func(tx *store.Tx) error { return tx.SetRoleQuota(r.Context(), web.Actor(r), q) })
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, q)
	}
}

// The home region.

func setHomeRegion(ctx context.Context, s *store.Store, who store.Actor, u store.User, region string) (store.User, error) {
	var out store.User
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		out, err = tx.SetHomeRegion(ctx, who, u, region)
		return err
	})
	return out, err
}

// saveHomeRegion sets the caller's home region from the profile's form.
func saveHomeRegion(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		u := *web.User(r)
		region := strings.TrimSpace(r.PostForm.Get("home_region"))
		updated, err := setHomeRegion(r.Context(), s, web.Actor(r), u, region)
		if err == nil {
			name := updated.HomeRegion
			if rg, err := s.Region(r.Context(), updated.HomeRegion); err == nil {
				name = rg.Name + " (" + rg.Code + ")"
			}
			sessions.Flash(w, r, "success", "Your home region is now "+name+". The reservation form lists regions nearest to it first.")
			web.Redirect(w, r, views.ProfileURL)
			return
		}
		fields, _, status, ok := web.FormProblem(err)
		if !ok || status != http.StatusUnprocessableEntity {
			web.Error(w, r, log, err)
			return
		}
		v, verr := profileView(r.Context(), s, u)
		if verr != nil {
			web.Error(w, r, log, verr)
			return
		}
		v.Home.Value, v.Home.Error = region, fields["home_region"]
		web.RenderStatus(w, r, log, status, views.ProfilePage(v), nil)
	}
}

type meRequest struct {
	HomeRegion *string `json:"home_region"`
}

// apiPatchMe changes what a person sets about themselves: PATCH /me {home_region}.
func apiPatchMe(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in meRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		u := *web.User(r)
		if in.HomeRegion != nil {
			var err error
			if u, err = setHomeRegion(r.Context(), s, web.Actor(r), u, *in.HomeRegion); err != nil {
				web.Error(w, r, log, err)
				return
			}
		}
		web.WriteJSON(w, http.StatusOK, u)
	}
}
