package store

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ContainerProfile is the hardware an On Demand container is given.
type ContainerProfile struct {
	Name        string    `db:"name" json:"name"`
	Description string    `db:"description" json:"description"`
	CPUs        int       `db:"cpus" json:"cpus"`
	MemoryGB    int       `db:"memory_gb" json:"memory_gb"`
	DiskGB      int       `db:"disk_gb" json:"disk_gb"`
	GPUs        int       `db:"gpus" json:"gpus"`
	Position    int       `db:"position" json:"-"`
	CreatedAt   time.Time `db:"created_at" json:"-"`
	UpdatedAt   time.Time `db:"updated_at" json:"-"`
}

// Size says the profile's hardware in words, such as "4 CPUs, 8 GB, 1 GPU".
func (p ContainerProfile) Size() string {
	s := fmt.Sprintf("%d CPUs, %d GB memory, %d GB disk", p.CPUs, p.MemoryGB, p.DiskGB)
	if p.GPUs == 1 {
		s += ", 1 GPU"
	} else if p.GPUs > 1 {
		s += fmt.Sprintf(", %d GPUs", p.GPUs)
	}
	return s
}

// asFlavor is the profile as a container flavour, for placement on container hosts.
func (p ContainerProfile) asFlavor() Flavor {
	return Flavor{Name: "profile " + p.Name, Kind: "container", CPUs: p.CPUs, MemoryGB: p.MemoryGB, DiskGB: p.DiskGB, GPUs: p.GPUs}
}

// Versioned is a tool or repository a container type comes with, at a version.
type Versioned struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// VersionedList is a JSON column of Versioned.
type VersionedList []Versioned

// Scan reads the JSON column.
func (l *VersionedList) Scan(src any) error { return scanJSON(src, l) }

// Value writes the JSON column.
func (l VersionedList) Value() (driver.Value, error) {
	if l == nil {
		l = VersionedList{}
	}
	return valueJSON(l)
}

// DriverImages is the image of a container type for each fleet driver.
type DriverImages map[string]string

// Scan reads the JSON column.
func (m *DriverImages) Scan(src any) error { return scanJSON(src, m) }

// Value writes the JSON column.
func (m DriverImages) Value() (driver.Value, error) {
	if m == nil {
		m = DriverImages{}
	}
	return valueJSON(m)
}

func scanJSON(src, dest any) error {
	switch v := src.(type) {
	case string:
		return json.Unmarshal([]byte(v), dest)
	case []byte:
		return json.Unmarshal(v, dest)
	case nil:
		return nil
	}
	return fmt.Errorf("scan JSON column: unexpected %T", src)
}

