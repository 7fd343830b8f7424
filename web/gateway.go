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
	var addrs sync.Map // host name → IP address, resolved once
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if port > 0 {
				host := r.Host
				if h, _, err := net.SplitHostPort(host); err == nil {
					host = h
				}
				host = strings.Trim(host, "[]")
				if net.ParseIP(host) == nil && host != "" {
					if ip, ok := addrs.Load(host); ok {
						host = ip.(string)
					} else if ip := resolve(r.Context(), host); ip != "" {
						addrs.Store(host, ip)
						host = ip
					}
				}
				r = r.WithContext(context.WithValue(r.Context(), gatewayKey{}, &store.Gateway{Host: host, Port: port}))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// resolve looks a host name up, briefly: a portal whose own name does not
// resolve still shows the name.
func resolve(ctx context.Context, host string) string {
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
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
