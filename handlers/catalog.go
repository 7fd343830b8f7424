package handlers

import (
	"log/slog"
	"net/http"

	"github.com/devport/devport/store"
	"github.com/devport/devport/web"
)

func apiMe(w http.ResponseWriter, r *http.Request) {
	web.WriteJSON(w, http.StatusOK, web.User(r))
}

type regionView struct {
	store.Region
	Flavors map[string]flavorRoom `json:"flavors"`
}

type flavorRoom struct {
	Total int `json:"total"`
	Used  int `json:"used"`
	Free  int `json:"free"`
	// PoolReady is how many pooled devservers of the flavour are ready there.
	PoolReady int `json:"pool_ready"`
}

// apiRegions lists regions with, per flavour, how many devservers of it the
// region could hold empty (total), holds now (used) and can still take (free).
func apiRegions(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		regions, err := s.Regions(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		flavors, err := s.Flavors(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		hosts, err := s.Hosts(r.Context(), "")
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		used, err := s.DevserverCounts(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		ready, err := s.PoolReady(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		out := make([]regionView, 0, len(regions))
		for _, rg := range regions {
			var in, empty []store.Host
			for _, h := range hosts {
				if h.Region == rg.Code {
					in = append(in, h)
					h.UsedCPUs, h.UsedMemoryGB, h.UsedDiskGB, h.UsedGPUs = 0, 0, 0, 0
					empty = append(empty, h)
				}
			}
			v := regionView{Region: rg, Flavors: map[string]flavorRoom{}}
			for _, f := range flavors {
				v.Flavors[f.Name] = flavorRoom{Total: store.FreeSlots(f, empty), Used: used[rg.Code][f.Name], Free: store.FreeSlots(f, in),
					PoolReady: ready[rg.Code][f.Name]}
			}
			out = append(out, v)
		}
		web.WriteJSON(w, http.StatusOK, page[regionView]{Items: out})
	}
}

func apiFlavors(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fs, err := s.Flavors(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, page[store.Flavor]{Items: fs})
	}
}

func apiFeatures(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fs, err := s.Features(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, page[store.Feature]{Items: fs})
	}
}
