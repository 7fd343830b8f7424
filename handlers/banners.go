package handlers

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// bannerID reads the {id} of a banner; one that is not a number does not exist.
func bannerID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, store.ErrNotFound
	}
	return id, nil
}

func adminBannersView(r *http.Request, s *store.Store, f views.BannerForm) (views.AdminBannersView, error) {
	v := views.AdminBannersView{Form: f, Now: s.Now()}
	var err error
	if v.Banners, err = s.Banners(r.Context()); err != nil {
		return v, err
	}
	v.Regions, err = s.Regions(r.Context())
	return v, err
}

func adminBanners(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := adminBannersView(r, s, views.BannerForm{Severity: "info", Audience: "all"})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminBannersPage(v), nil)
	}
}

func adminBannerEdit(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := bannerID(r)
		var b store.Banner
		if err == nil {
			b, err = s.Banner(r.Context(), id)
		}
		var regions []store.Region
		if err == nil {
			regions, err = s.Regions(r.Context())
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminBannerPage(views.BannerFormOf(b), regions), nil)
	}
}

// bannerFormInput reads the banner form; times are UTC datetime-local values.
func bannerFormInput(r *http.Request, id int64) (views.BannerForm, store.BannerInput, store.Problems) {
	f := views.BannerForm{ID: id, Message: r.PostForm.Get("message"), Severity: r.PostForm.Get("severity"), Region: r.PostForm.Get("region"),
		Audience: r.PostForm.Get("audience"), StartsAt: strings.TrimSpace(r.PostForm.Get("starts_at")), EndsAt: strings.TrimSpace(r.PostForm.Get("ends_at")),
		SevID: strings.TrimSpace(r.PostForm.Get("sev_id"))}
	in := store.BannerInput{Message: f.Message, Severity: f.Severity, Region: f.Region, Audience: f.Audience}
	p := store.Problems{}
	parse := func(field, v string) *time.Time {
		if v == "" {
			return nil
		}
		for _, layout := range []string{views.BannerFormTime, "2006-01-02T15:04:05", time.RFC3339} {
			if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
				t = t.UTC()
				return &t
			}
		}
		p.Add(field, "is not a date and time such as 2026-12-01T09:00")
		return nil
	}
	in.StartsAt = parse("starts_at", f.StartsAt)
	in.EndsAt = parse("ends_at", f.EndsAt)
	if f.SevID != "" {
		n, err := strconv.ParseInt(f.SevID, 10, 64)
		if err != nil {
			p.Add("sev_id", "is not a SEV number")
		} else {
			in.SevID = &n
		}
	}
	return f, in, p
}

func saveBannerForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore, create bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var id int64
		if !create {
			var err error
			if id, err = bannerID(r); err != nil {
				web.Error(w, r, log, err)
				return
			}
		}
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		f, in, problems := bannerFormInput(r, id)
		err := problems.Err()
		var b store.Banner
		if err == nil {
			err = s.InTx(r.Context(), func(tx *store.Tx) error {
				if create {
					b, err = tx.CreateBanner(r.Context(), web.Actor(r), in)
				} else {
					b, err = tx.UpdateBanner(r.Context(), web.Actor(r), id, in)
				}
				return err
			})
		}
		if err == nil {
			verb := "Saved"
			if create {
				verb = "Created"
			}
			sessions.Flash(w, r, "success", verb+" banner "+strconv.FormatInt(b.ID, 10)+" ("+b.Status(s.Now())+").")
			web.Redirect(w, r, views.AdminBannersURL)
			return
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		f.Errors = fields
		if message != "" {
			f.Errors = map[string]string{"message": message}
		}
		if create {
			v, verr := adminBannersView(r, s, f)
			if verr != nil {
				web.Error(w, r, log, verr)
				return
			}
			web.RenderStatus(w, r, log, status, views.AdminBannersPage(v), nil)
			return
		}
		regions, rerr := s.Regions(r.Context())
		if rerr != nil {
			web.Error(w, r, log, rerr)
			return
		}
		web.RenderStatus(w, r, log, status, views.AdminBannerPage(f, regions), nil)
	}
}

func deleteBanner(r *http.Request, s *store.Store) (store.Banner, error) {
	id, err := bannerID(r)
	if err != nil {
		return store.Banner{}, err
	}
	var b store.Banner
	err = s.InTx(r.Context(), func(tx *store.Tx) error {
		var err error
		b, err = tx.DeleteBanner(r.Context(), web.Actor(r), id)
		return err
	})
	return b, err
}

func deleteBannerForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := deleteBanner(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Deleted banner "+strconv.FormatInt(b.ID, 10)+".")
		web.Redirect(w, r, views.AdminBannersURL)
	}
}

// The API.

// apiListBanners lists the banners active for the caller; an admin may ask
// for every banner with ?all=1.
func apiListBanners(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		var bs []store.Banner
		var err error
		switch all := r.URL.Query().Get("all"); {
		case all == "1" && !u.Has(store.RoleAdmin):
			err = &web.RequestError{Status: http.StatusForbidden, Code: "forbidden", Message: "Only admins list every banner."}
		case all == "1":
			bs, err = s.Banners(r.Context())
		case all != "" && all != "0":
			err = web.BadRequest("invalid_all", "all must be 1 or 0.")
		default:
			bs, err = s.ActiveBanners(r.Context(), u.ID)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if bs == nil {
			bs = []store.Banner{}
		}
		web.WriteJSON(w, http.StatusOK, page[store.Banner]{Items: bs})
	}
}

func apiCreateBanner(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in store.BannerInput
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		var b store.Banner
		err := s.InTx(r.Context(), func(tx *store.Tx) error {
			var err error
			b, err = tx.CreateBanner(r.Context(), web.Actor(r), in)
			return err
		})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, b)
	}
}

// apiPatchBanner changes the fields the body names: they are decoded over
// the banner as it is (null clears ends_at and sev_id; "" for region makes it global).
func apiPatchBanner(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := bannerID(r)
		var cur store.Banner
		if err == nil {
			cur, err = s.Banner(r.Context(), id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		in := cur.Input()
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		var b store.Banner
		err = s.InTx(r.Context(), func(tx *store.Tx) error {
			var err error
			b, err = tx.UpdateBanner(r.Context(), web.Actor(r), id, in)
			return err
		})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, b)
	}
}

func apiDeleteBanner(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := deleteBanner(r, s); err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