func valueJSON(v any) (driver.Value, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// ContainerType is a stack an engineer can get a fresh container of.
type ContainerType struct {
	Name          string        `db:"name" json:"name"`
	Stack         string        `db:"stack" json:"stack"`
	Description   string        `db:"description" json:"description"`
	Images        DriverImages  `db:"images" json:"images"`
	Tools         VersionedList `db:"tools" json:"tools"`
	Repos         VersionedList `db:"repos" json:"repos"`
	LifetimeHours int           `db:"lifetime_hours" json:"lifetime_hours"`
	// SandboxURL is a template of the type's sandbox address, where it has
	// one: {name}, {hostname} and {region} are replaced.
	SandboxURL string    `db:"sandbox_url" json:"sandbox_url,omitempty"`
	Position   int       `db:"position" json:"-"`
	CreatedAt  time.Time `db:"created_at" json:"-"`
	UpdatedAt  time.Time `db:"updated_at" json:"updated_at"`
	UpdatedBy  string    `db:"updated_by" json:"updated_by,omitempty"`
	// Profiles the type may run on and Features that may be added to it.
	Profiles []string `db:"-" json:"profiles"`
	Features []string `db:"-" json:"features"`
}

// Lifetime is how long a container of the type lives.
func (t ContainerType) Lifetime() time.Duration { return time.Duration(t.LifetimeHours) * time.Hour }

// Allows tells whether the type runs on the profile.
func (t ContainerType) Allows(profile string) bool { return slices.Contains(t.Profiles, profile) }

// AllowsFeature tells whether the feature may be added to the type.
func (t ContainerType) AllowsFeature(feature string) bool {
	return slices.Contains(t.Features, feature)
}

// Sandbox is the sandbox address of a container of the type, or "".
func (t ContainerType) Sandbox(c Container) string {
	if t.SandboxURL == "" || c.Hostname == "" {
		return ""
	}
	return strings.NewReplacer("{name}", c.Name, "{hostname}", c.Hostname, "{region}", c.Region).Replace(t.SandboxURL)
}

// DefaultContainerLifetime is how long a container lives unless its type says otherwise.
const DefaultContainerLifetime = 36 * time.Hour

// Bounds of the catalogue an admin edits.
const (
	MaxContainerLifetimeHours = 720
	maxCatalogueName          = 40
	maxCatalogueText          = 2000
	maxVersioned              = 50
)

var catalogueName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// Catalogue is every container type and profile, in display order.
type Catalogue struct {
	Types    []ContainerType    `json:"types"`
	Profiles []ContainerProfile `json:"profiles"`
}

// Type returns the type called name.
func (c Catalogue) Type(name string) (ContainerType, bool) {
	i := slices.IndexFunc(c.Types, func(t ContainerType) bool { return t.Name == name })
	if i < 0 {
		return ContainerType{}, false
	}
	return c.Types[i], true
}

// Profile returns the profile called name.
func (c Catalogue) Profile(name string) (ContainerProfile, bool) {
	i := slices.IndexFunc(c.Profiles, func(p ContainerProfile) bool { return p.Name == name })
	if i < 0 {
		return ContainerProfile{}, false
	}
	return c.Profiles[i], true
}

const (
	containerTypeColumns    = `name, stack, description, images, tools, repos, lifetime_hours, sandbox_url, position, created_at, updated_at, updated_by`
	containerProfileColumns = `name, description, cpus, memory_gb, disk_gb, gpus, position, created_at, updated_at`
)

// ContainerCatalogue is every type (with its profiles and features) and every profile.
func (s *Store) ContainerCatalogue(ctx context.Context) (Catalogue, error) {
	return containerCatalogue(ctx, s.read)
}

func containerCatalogue(ctx context.Context, q queryer) (Catalogue, error) {
	var c Catalogue
	if err := q.SelectContext(ctx, &c.Types, `SELECT `+containerTypeColumns+` FROM container_types ORDER BY position, name`); err != nil {
		return c, fmt.Errorf("container types: %w", err)
	}
	if err := q.SelectContext(ctx, &c.Profiles, `SELECT `+containerProfileColumns+` FROM container_profiles ORDER BY position, name`); err != nil {
		return c, fmt.Errorf("container profiles: %w", err)
	}
	var pairs []struct {
		Type  string `db:"type"`
		Other string `db:"other"`
		Kind  string `db:"kind"`
	}
	err := q.SelectContext(ctx, &pairs, `
SELECT tp.type, tp.profile AS other, 'profile' AS kind FROM container_type_profiles tp JOIN container_profiles p ON p.name = tp.profile
UNION ALL
SELECT type, feature AS other, 'feature' AS kind FROM container_type_features
ORDER BY 1, 3, 2`)
	if err != nil {
		return c, fmt.Errorf("container catalogue: %w", err)
	}
	pos := map[string]int{}
	for _, p := range c.Profiles {
		pos[p.Name] = p.Position
	}
	for i := range c.Types {
		t := &c.Types[i]
		t.Profiles, t.Features = []string{}, []string{}
		for _, p := range pairs {
			if p.Type != t.Name {
				continue
			}
			if p.Kind == "profile" {
				t.Profiles = append(t.Profiles, p.Other)
			} else {
				t.Features = append(t.Features, p.Other)
			}
		}
		slices.SortStableFunc(t.Profiles, func(a, b string) int { return pos[a] - pos[b] })
	}
	return c, nil
}

// ContainerType returns one type with its profiles and features.
func (s *Store) ContainerType(ctx context.Context, name string) (ContainerType, error) {
	return containerTypeByName(ctx, s.read, name)
}

func containerTypeByName(ctx context.Context, q queryer, name string) (ContainerType, error) {
	c, err := containerCatalogue(ctx, q)
	if err != nil {
		return ContainerType{}, err
	}
	t, ok := c.Type(name)
	if !ok {
		return ContainerType{}, fmt.Errorf("container type %q: %w", clip(name), ErrNotFound)
	}
	return t, nil
}

func containerProfileByName(ctx context.Context, q queryer, name string) (ContainerProfile, error) {
	var p ContainerProfile
	if err := getNamed(ctx, q, &p, `SELECT `+containerProfileColumns+` FROM container_profiles WHERE name = :name`, arg{"name": name}); err != nil {
		return p, fmt.Errorf("container profile %q: %w", clip(name), err)
	}
	return p, nil
}

// checkVersioned reports problems with a list of tools or repositories.
func checkVersioned(p Problems, field string, l VersionedList) {
	if len(l) > maxVersioned {
		p.Add(field, fmt.Sprintf("at most %d entries", maxVersioned))
		return
	}
	seen := map[string]bool{}
	for i, v := range l {
		switch {
		case strings.TrimSpace(v.Name) == "" || strings.TrimSpace(v.Version) == "":
			p.Add(field, fmt.Sprintf("entry %d needs a name and a version", i+1))
		case len(v.Name) > 100 || len(v.Version) > 100:
			p.Add(field, fmt.Sprintf("entry %d: names and versions are at most 100 characters", i+1))
		case strings.ContainsAny(v.Name+v.Version, "\n\r\t"):
			p.Add(field, fmt.Sprintf("entry %d: one line each", i+1))
		case seen[v.Name]:
			p.Add(field, fmt.Sprintf("%q is listed twice", clip(v.Name)))
		}
		seen[v.Name] = true
	}
}

// checkSandboxURL reports a sandbox address template that is not an http(s) URL.
func checkSandboxURL(p Problems, tmpl string) {
	if tmpl == "" {
		return
	}
	sample := strings.NewReplacer("{name}", "od1", "{hostname}", "od1.prn.od.devport.internal", "{region}", "prn").Replace(tmpl)
	u, err := url.Parse(sample)
	if len(tmpl) > 500 || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.Add("sandbox_url", "must be an http or https address (at most 500 characters); {name}, {hostname} and {region} are filled in")
	}
}

