package fleetfile_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/devport/devport/fleet/fleetfile"
)

var drivers = []string{"sim", "docker"}

const good = `regions:
  - code: prn
    name: Prineville, Oregon
  - code: ftw
hosts:
  - &ct
    name: prn-ct01
    region: prn
    kind: container
    driver: docker
    endpoint: unix:///var/run/docker.sock
    cpus: 8
    memory_gb: 16
    disk_gb: 100
    tags: [ssd, local]
  - <<: *ct
    name: ftw-ct01
    region: ftw
  - name: ftw-hv01
    region: ftw
    kind: hypervisor
    driver: sim
    state: maintenance
    cpus: 64
    memory_gb: 256
    disk_gb: 4000
    gpus: 0
    tags: fast, nvme
flavors:
  - name: container.medium
    kind: container
    cpus: 2
    memory_gb: 4
    disk_gb: 20
features:
  - name: git
    version: "2.47"
`

func TestParse(t *testing.T) {
	t.Run("reads regions, hosts, endpoints and catalogues", func(t *testing.T) {
		f, err := fleetfile.Parse("fleet.yaml", []byte(good), drivers)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Regions) != 2 || f.Regions[0].Code != "prn" || f.Regions[0].Name != "Prineville, Oregon" || f.Regions[1].Name != "ftw" || f.Regions[1].Position != 2 {
			t.Errorf("regions = %+v", f.Regions)
		}
		if len(f.Hosts) != 3 {
			t.Fatalf("hosts = %+v", f.Hosts)
		}
		ct := f.Hosts[1]
		if ct.Name != "ftw-ct01" || ct.Region != "ftw" || ct.Kind != "container" || ct.Driver != "docker" || ct.CPUs != 8 || ct.MemoryGB != 16 || ct.DiskGB != 100 || ct.Tags != "ssd,local" || ct.State != "" {
			t.Errorf("merged host = %+v", ct)
		}
		hv := f.Hosts[2]
		if hv.State != "maintenance" || hv.Tags != "fast,nvme" || hv.Driver != "sim" {
			t.Errorf("sim host = %+v", hv)
		}
		engines := f.Engines("docker")
		if len(engines) != 2 || engines["prn-ct01"] != "unix:///var/run/docker.sock" || engines["ftw-ct01"] != "unix:///var/run/docker.sock" {
			t.Errorf("engines = %v", engines)
		}
		if !f.Uses("sim") || !f.Uses("docker") {
			t.Error("Uses does not see both drivers")
		}
		if len(f.Flavors) != 1 || f.Flavors[0].CPUs != 2 || len(f.Features) != 1 || f.Features[0].Version != "2.47" {
			t.Errorf("catalogues = %+v %+v", f.Flavors, f.Features)
		}
	})
	t.Run("leaves undeclared catalogues to the demo", func(t *testing.T) {
		f, err := fleetfile.Parse("fleet.yaml", []byte("regions: [{code: prn}]\nhosts: [{name: h1, region: prn, kind: container, driver: sim, cpus: 1, memory_gb: 1, disk_gb: 1}]\n"), drivers)
		if err != nil {
			t.Fatal(err)
		}
		if f.Flavors != nil || f.Features != nil || f.Uses("docker") {
			t.Errorf("flavors %v features %v", f.Flavors, f.Features)
		}
	})
	t.Run("reads the example fleet file", func(t *testing.T) {
		f, err := fleetfile.Load("../examples/docker.yaml", drivers)
		if err != nil {
			t.Fatal(err)
		}
		if f.Uses("sim") || len(f.Engines("docker")) != len(f.Hosts) {
			t.Errorf("example hosts = %+v", f.Hosts)
		}
	})
}

