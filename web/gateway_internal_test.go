package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// fakeLookups counts lookups; names starting with "ok" resolve to 192.0.2.1.
func fakeLookups(t *testing.T) *atomic.Int64 {
	var n atomic.Int64
	old := lookupIP
	lookupIP = func(_ context.Context, _, host string) ([]net.IP, error) {
		n.Add(1)
		if len(host) >= 2 && host[:2] == "ok" {
			return []net.IP{net.ParseIP("192.0.2.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	t.Cleanup(func() { lookupIP = old })
	return &n
}

// A portal reached by a name that does not resolve on the server shows the
// name, and does not look it up again on every request.
func TestSSHGatewayRemembersNamesThatDoNotResolve(t *testing.T) {
	lookups := fakeLookups(t)
	var got string
	h := SSHGateway(2222)(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = Gateway(r.Context()).Host }))
	for range 5 {
		req := httptest.NewRequest("GET", "/devservers", nil)
		req.Host = "devport.internal:8080"
		h.ServeHTTP(httptest.NewRecorder(), req)
		if got != "devport.internal" {
			t.Fatalf("gateway host %q, want the name itself", got)
		}
	}
	if n := lookups.Load(); n != 1 {
		t.Errorf("%d lookups for five requests, want 1", n)
	}
	req := httptest.NewRequest("GET", "/devservers", nil)
	req.Host = "ok.example:8080"
	h.ServeHTTP(httptest.NewRecorder(), req)
	if got != "192.0.2.1" {
		t.Errorf("gateway host %q, want the address the name resolves to", got)
	}
}

// Made-up Host headers do not grow the remembered names without bound.
func TestSSHGatewayBoundsRememberedNames(t *testing.T) {
	fakeLookups(t)
	addrs := &hostAddrs{m: map[string]hostAddr{}}
	for i := range 10 * maxGatewayHosts {
		host := fmt.Sprintf("ok-%d.attacker.example", i)
		if i%2 == 1 {
			host = fmt.Sprintf("nx-%d.attacker.example", i)
		}
		addrs.lookup(context.Background(), host)
		if len(addrs.m) > maxGatewayHosts {
			t.Fatalf("%d names remembered after %d requests, want at most %d", len(addrs.m), i+1, maxGatewayHosts)
		}
	}
}
