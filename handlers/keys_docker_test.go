package handlers_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/docker/dockertest"
	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// TestKeysReachADockerDevserver: the owner's SSH key is written into the
// container's ~/.ssh/authorized_keys, as on the simulated fleet.
func TestKeysReachADockerDevserver(t *testing.T) {
	endpoint := dockertest.Require(t)
	label := "keys-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	dockertest.Cleanup(t, endpoint, "devport.test", label)
	drv, err := docker.New(docker.Options{Engines: map[string]string{"tst-hv01": endpoint}, Labels: map[string]string{"devport.test": label}})
	if err != nil {
		t.Fatal(err)
	}
	inv := storetest.SmallRegion(2)
	for i := range inv.Hosts {
		if inv.Hosts[i].Name == "tst-hv01" {
			inv.Hosts[i].Driver = "docker"
		}
	}
	srv := handlertest.New(t, handlertest.Options{Inventory: &inv, Drivers: []fleet.Driver{drv}})
	tok := srv.Token(t, "kay@example.com")
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/keys", Token: tok, Body: `{"public_key":"` + newKey(t, "kay@laptop") + `"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("add key: %d %s", resp.StatusCode, body)
	}
	key := decode[keyJSON](t, body).PublicKey
	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: `{"flavor":"vm.small","region":"tst"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	d := srv.WaitState(t, decode[devserverJSON](t, body).Name, store.StateReady)
	handlertest.Eventually(t, 30*time.Second, "the key in the container's authorized_keys", func() bool {
		res, err := drv.Exec(context.Background(), d.InstanceID, []string{"cat", jobs.AuthorizedKeysPath})
		return err == nil && res.ExitCode == 0 && strings.Contains(res.Output, key)
	})
}
