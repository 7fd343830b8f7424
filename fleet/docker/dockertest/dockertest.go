// Package dockertest finds the Docker engine and devport's base image for
// tests that run real containers. Without them a test is skipped with a loud
// reason, or fails when DEVPORT_REQUIRE_ALL=1.
package dockertest

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// Image is the base image the tests run (fleet/docker/image/build.sh).
const Image = "devport-base:latest"

// Endpoint is the engine tests use: $DOCKER_HOST, or the local socket.
func Endpoint() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return "unix:///var/run/docker.sock"
}

// LockFile coordinates the test processes that use the engine (go test runs
// packages in parallel): every test that calls Require holds a shared lock on
// it until it ends, and a test that stops the engine (Exclusive) holds it
// alone.
const LockFile = "/tmp/devport-docker-tests.lock"

// exclusive is set while this process holds the lock alone; Require then
// takes no shared lock of its own.
var exclusive atomic.Bool

// lock takes the lock file in the given mode and releases it when the test ends.
func lock(t testing.TB, how int) {
	t.Helper()
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		f, err = os.Open(LockFile) // another user's file: a lock needs no write access
	}
	if err != nil {
		t.Fatalf("open %s: %v", LockFile, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", LockFile, err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// Exclusive waits until no other test (in any process) uses the engine and
// keeps them waiting until this test ends. Call it before Require.
func Exclusive(t testing.TB) {
	t.Helper()
	lock(t, syscall.LOCK_EX)
	exclusive.Store(true)
	t.Cleanup(func() { exclusive.Store(false) })
}

// Require returns the Docker endpoint for the test. It skips the test loudly
// (fails it when DEVPORT_REQUIRE_ALL=1) when the engine does not answer or
// the base image is missing. It holds a shared lock on LockFile until the
// test ends, so that a test that restarts the engine waits for it.
func Require(t testing.TB) string {
	t.Helper()
	if !exclusive.Load() {
		lock(t, syscall.LOCK_SH)
	}
	endpoint := Endpoint()
	missing := func(reason string) {
		t.Helper()
		if os.Getenv("DEVPORT_REQUIRE_ALL") == "1" {
			t.Fatal("DOCKER TEST FAILS: " + reason + "; DEVPORT_REQUIRE_ALL=1 forbids skipping")
		}
		t.Skip("SKIPPED, NO DOCKER: " + reason + "; DEVPORT_REQUIRE_ALL=1 turns this into a failure")
	}
	c, err := client.NewClientWithOpts(client.WithHost(endpoint), client.WithAPIVersionNegotiation())
	if err != nil {
		missing("Docker endpoint " + endpoint + ": " + err.Error())
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		missing("the Docker engine at " + endpoint + " does not answer (" + err.Error() + "); install docker.io and start dockerd")
	}
	if _, err := c.ImageInspect(ctx, Image); err != nil {
		missing("the image " + Image + " is not on the engine (" + err.Error() + "); build it with `make docker-image`")
	}
	return endpoint
}

// Cleanup removes, when the test ends, every container and volume that
// carries the label key=value (tests label what they make with a value of
// their own).
func Cleanup(t testing.TB, endpoint, key, value string) {
	t.Helper()
	t.Cleanup(func() {
		if err := RemoveLabelled(endpoint, key, value); err != nil {
			t.Errorf("clean up containers labelled %s=%s: %v", key, value, err)
		}
	})
}

// RemoveLabelled removes the containers and volumes labelled key=value.
func RemoveLabelled(endpoint, key, value string) error {
	c, err := client.NewClientWithOpts(client.WithHost(endpoint), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", key+"="+value))
	list, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return err
	}
	for _, ct := range list {
		if err := c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !client.IsErrNotFound(err) {
			return err
		}
	}
	vols, err := c.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return err
	}
	for _, v := range vols.Volumes {
		if err := c.VolumeRemove(ctx, v.Name, true); err != nil && !client.IsErrNotFound(err) {
			return err
		}
	}
	return nil
}

// Count returns how many containers (running or not) carry all the labels.
func Count(t testing.TB, endpoint string, labels ...string) int {
	t.Helper()
	c, err := client.NewClientWithOpts(client.WithHost(endpoint), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := filters.NewArgs()
	for _, l := range labels {
		f.Add("label", l)
	}
	list, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// Volumes returns the names of the volumes that carry all the labels.
func Volumes(t testing.TB, endpoint string, labels ...string) []string {
	t.Helper()
	c, err := client.NewClientWithOpts(client.WithHost(endpoint), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := filters.NewArgs()
	for _, l := range labels {
		f.Add("label", l)
	}
	list, err := c.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range list.Volumes {
		names = append(names, v.Name)
	}
	return names
}
