package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// n1Inventory is three regions: "tst" with one ready hypervisor and one
// in maintenance, "alt" whose single hypervisor takes one vm.large or four
// vm.small (not both), and "drn", draining, with a big hypervisor that
// absorbs nothing.
func n1Inventory() store.DemoInventory {
	demo := store.Demo("sim")
	inv := store.DemoInventory{Features: demo.Features}
	inv.Regions = []store.Region{
		{Code: "tst", Name: "Test", Status: "active", Position: 1},
		{Code: "alt", Name: "Alternative", Status: "active", Position: 2},
		{Code: "drn", Name: "Draining", Status: "draining", Position: 3},
	}
	for _, f := range demo.Flavors {
		if f.Name == "vm.small" || f.Name == "vm.large" {
			inv.Flavors = append(inv.Flavors, f)
		}
	}
	inv.Hosts = []store.Host{
		{Name: "tst-hv01", Region: "tst", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 16, MemoryGB: 64, DiskGB: 1000},
		{Name: "tst-hv02", Region: "tst", Kind: "hypervisor", Driver: "sim", State: "maintenance", CPUs: 64, MemoryGB: 256, DiskGB: 4000},
		{Name: "alt-hv01", Region: "alt", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 8, MemoryGB: 32, DiskGB: 400},
		{Name: "drn-hv01", Region: "drn", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 64, MemoryGB: 256, DiskGB: 4000},
	}
	return inv
}

type n1JSON struct {
	Regions []struct {
		Code    string `json:"code"`
		Status  string `json:"status"`
		Flavors []struct {
			Flavor string `json:"flavor"`
			Total  int    `json:"total"`
			Used   int    `json:"used"`
			Free   int    `json:"free"`
			Pooled int    `json:"pooled"`
		} `json:"flavors"`
		Containers map[string]int `json:"containers"`
	} `json:"regions"`
	NMinus1 []struct {
		Region     string `json:"region"`
		Absorbable bool   `json:"absorbable"`
		Shortfalls []struct {
			Flavor    string `json:"flavor"`
			Resource  string `json:"resource"`
			Needed    int    `json:"needed"`
			Available int    `json:"available"`
			Short     int    `json:"short"`
		} `json:"shortfalls"`
	} `json:"n_minus_1"`
}

