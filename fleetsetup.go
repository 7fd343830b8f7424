package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/fleetfile"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/store"
)

// portalLabel is the label every container this portal makes carries, so
// portals (and their test runs) that share an engine never touch each
// other's containers.
const portalLabel = "devport.portal"

// fleetSetup is the inventory's origin and the drivers that run it.
type fleetSetup struct {
	Fleet *fleet.Fleet
	// Badge is what every page's frame says about the fleet: "simulated
	// fleet" when all of it is simulated, "partly simulated fleet" when some
	// hosts are, "" when none is.
	Badge string
}

// setupFleet makes the inventory match its source, the built-in demo on
// the simulated fleet (DEVPORT_FLEET unset) or a fleet file, and builds the
// fleet drivers. A fleet file that is malformed, or that would strand
// devservers, stops the start with its problems.
func setupFleet(ctx context.Context, c config, s *store.Store, log *slog.Logger) (fleetSetup, error) {
	simDriver := sim.New(s, sim.Options{Latency: c.SimLatency, Failures: c.SimFailures, Seed: 1})
	if c.Fleet == "" {
		seeded, err := s.SeedInventory(ctx, store.Demo("sim"))
		if err != nil {
			return fleetSetup{}, err
		}
		if seeded {
			log.Info("Seeded the demo inventory on the simulated fleet")
		}
		if err := seedContainers(ctx, s, log); err != nil {
			return fleetSetup{}, err
		}
		return fleetSetup{Fleet: fleet.New(simDriver), Badge: "simulated fleet"}, nil
	}

	file, err := fleetfile.Load(c.Fleet, []string{"sim", "docker"})
	if err != nil {
		return fleetSetup{}, &settingError{env: "DEVPORT_FLEET", flag: "fleet", value: c.Fleet, problem: "\n" + err.Error()}
	}
	changes, err := s.ReconcileFleet(ctx, file.Declaration())
	if err != nil {
		var conflict *store.ConflictError
		if errors.As(err, &conflict) {
			return fleetSetup{}, &settingError{env: "DEVPORT_FLEET", flag: "fleet", value: c.Fleet, problem: "the inventory cannot follow the file:\n" + conflict.Message}
		}
		return fleetSetup{}, err
	}
	if changes.Empty() {
		log.Info("The inventory matches the fleet file", "file", c.Fleet)
	} else {
		log.Info("Reconciled the inventory with the fleet file", "file", c.Fleet,
			"created", strings.Join(changes.Created, ", "), "updated", strings.Join(changes.Updated, ", "), "retired", strings.Join(changes.Retired, ", "))
	}

	if err := seedContainers(ctx, s, log); err != nil {
		return fleetSetup{}, err
	}

	id, err := portalID(c.DataDir)
	if err != nil {
		return fleetSetup{}, err
	}
	dockerDriver, err := docker.New(docker.Options{
		Log: log, Engines: file.Engines("docker"), Image: docker.DefaultImage,
		Labels: map[string]string{portalLabel: id},
	})
	if err != nil {
		return fleetSetup{}, &settingError{env: "DEVPORT_FLEET", flag: "fleet", value: c.Fleet, problem: err.Error()}
	}
	setup := fleetSetup{Fleet: fleet.New(simDriver, dockerDriver)}
	switch {
	case file.Uses("sim") && !file.Uses("docker"):
		setup.Badge = "simulated fleet"
	case file.Uses("sim"):
		setup.Badge = "partly simulated fleet"
	}
	return setup, nil
}

// portalID is this portal's stable identity, kept in the data directory
// (generated on first use): the value of the label on its containers.
func portalID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "portal-id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if id == "" {
			return "", fmt.Errorf("portal ID %s is empty; delete it to generate a new one", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("portal ID %s: %w", path, err)
	}
	raw := make([]byte, 8)
	_, _ = rand.Read(raw)
	id := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("portal ID %s: %w", path, err)
	}
	return id, nil
}

// seedContainers writes the demo On Demand catalogue (types, profiles and
// pools in every region) into a database that has none; admins edit it
// from then on.
func seedContainers(ctx context.Context, s *store.Store, log *slog.Logger) error {
	regions, err := s.Regions(ctx)
	if err != nil {
		return err
	}
	codes := make([]string, len(regions))
	for i, r := range regions {
		codes[i] = r.Code
	}
	seeded, err := s.SeedContainerCatalogue(ctx, store.DemoContainers(codes))
	if err != nil {
		return fmt.Errorf("seed the container catalogue: %w", err)
	}
	if seeded {
		log.Info("Seeded the On Demand container catalogue", "regions", len(codes))
	}
	return nil
}