func TestParseRefusesBadInput(t *testing.T) {
	host := func(extra string) string {
		return "regions:\n  - code: prn\nhosts:\n  - name: prn-ct01\n    region: prn\n    kind: container\n    cpus: 4\n    memory_gb: 8\n    disk_gb: 50\n" + extra
	}
	cases := []struct {
		name, in string
		want     []string
	}{
		{"a syntax error, with its line", "regions:\n  - code: prn\nhosts: a: b\n", []string{"fleet.yaml:3: not valid YAML: mapping values are not allowed in this context"}},
		{"a tab in the indentation, at its line", "regions:\n  - code: prn\n\t- code: ftw\n", []string{"fleet.yaml:3: not valid YAML: a tab indents this line; indent with spaces"}},
		{"an empty file", "", []string{"fleet.yaml: the file is empty"}},
		{"a list at the top", "- a\n", []string{"fleet.yaml:1: the file must be a mapping"}},
		{"an unknown driver", host("    driver: kvm\n"), []string{`fleet.yaml:10: host "prn-ct01": driver "kvm" is not a driver this devport has (sim, docker)`}},
		{"a missing driver", host(""), []string{`fleet.yaml:4: host "prn-ct01": driver is required`}},
		{"an unknown kind", strings.Replace(host("    driver: sim\n"), "kind: container", "kind: vm", 1), []string{`fleet.yaml:6: host "prn-ct01": kind "vm" is not a kind of host (hypervisor, physical, container)`}},
		{"an unknown top-level field", "flavours: []\n" + host("    driver: sim\n")[0:], []string{`fleet.yaml:1: the file: unknown field "flavours" (did you mean "flavors"?)`}},
		{"an unknown host field", host("    driver: sim\n    memory: 8\n"), []string{`fleet.yaml:11: host "prn-ct01": unknown field "memory" (did you mean "memory_gb"?)`}},
		{"a field given twice", host("    driver: sim\n    cpus: 5\n"), []string{`fleet.yaml:11: host "prn-ct01": field "cpus" is given twice (first on line 7)`}},
		{"a host declared twice", host("    driver: sim\n  - name: prn-ct01\n    region: prn\n    kind: container\n    driver: sim\n    cpus: 1\n    memory_gb: 1\n    disk_gb: 1\n"),
			[]string{`fleet.yaml:11: host "prn-ct01" is declared twice (first on line 4)`}},
		{"a region declared twice", "regions:\n  - code: prn\n  - code: prn\nhosts: []\n", []string{`fleet.yaml:3: region "prn" is declared twice (first on line 2)`}},
		{"a host in an unknown region", strings.Replace(host("    driver: sim\n"), "region: prn", "region: xyz", 1), []string{`fleet.yaml:5: host "prn-ct01": region "xyz" is not declared under regions (prn)`}},
		{"a docker host without endpoint", host("    driver: docker\n"), []string{`fleet.yaml:4: host "prn-ct01": a docker host needs an endpoint`}},
		{"a docker endpoint that is not one", host("    driver: docker\n    endpoint: ftp://x\n"), []string{`fleet.yaml:11: host "prn-ct01": endpoint "ftp://x" must start with unix://`}},
		{"an endpoint on a sim host", host("    driver: sim\n    endpoint: unix:///x.sock\n"), []string{`fleet.yaml:11: host "prn-ct01": an endpoint is only for docker hosts`}},
		{"a negative size", strings.Replace(host("    driver: sim\n"), "memory_gb: 8", "memory_gb: -8", 1), []string{`fleet.yaml:8: host "prn-ct01": memory_gb is -8; a size cannot be negative`}},
		{"a zero size", strings.Replace(host("    driver: sim\n"), "cpus: 4", "cpus: 0", 1), []string{`fleet.yaml:7: host "prn-ct01": cpus must be more than 0`}},
		{"a size that is not a number", strings.Replace(host("    driver: sim\n"), "cpus: 4", "cpus: four", 1), []string{`fleet.yaml:7: host "prn-ct01": cpus must be a whole number, not "four"`}},
		{"a state a file may not set", host("    driver: sim\n    state: retired\n"), []string{`fleet.yaml:11: host "prn-ct01": state "retired" is not a state a fleet file may set (ready, maintenance)`}},
		{"hosts that are not a list", "regions:\n  - code: prn\nhosts: prn-ct01\n", []string{`fleet.yaml:3: hosts must be a list`}},
		{"no regions and no hosts", "features: []\n", []string{"fleet.yaml: no regions", "fleet.yaml: no hosts"}},
		{"a bad tag", host("    driver: sim\n    tags: [\"a,b\"]\n"), []string{`fleet.yaml:11: host "prn-ct01": tag "a,b" must be`}},
		{"a flavour of an unknown kind", host("    driver: sim\nflavors:\n  - name: x.small\n    kind: pod\n    cpus: 1\n    memory_gb: 1\n    disk_gb: 1\n"),
			[]string{`fleet.yaml:13: flavor "x.small": kind "pod" is not a kind of flavour (vm, physical, container)`}},
		{"a feature without version", host("    driver: sim\nfeatures:\n  - name: git\n"), []string{`fleet.yaml:12: feature "git": version is required`}},
	}
	for _, c := range cases {
		t.Run("refuses "+c.name, func(t *testing.T) {
			f, err := fleetfile.Parse("fleet.yaml", []byte(c.in), drivers)
			var fe *fleetfile.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Parse = %+v, %v; want a fleet file error", f, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\ndoes not say\n%s", err, w)
				}
			}
		})
	}
	t.Run("reports every problem, in line order", func(t *testing.T) {
		in := "regions:\n  - code: prn\nhosts:\n  - name: a\n    region: nowhere\n    kind: container\n    driver: kvm\n    cpus: -1\n    memory_gb: 1\n    disk_gb: 1\n"
		_, err := fleetfile.Parse("f.yaml", []byte(in), drivers)
		var fe *fleetfile.Error
		if !errors.As(err, &fe) || len(fe.Problems) != 3 {
			t.Fatalf("err = %v", err)
		}
		for i, line := range []int{5, 7, 8} {
			if fe.Problems[i].Line != line {
				t.Errorf("problem %d is on line %d, want %d: %s", i, fe.Problems[i].Line, line, fe.Problems[i].Message)
			}
		}
	})
	t.Run("names a file it cannot read", func(t *testing.T) {
		_, err := fleetfile.Load("/nonexistent/fleet.yaml", drivers)
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/fleet.yaml") {
			t.Errorf("err = %v", err)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add(good)
	f.Add("regions: [{code: a}]\nhosts: [{<<: {name: x}, region: a}]\n")
	f.Add("a: &a [*a]\n")
	f.Fuzz(func(t *testing.T, in string) {
		file, err := fleetfile.Parse("fuzz.yaml", []byte(in), drivers)
		if err != nil {
			var fe *fleetfile.Error
			if !errors.As(err, &fe) || len(fe.Problems) == 0 {
				t.Fatalf("error %v is not a fleet file error with problems", err)
			}
			return
		}
		for _, h := range file.Hosts {
			if h.Name == "" || h.Region == "" || h.CPUs <= 0 || h.MemoryGB <= 0 || h.DiskGB <= 0 || h.GPUs < 0 {
				t.Fatalf("accepted host %+v", h)
			}
			if h.Driver == "docker" && file.Endpoints[h.Name] == "" {
				t.Fatalf("docker host %s without endpoint", h.Name)
			}
		}
	})
}