// seedN1 reserves one vm.large and two vm.small in tst and waits for them.
func seedN1(t *testing.T, srv *handlertest.Server) {
	t.Helper()
	owner := srv.Token(t, "owner@example.com")
	for _, flavor := range []string{"vm.large", "vm.small", "vm.small"} {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: owner, Body: `{"flavor":"` + flavor + `","region":"tst"}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("reserve %s: %d %s", flavor, resp.StatusCode, body)
		}
		srv.WaitState(t, decode[devserverJSON](t, body).Name, store.StateReady)
	}
}

func TestCapacityN1API(t *testing.T) {
	inv := n1Inventory()
	srv := handlertest.New(t, handlertest.Options{Inventory: &inv})
	seedN1(t, srv)
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)

	resp, body := srv.Do(t, nil, handlertest.Request{Method: "GET", Path: "/api/v1/capacity", Token: admin})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("capacity: %d %s", resp.StatusCode, body)
	}
	var got n1JSON
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	t.Run("counts each region's slots on its ready hosts only", func(t *testing.T) {
		if len(got.Regions) != 3 || got.Regions[0].Code != "tst" || got.Regions[2].Status != "draining" {
			t.Fatalf("regions = %+v", got.Regions)
		}
		tst := got.Regions[0]
		// tst-hv01 (16 CPUs, 64 GB) alone counts; the host in maintenance has
		// nothing. It holds 8+2+2 CPUs: room for 2 more vm.small, no vm.large.
		want := map[string][4]int{"vm.small": {8, 2, 2, 0}, "vm.large": {2, 1, 0, 0}}
		for _, f := range tst.Flavors {
			if w := want[f.Flavor]; [4]int{f.Total, f.Used, f.Free, f.Pooled} != w {
				t.Errorf("tst %s = total %d, used %d, free %d, pooled %d; want %v", f.Flavor, f.Total, f.Used, f.Free, f.Pooled, w)
			}
		}
		if _, ok := tst.Containers["cpus"]; !ok {
			t.Errorf("tst containers = %v, want the containers' load", tst.Containers)
		}
	})
	t.Run("tells where the other active regions cannot absorb a region", func(t *testing.T) {
		byRegion := map[string]int{}
		for i, n := range got.NMinus1 {
			byRegion[n.Region] = i
		}
		tst := got.NMinus1[byRegion["tst"]]
		// alt's one host takes the vm.large; the vm.small find no room left,
		// and drn is draining: it absorbs nothing.
		if tst.Absorbable || len(tst.Shortfalls) != 1 {
			t.Fatalf("tst N-1 = %+v, want one shortfall", tst)
		}
		if s := tst.Shortfalls[0]; s.Flavor != "vm.small" || s.Needed != 2 || s.Available != 0 || s.Short != 2 {
			t.Errorf("tst shortfall = %+v, want vm.small needed 2, available 0, short 2", s)
		}
		for _, code := range []string{"alt", "drn"} {
			if n := got.NMinus1[byRegion[code]]; !n.Absorbable || n.Shortfalls == nil || len(n.Shortfalls) != 0 {
				t.Errorf("%s N-1 = %+v, want absorbable with an empty list of shortfalls", code, n)
			}
		}
	})
	t.Run("is current at every request", func(t *testing.T) {
		// Free room on drn counts once drn is active again.
		if _, err := srv.Store.WriteDB().ExecContext(context.Background(), `UPDATE regions SET status = 'active' WHERE code = 'drn'`); err != nil {
			t.Fatal(err)
		}
		_, body := srv.Do(t, nil, handlertest.Request{Method: "GET", Path: "/api/v1/capacity", Token: admin})
		var now n1JSON
		if err := json.Unmarshal([]byte(body), &now); err != nil {
			t.Fatal(err)
		}
		if !now.NMinus1[0].Absorbable {
			t.Errorf("tst N-1 with drn active = %+v, want absorbable", now.NMinus1[0])
		}
	})
}

func TestCapacityN1Page(t *testing.T) {
	inv := n1Inventory()
	srv := handlertest.New(t, handlertest.Options{Inventory: &inv})
	seedN1(t, srv)
	admin := srv.SignIn(t, "admin@example.com", store.RoleAdmin)

	resp, body := srv.Do(t, admin, handlertest.Request{Method: "GET", Path: "/admin/capacity"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("capacity page: %d", resp.StatusCode)
	}
	doc := handlertest.Doc(t, body)
	t.Run("shows each region's slots by flavour", func(t *testing.T) {
		row := doc.Find(`table.devserver-capacity[data-region="tst"] tr[data-flavor="vm.small"]`)
		got := []string{row.Find("[data-total]").Text(), row.Find("[data-used]").Text(), row.Find("[data-free]").Text(), row.Find("[data-pooled]").Text()}
		if want := []string{"8", "2", "2", "0"}; !slices.Equal(got, want) {
			t.Errorf("tst vm.small row = %v, want %v", got, want)
		}
	})
	t.Run("shows the N-1 table with the shortfall", func(t *testing.T) {
		tst := doc.Find(`table.n-minus-1 tr[data-region="tst"]`)
		if tst.AttrOr("data-absorbable", "") != "no" {
			t.Errorf("tst row says absorbable %q, want no", tst.AttrOr("data-absorbable", ""))
		}
		if got := strings.TrimSpace(tst.Find("[data-shortfall]").Text()); got != "vm.small: short by 2" {
			t.Errorf("tst shortfall = %q, want %q", got, "vm.small: short by 2")
		}
		if got := strings.TrimSpace(tst.Find("td").First().Text()); got != "alt" {
			t.Errorf("tst absorbed by %q, want alt (drn is draining)", got)
		}
		alt := doc.Find(`table.n-minus-1 tr[data-region="alt"]`)
		if alt.AttrOr("data-absorbable", "") != "yes" || !strings.Contains(alt.Text(), "Yes") {
			t.Errorf("alt row = %q, want absorbable", alt.Text())
		}
	})
	t.Run("draws the charts with titles, a legend and a table", func(t *testing.T) {
		for _, id := range []string{"chart-n1-cpus", "chart-n1-memory"} {
			fig := doc.Find("figure#" + id)
			if fig.Find("svg title").First().Text() == "" || fig.Find("g.chart-legend text").Length() != 2 {
				t.Errorf("%s: no title or legend: %q", id, fig.Text())
			}
			if fig.Find("svg [style]").Length() != 0 {
				t.Errorf("%s has inline style (the CSP refuses it)", id)
			}
			// tst's load is 8+2+2 CPUs; alt's 8 free CPUs are the others'.
			var cells []string
			fig.Find(`table tr`).Each(func(_ int, tr *goquery.Selection) {
				if strings.TrimSpace(tr.Find("th").Text()) == "tst" {
					tr.Find("td").Each(func(_ int, td *goquery.Selection) { cells = append(cells, td.Text()) })
				}
			})
			want := map[string][]string{"chart-n1-cpus": {"12", "8"}, "chart-n1-memory": {"48", "32"}}[id]
			if !slices.Equal(cells, want) {
				t.Errorf("%s: tst row = %v, want %v", id, cells, want)
			}
		}
	})
}
