package web

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/devport/devport/store"
)

type gatewayKey struct{}

// SSHGateway records where the SSH gateway answers for each request: the
// host the person reached the portal by, as an IP address where it resolves
// to one, and the gateway's port. With port 0 the gateway is off.
func SSHGateway(port int) func(http.Handler) http.Handler {
	addrs := &hostAddrs{m: map[string]hostAddr{}}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if port > 0 {
				host := r.Host
				if h, _, err := net.SplitHostPort(host); err == nil {
					host = h
				}
				host = strings.Trim(host, "[]")
				if net.ParseIP(host) == nil && host != "" {
					host = addrs.lookup(r.Context(), host)
				}
				r = r.WithContext(context.WithValue(r.Context(), gatewayKey{}, &store.Gateway{Host: host, Port: port}))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// The Host header is the client's to choose: the host names remembered are
// bounded, and a name that does not resolve is remembered too (for a
// while), so neither a flood of made-up names nor a portal whose own name
// does not resolve here costs a lookup per request.
const (
	maxGatewayHosts   = 256
	gatewayRetryAfter = time.Minute
)

// hostAddrs remembers what host names resolved to.
type hostAddrs struct {
	mu sync.Mutex
	m  map[string]hostAddr
}

// hostAddr is a lookup's answer: the address, or "" when there was none.
type hostAddr struct {
	ip string
	at time.Time
}

// lookup returns host's address, or host when it has none.
func (h *hostAddrs) lookup(ctx context.Context, host string) string {
	h.mu.Lock()
	a, ok := h.m[host]
	h.mu.Unlock()
	if !ok || (a.ip == "" && time.Since(a.at) > gatewayRetryAfter) {
		a = hostAddr{ip: resolve(ctx, host), at: time.Now()}
		h.mu.Lock()
		if _, known := h.m[host]; !known && len(h.m) >= maxGatewayHosts {
			clear(h.m)
		}
		h.m[host] = a
		h.mu.Unlock()
	}
	if a.ip == "" {
		return host
	}
	return a.ip
}

// lookupIP resolves a host name (a test counts the lookups).
var lookupIP = net.DefaultResolver.LookupIP

// resolve looks a host name up, briefly: a portal whose own name does not
// resolve still shows the name.
func resolve(ctx context.Context, host string) string {
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	ips, err := lookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return ""
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String()
		}
	}
	return ips[0].String()
}

// Gateway is where the SSH gateway answers for the request, or nil when it is off.
func Gateway(ctx context.Context) *store.Gateway {
	gw, _ := ctx.Value(gatewayKey{}).(*store.Gateway)
	return gw
}
