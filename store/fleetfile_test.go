package store_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// fleetDecl is a small fleet: two regions sharing one docker engine and a
// sim hypervisor.
func fleetDecl() store.FleetDeclaration {
	return store.FleetDeclaration{
		Source: "fleet.yaml",
		Regions: []store.Region{
			{Code: "prn", Name: "Prineville", Position: 1},
			{Code: "ftw", Name: "Fort Worth", Position: 2},
		},
		Hosts: []store.Host{
			{Name: "prn-ct01", Region: "prn", Kind: "container", Driver: "docker", CPUs: 16, MemoryGB: 32, DiskGB: 200, Tags: "local"},
			{Name: "prn-ct02", Region: "prn", Kind: "container", Driver: "docker", CPUs: 32, MemoryGB: 64, DiskGB: 400},
			{Name: "ftw-hv01", Region: "ftw", Kind: "hypervisor", Driver: "sim", CPUs: 64, MemoryGB: 256, DiskGB: 4000},
		},
	}
}

// inventory is everything a reconcile may touch, to compare before and after.
type inventory struct {
	Regions  []store.Region
	Hosts    []store.Host
	Flavors  []store.Flavor
	Features []store.Feature
}

func snapshot(t *testing.T, s *store.Store) inventory {
	t.Helper()
	ctx := context.Background()
	var inv inventory
	var err error
	if inv.Regions, err = s.Regions(ctx); err != nil {
		t.Fatal(err)
	}
	if inv.Hosts, err = s.Hosts(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if inv.Flavors, err = s.Flavors(ctx); err != nil {
		t.Fatal(err)
	}
	if inv.Features, err = s.Features(ctx); err != nil {
		t.Fatal(err)
	}
	return inv
}

func reconcile(t *testing.T, s *store.Store, d store.FleetDeclaration) store.FleetChanges {
	t.Helper()
	ch, err := s.ReconcileFleet(context.Background(), d)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	return ch
}

func TestReconcileFleet(t *testing.T) {
	ctx := context.Background()

	t.Run("fills an empty inventory from the file and the demo catalogues", func(t *testing.T) {
		s := storetest.New(t)
		ch := reconcile(t, s, fleetDecl())
		inv := snapshot(t, s)
		if len(inv.Regions) != 2 || inv.Regions[0].Code != "prn" || inv.Regions[0].Status != "active" || inv.Regions[1].Name != "Fort Worth" {
			t.Errorf("regions = %+v", inv.Regions)
		}
		if len(inv.Hosts) != 3 {
			t.Fatalf("hosts = %+v", inv.Hosts)
		}
		ct := host(t, s, "prn-ct01")
		if ct.Driver != "docker" || ct.Kind != "container" || ct.CPUs != 16 || ct.Tags != "local" || ct.State != "ready" {
			t.Errorf("prn-ct01 = %+v", ct)
		}
		if len(inv.Flavors) != len(store.Demo("").Flavors) || len(inv.Features) != len(store.Demo("").Features) {
			t.Errorf("catalogues: %d flavors, %d features", len(inv.Flavors), len(inv.Features))
		}
		if !strings.Contains(strings.Join(ch.Created, ";"), "host prn-ct01") {
			t.Errorf("changes = %+v", ch)
		}
		ev, err := s.AuditEvents(ctx, "host", "prn-ct01")
		if err != nil || len(ev) != 1 || ev[0].Action != "host.create" || !strings.Contains(ev[0].Detail, `"source":"fleet.yaml"`) {
			t.Errorf("audit = %+v, %v", ev, err)
		}
		ev, _ = s.AuditEvents(ctx, "inventory", "fleet")
		if len(ev) != 1 || ev[0].Action != "fleet.reconcile" {
			t.Errorf("reconcile audit = %+v", ev)
		}
	})

	t.Run("changes nothing and audits nothing when the inventory matches", func(t *testing.T) {
		s := storetest.New(t)
		reconcile(t, s, fleetDecl())
		before := snapshot(t, s)
		if ch := reconcile(t, s, fleetDecl()); !ch.Empty() {
			t.Errorf("second reconcile changed %+v", ch)
		}
		if after := snapshot(t, s); !reflect.DeepEqual(before, after) {
			t.Errorf("inventory changed:\n%+v\n%+v", before, after)
		}
		if ev, _ := s.AuditEvents(ctx, "inventory", "fleet"); len(ev) != 1 {
			t.Errorf("reconcile audited %d times, want once", len(ev))
		}
	})

	t.Run("updates sizes, tags, driver and names, and keeps the capacity in use", func(t *testing.T) {
		s := storetest.New(t)
		reconcile(t, s, fleetDecl())
		owner := storetest.User(t, s, "ada@example.com", store.RoleEngineer)
		d, err := reserve(t, s, store.Reservation{Owner: owner, Flavor: "container.medium", Region: "prn"})
		if err != nil {
			t.Fatal(err)
		}
		used := host(t, s, d.Host)
		decl := fleetDecl()
		decl.Regions[0].Name = "Prineville, Oregon"
		for i := range decl.Hosts {
			decl.Hosts[i].CPUs *= 2
			decl.Hosts[i].Tags = "ssd"
		}
		decl.Hosts[2].Driver = "docker" // no devservers there: it may change driver
		ch := reconcile(t, s, decl)
		if len(ch.Updated) != 4 {
			t.Errorf("updated = %v", ch.Updated)
		}
		after := host(t, s, d.Host)
		if after.CPUs != used.CPUs*2 || after.Tags != "ssd" || after.UsedCPUs != used.UsedCPUs || after.UsedMemoryGB != used.UsedMemoryGB || after.UsedCPUs == 0 {
			t.Errorf("host after = %+v, before %+v", after, used)
		}
		if h := host(t, s, "ftw-hv01"); h.Driver != "docker" {
			t.Errorf("ftw-hv01 driver = %s", h.Driver)
		}
		if r, _ := s.Region(ctx, "prn"); r.Name != "Prineville, Oregon" {
			t.Errorf("region name = %q", r.Name)
		}
		ev, _ := s.AuditEvents(ctx, "host", "ftw-hv01")
		if len(ev) != 2 || ev[1].Action != "host.update" || !strings.Contains(ev[1].Detail, `"driver":["sim","docker"]`) {
			t.Errorf("audit = %+v", ev)
		}
	})

	t.Run("retires a host the file no longer declares when it holds no devservers", func(t *testing.T) {
		s := storetest.New(t)
		reconcile(t, s, fleetDecl())
		decl := fleetDecl()
		decl.Hosts = decl.Hosts[:2]
		decl.Regions = decl.Regions[:1]
		ch := reconcile(t, s, decl)
		if h := host(t, s, "ftw-hv01"); h.State != "retired" {
			t.Errorf("ftw-hv01 state = %s", h.State)
		}
		if r, _ := s.Region(ctx, "ftw"); r.Status != "drained" {
			t.Errorf("ftw status = %s", r.Status)
		}
		if got := strings.Join(ch.Retired, ";"); got != "host ftw-hv01;region ftw" {
			t.Errorf("retired = %q", got)
		}
		ev, _ := s.AuditEvents(ctx, "host", "ftw-hv01")
		if len(ev) != 2 || ev[1].Action != "host.retire" {
			t.Errorf("audit = %+v", ev)
		}
		// Declared again, it comes back.
		reconcile(t, s, fleetDecl())
		if h := host(t, s, "ftw-hv01"); h.State != "ready" {
			t.Errorf("re-declared ftw-hv01 state = %s", h.State)
		}
	})

	t.Run("sets a host's state only where the file states one", func(t *testing.T) {
		s := storetest.New(t)
		decl := fleetDecl()
		decl.Hosts[0].State = "maintenance"
		reconcile(t, s, decl)
		if h := host(t, s, "prn-ct01"); h.State != "maintenance" {
			t.Fatalf("state = %s", h.State)
		}
		decl.Hosts[0].State = ""
		reconcile(t, s, decl)
		if h := host(t, s, "prn-ct01"); h.State != "maintenance" {
			t.Errorf("state after a file that states none = %s", h.State)
		}
		decl.Hosts[0].State = "ready"
		reconcile(t, s, decl)
		if h := host(t, s, "prn-ct01"); h.State != "ready" {
			t.Errorf("state after the file says ready = %s", h.State)
		}
	})

	t.Run("upserts declared catalogues", func(t *testing.T) {
		s := storetest.New(t)
		decl := fleetDecl()
		decl.Flavors = []store.Flavor{{Name: "container.medium", Kind: "container", CPUs: 2, MemoryGB: 4, DiskGB: 20, Position: 1}}
		decl.Features = []store.Feature{{Name: "git", Version: "2.48.0"}}
		reconcile(t, s, decl)
		inv := snapshot(t, s)
		if len(inv.Flavors) != 1 || inv.Flavors[0].CPUs != 2 || len(inv.Features) != 1 || inv.Features[0].Version != "2.48.0" {
			t.Errorf("catalogues = %+v %+v", inv.Flavors, inv.Features)
		}
		decl.Flavors[0].CPUs = 4
		decl.Features[0].Version = "2.49.0"
		ch := reconcile(t, s, decl)
		if got := strings.Join(ch.Updated, ";"); got != "flavor container.medium;feature git" {
			t.Errorf("updated = %q", got)
		}
		if f, _ := s.Flavor(ctx, "container.medium"); f.CPUs != 4 {
			t.Errorf("flavor = %+v", f)
		}
	})
}

func TestReconcileFleetRefuses(t *testing.T) {
	ctx := context.Background()
	// setup returns a store whose prn-ct02 holds three live devservers (and a
	// released one, which does not count).
	setup := func(t *testing.T) (*store.Store, []string) {
		s := storetest.New(t)
		decl := fleetDecl()
		decl.Hosts[0].State = "maintenance" // everything lands on prn-ct02
		reconcile(t, s, decl)
		var names []string
		for _, email := range []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"} {
			u := storetest.User(t, s, email, store.RoleEngineer)
			d, err := reserve(t, s, store.Reservation{Owner: u, Flavor: "container.medium", Region: "prn"})
			if err != nil {
				t.Fatal(err)
			}
			if d.Host != "prn-ct02" {
				t.Fatalf("placed on %s", d.Host)
			}
			names = append(names, d.Name)
		}
		err := s.InTx(ctx, func(tx *store.Tx) error {
			d, _, err := tx.StartRelease(ctx, store.System, mustDevserver(t, s, names[3]))
			if err != nil {
				return err
			}
			return tx.MarkReleased(ctx, d.ID)
		})
		if err != nil {
			t.Fatal(err)
		}
		return s, names[:3]
	}
	conflict := func(t *testing.T, s *store.Store, decl store.FleetDeclaration, want ...string) {
		t.Helper()
		before := snapshot(t, s)
		beforeAudit, _ := s.AuditEvents(ctx, "inventory", "fleet")
		_, err := s.ReconcileFleet(ctx, decl)
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "fleet_in_use" {
			t.Fatalf("err = %v, want a fleet_in_use conflict", err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		if after := snapshot(t, s); !reflect.DeepEqual(before, after) {
			t.Errorf("a refused reconcile changed the inventory:\n%+v\n%+v", before, after)
		}
		if afterAudit, _ := s.AuditEvents(ctx, "inventory", "fleet"); len(afterAudit) != len(beforeAudit) {
			t.Error("a refused reconcile was audited as done")
		}
	}

	t.Run("removing a host with devservers, naming them, and changes nothing else", func(t *testing.T) {
		s, names := setup(t)
		decl := fleetDecl()
		decl.Hosts = []store.Host{decl.Hosts[0], decl.Hosts[2]}
		decl.Hosts[0].CPUs = 99                 // would change, but the whole reconcile is refused
		decl.Regions[0].Name = "Somewhere else" // likewise
		conflict(t, s, decl, "fleet file fleet.yaml: host prn-ct02 has 3 devservers ("+strings.Join(names, ", ")+
			"): move or release them before removing it from the fleet file")
		if h := host(t, s, "prn-ct02"); h.State != "ready" {
			t.Errorf("prn-ct02 state = %s", h.State)
		}
	})
	t.Run("moving a host with devservers to another region or driver", func(t *testing.T) {
		s, _ := setup(t)
		decl := fleetDecl()
		decl.Hosts[1].Region = "ftw"
		decl.Hosts[1].Driver = "sim"
		conflict(t, s, decl, `host prn-ct02 has 3 devservers`, `its region cannot change from "prn" to "ftw"`, `its driver cannot change from "docker" to "sim"`)
	})
	t.Run("shrinking a host below what its devservers use", func(t *testing.T) {
		s, _ := setup(t)
		decl := fleetDecl()
		decl.Hosts[1].CPUs = 4
		conflict(t, s, decl, "host prn-ct02 has 3 devservers", "cpus 4 is less than the 12 in use")
	})
	t.Run("names the first devservers of a long list", func(t *testing.T) {
		s, names := setup(t)
		for _, email := range []string{"e@example.com", "f@example.com", "g@example.com"} {
			u := storetest.User(t, s, email, store.RoleEngineer)
			d, err := reserve(t, s, store.Reservation{Owner: u, Flavor: "container.medium", Region: "prn"})
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, d.Name)
		}
		decl := fleetDecl()
		decl.Hosts = decl.Hosts[:1]
		decl.Hosts[0].State = "maintenance"
		conflict(t, s, decl, "host prn-ct02 has 6 devservers ("+strings.Join(names[:5], ", ")+", …)")
	})
}

func mustDevserver(t *testing.T, s *store.Store, name string) store.Devserver {
	t.Helper()
	d, err := s.Devserver(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestReconcileFleetKeepsContainerHosts(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	reconcile(t, s, fleetDecl())
	if _, err := s.SeedContainerCatalogue(ctx, store.DemoContainers([]string{"prn", "ftw"})); err != nil {
		t.Fatal(err)
	}
	ann := storetest.User(t, s, "ann@example.com")
	var c store.Container
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		c, err = tx.RequestContainer(ctx, store.System, store.ContainerRequest{Owner: ann, Type: "web", Profile: "medium", Region: "prn"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	d := fleetDecl()
	d.Hosts = slices.DeleteFunc(d.Hosts, func(h store.Host) bool { return h.Name == c.Host })
	_, err = s.ReconcileFleet(ctx, d)
	var ce *store.ConflictError
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, "host "+c.Host+" has 1 container ("+c.Name+")") {
		t.Fatalf("removing the host of a live container: %v", err)
	}
	if !reflect.DeepEqual(snapshot(t, s), before) {
		t.Error("a refused reconcile changed the inventory")
	}
}