// SaveContainerType creates or updates a type, its profiles and its
// features, all or nothing.
func (tx *Tx) SaveContainerType(ctx context.Context, who Actor, t ContainerType) (ContainerType, error) {
	p := Problems{}
	t.Name = strings.TrimSpace(t.Name)
	t.Stack = strings.TrimSpace(t.Stack)
	t.Description = strings.TrimSpace(t.Description)
	t.SandboxURL = strings.TrimSpace(t.SandboxURL)
	if !catalogueName.MatchString(t.Name) || len(t.Name) > maxCatalogueName {
		p.Add("name", fmt.Sprintf("lower-case letters, digits and dashes, starting with a letter, at most %d characters", maxCatalogueName))
	}
	if t.Stack == "" || len(t.Stack) > 100 {
		p.Add("stack", "is required, at most 100 characters")
	}
	if len(t.Description) > maxCatalogueText {
		p.Add("description", fmt.Sprintf("at most %d characters", maxCatalogueText))
	}
	if t.LifetimeHours == 0 {
		t.LifetimeHours = int(DefaultContainerLifetime / time.Hour)
	}
	if t.LifetimeHours < 1 || t.LifetimeHours > MaxContainerLifetimeHours {
		p.Add("lifetime_hours", fmt.Sprintf("must be a whole number of hours from 1 to %d", MaxContainerLifetimeHours))
	}
	if len(t.Images) > 10 {
		p.Add("images", "at most 10 drivers")
	}
	for drv, img := range t.Images {
		if !catalogueName.MatchString(drv) || strings.TrimSpace(img) == "" || len(img) > 300 || strings.ContainsAny(img, " \n\t") {
			p.Add("images", fmt.Sprintf("the image for %q must be one word of at most 300 characters", clip(drv)))
		}
	}
	checkVersioned(p, "tools", t.Tools)
	checkVersioned(p, "repos", t.Repos)
	checkSandboxURL(p, t.SandboxURL)
	if len(t.Profiles) == 0 {
		p.Add("profiles", "choose at least one profile")
	}
	for _, name := range t.Profiles {
		if _, err := containerProfileByName(ctx, tx, name); errors.Is(err, ErrNotFound) {
			p.Add("profiles", fmt.Sprintf("%q is not a profile", clip(name)))
		} else if err != nil {
			return t, err
		}
	}
	for _, name := range t.Features {
		if _, err := featureByName(ctx, tx, name); errors.Is(err, ErrNotFound) {
			p.Add("features", fmt.Sprintf("%q is not a feature", clip(name)))
		} else if err != nil {
			return t, err
		}
	}
	if err := p.Err(); err != nil {
		return t, err
	}
	now := tx.Now()
	old, err := containerTypeByName(ctx, tx, t.Name)
	created := errors.Is(err, ErrNotFound)
	if err != nil && !created {
		return t, err
	}
	if created {
		var last int
		if err := tx.GetContext(ctx, &last, `SELECT COALESCE(MAX(position), 0) FROM container_types`); err != nil {
			return t, fmt.Errorf("save container type: %w", err)
		}
		t.Position = last + 1
	} else {
		t.Position = old.Position
	}
	_, err = execNamed(ctx, tx, `
INSERT INTO container_types (name, stack, description, images, tools, repos, lifetime_hours, sandbox_url, position, created_at, updated_at, updated_by)
VALUES (:name, :stack, :description, :images, :tools, :repos, :lifetime, :sandbox, :position, :now, :now, :by)
ON CONFLICT (name) DO UPDATE SET stack = excluded.stack, description = excluded.description, images = excluded.images,
    tools = excluded.tools, repos = excluded.repos, lifetime_hours = excluded.lifetime_hours, sandbox_url = excluded.sandbox_url,
    updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		arg{"name": t.Name, "stack": t.Stack, "description": t.Description, "images": t.Images, "tools": t.Tools, "repos": t.Repos,
			"lifetime": t.LifetimeHours, "sandbox": t.SandboxURL, "position": t.Position, "now": now, "by": who.Name})
	if err != nil {
		return t, fmt.Errorf("save container type %s: %w", t.Name, err)
	}
	for _, q := range []string{`DELETE FROM container_type_profiles WHERE type = :type`, `DELETE FROM container_type_features WHERE type = :type`} {
		if _, err := execNamed(ctx, tx, q, arg{"type": t.Name}); err != nil {
			return t, fmt.Errorf("save container type %s: %w", t.Name, err)
		}
	}
	for _, pr := range dedupe(t.Profiles) {
		if _, err := execNamed(ctx, tx, `INSERT INTO container_type_profiles (type, profile) VALUES (:type, :profile)`, arg{"type": t.Name, "profile": pr}); err != nil {
			return t, fmt.Errorf("save container type %s: %w", t.Name, err)
		}
	}
	for _, f := range dedupe(t.Features) {
		if _, err := execNamed(ctx, tx, `INSERT INTO container_type_features (type, feature) VALUES (:type, :feature)`, arg{"type": t.Name, "feature": f}); err != nil {
			return t, fmt.Errorf("save container type %s: %w", t.Name, err)
		}
	}
	// A pool of a profile the type no longer allows has nothing to build.
	if _, err := execNamed(ctx, tx, `
DELETE FROM container_pools WHERE type = :type AND profile NOT IN (SELECT profile FROM container_type_profiles WHERE type = :type)`, arg{"type": t.Name}); err != nil {
		return t, fmt.Errorf("save container type %s: %w", t.Name, err)
	}
	action := "container_type.update"
	if created {
		action = "container_type.create"
	}
	if err := tx.Audit(ctx, who, action, "container_type", t.Name, map[string]any{
		"lifetime_hours": t.LifetimeHours, "profiles": strings.Join(t.Profiles, " "), "features": strings.Join(t.Features, " "),
	}); err != nil {
		return t, err
	}
	return containerTypeByName(ctx, tx, t.Name)
}

// SaveContainerProfile creates or updates a hardware profile. Containers
// already running keep what they were given.
func (tx *Tx) SaveContainerProfile(ctx context.Context, who Actor, pr ContainerProfile) (ContainerProfile, error) {
	p := Problems{}
	pr.Name = strings.TrimSpace(pr.Name)
	pr.Description = strings.TrimSpace(pr.Description)
	if !catalogueName.MatchString(pr.Name) || len(pr.Name) > maxCatalogueName {
		p.Add("name", fmt.Sprintf("lower-case letters, digits and dashes, starting with a letter, at most %d characters", maxCatalogueName))
	}
	if len(pr.Description) > 500 {
		p.Add("description", "at most 500 characters")
	}
	for _, f := range []struct {
		field    string
		v, lo, h int
	}{{"cpus", pr.CPUs, 1, 256}, {"memory_gb", pr.MemoryGB, 1, 4096}, {"disk_gb", pr.DiskGB, 1, 65536}, {"gpus", pr.GPUs, 0, 16}} {
		if f.v < f.lo || f.v > f.h {
			p.Add(f.field, fmt.Sprintf("must be a whole number from %d to %d", f.lo, f.h))
		}
	}
	if err := p.Err(); err != nil {
		return pr, err
	}
	now := tx.Now()
	_, err := containerProfileByName(ctx, tx, pr.Name)
	created := errors.Is(err, ErrNotFound)
	if err != nil && !created {
		return pr, err
	}
	if created {
		if err := tx.GetContext(ctx, &pr.Position, `SELECT COALESCE(MAX(position), 0) + 1 FROM container_profiles`); err != nil {
			return pr, fmt.Errorf("save container profile: %w", err)
		}
	}
	_, err = execNamed(ctx, tx, `
INSERT INTO container_profiles (name, description, cpus, memory_gb, disk_gb, gpus, position, created_at, updated_at)
VALUES (:name, :description, :cpus, :memory_gb, :disk_gb, :gpus, :position, :now, :now)
ON CONFLICT (name) DO UPDATE SET description = excluded.description, cpus = excluded.cpus, memory_gb = excluded.memory_gb,
    disk_gb = excluded.disk_gb, gpus = excluded.gpus, updated_at = excluded.updated_at`,
		arg{"name": pr.Name, "description": pr.Description, "cpus": pr.CPUs, "memory_gb": pr.MemoryGB, "disk_gb": pr.DiskGB,
			"gpus": pr.GPUs, "position": pr.Position, "now": now})
	if err != nil {
		return pr, fmt.Errorf("save container profile %s: %w", pr.Name, err)
	}
	action := "container_profile.update"
	if created {
		action = "container_profile.create"
	}
	if err := tx.Audit(ctx, who, action, "container_profile", pr.Name, map[string]any{"size": pr.Size()}); err != nil {
		return pr, err
	}
	return containerProfileByName(ctx, tx, pr.Name)
}

func dedupe(l []string) []string {
	out := make([]string, 0, len(l))
	for _, s := range l {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// ContainerCatalogueSeed is a catalogue and its pools, written into a
// database that has no container types yet.
type ContainerCatalogueSeed struct {
	Profiles []ContainerProfile
	Types    []ContainerType
	Pools    []ContainerPoolTarget
}

// DemoContainers is the demo catalogue: web, android, ios, jupyter and
// ml-gpu, on small to GPU profiles, with pools in regions (where the
// profile has no GPU).
func DemoContainers(regions []string) ContainerCatalogueSeed {
	images := func(stack string) DriverImages {
		// The docker image is the base image built by `make docker-image`;
		// the simulator keeps the name only.
		return DriverImages{"sim": "sim/od-" + stack + ":2026.11", "docker": "devport-base:latest"}
	}
	seed := ContainerCatalogueSeed{
		Profiles: []ContainerProfile{
			{Name: "small", Description: "Scripting, notebooks, small web apps", CPUs: 2, MemoryGB: 4, DiskGB: 20},
			{Name: "medium", Description: "Everyday builds and test runs", CPUs: 4, MemoryGB: 8, DiskGB: 40},
			{Name: "large", Description: "Big builds, emulators and indexing", CPUs: 8, MemoryGB: 16, DiskGB: 80},
			{Name: "gpu", Description: "Training and inference on one GPU", CPUs: 8, MemoryGB: 32, DiskGB: 100, GPUs: 1},
		},
		Types: []ContainerType{
			{Name: "web", Stack: "Web (Node, React, Hack)", Description: "The web monorepo checked out and built, with a dev server that serves your sandbox.",
				Images: images("web"), LifetimeHours: 36, SandboxURL: "https://{name}.sandbox.devport.internal/",
				Tools:    VersionedList{{"node", "22.12.0"}, {"pnpm", "9.15.0"}, {"hhvm", "4.172"}, {"git", "2.47.1"}},
				Repos:    VersionedList{{"www", "main@2026-11-24"}, {"configs", "main@2026-11-24"}},
				Profiles: []string{"small", "medium", "large"}, Features: []string{"vscode-server", "docker", "python"}},
			{Name: "android", Stack: "Android (Gradle, SDK 35)", Description: "The Android apps checked out with a warm Gradle cache and an emulator image.",
				Images: images("android"), LifetimeHours: 36,
				Tools:    VersionedList{{"android-sdk", "35.0.0"}, {"gradle", "8.11"}, {"jdk", "21.0.5"}, {"git", "2.47.1"}},
				Repos:    VersionedList{{"android-apps", "main@2026-11-24"}},
				Profiles: []string{"medium", "large"}, Features: []string{"vscode-server", "python"}},
			{Name: "ios", Stack: "iOS (Swift, Buck2)", Description: "The iOS apps checked out with Buck2 and the simulator runtimes; builds run on remote Macs.",
				Images: images("ios"), LifetimeHours: 36,
				Tools:    VersionedList{{"swift", "6.0.2"}, {"buck2", "2024-11-15"}, {"git", "2.47.1"}},
				Repos:    VersionedList{{"ios-apps", "main@2026-11-24"}},
				Profiles: []string{"medium", "large"}, Features: []string{"vscode-server"}},
			{Name: "jupyter", Stack: "Jupyter (Python 3.12)", Description: "JupyterLab with the data science libraries and the internal warehouse connectors.",
				Images: images("jupyter"), LifetimeHours: 24, SandboxURL: "https://{name}.notebooks.devport.internal/lab",
				Tools:    VersionedList{{"python", "3.12.8"}, {"jupyterlab", "4.3.1"}, {"pandas", "2.2.3"}},
				Repos:    VersionedList{{"notebooks", "main@2026-11-24"}},
				Profiles: []string{"small", "medium", "large", "gpu"}, Features: []string{"vscode-server", "python", "cuda"}},
			{Name: "ml-gpu", Stack: "ML on GPU (PyTorch, CUDA)", Description: "PyTorch and CUDA on one GPU, with the model registry mounted.",
				Images: images("ml-gpu"), LifetimeHours: 36,
				Tools:    VersionedList{{"python", "3.12.8"}, {"pytorch", "2.5.1"}, {"cuda", "12.6.3"}},
				Repos:    VersionedList{{"ml-models", "main@2026-11-24"}},
				Profiles: []string{"gpu"}, Features: []string{"vscode-server", "python", "cuda"}},
		},
	}
	for _, r := range regions {
		seed.Pools = append(seed.Pools,
			ContainerPoolTarget{Region: r, Type: "web", Profile: "medium", Target: 2, Min: 1, Max: 4},
			ContainerPoolTarget{Region: r, Type: "jupyter", Profile: "small", Target: 1, Min: 0, Max: 2},
		)
	}
	return seed
}

// SeedContainerCatalogue writes a catalogue into a database that has no
// container types, skipping features the feature catalogue does not have.
// It does nothing when types exist, so it is safe at every start.
func (s *Store) SeedContainerCatalogue(ctx context.Context, seed ContainerCatalogueSeed) (bool, error) {
	seeded := false
	err := s.InTx(ctx, func(tx *Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM container_types`); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		for _, p := range seed.Profiles {
			if _, err := tx.SaveContainerProfile(ctx, System, p); err != nil {
				return fmt.Errorf("seed profile %s: %w", p.Name, err)
			}
		}
		for _, t := range seed.Types {
			t.Features = slices.DeleteFunc(slices.Clone(t.Features), func(f string) bool {
				_, err := featureByName(ctx, tx, f)
				return err != nil
			})
			if _, err := tx.SaveContainerType(ctx, System, t); err != nil {
				return fmt.Errorf("seed container type %s: %w", t.Name, err)
			}
		}
		for _, pt := range seed.Pools {
			if _, err := regionByCode(ctx, tx, pt.Region); err != nil {
				continue
			}
			if err := tx.SetContainerPool(ctx, System, pt); err != nil {
				return fmt.Errorf("seed container pool: %w", err)
			}
		}
		seeded = true
		return nil
	})
	return seeded, err
}
