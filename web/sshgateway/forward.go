package sshgateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// maxForwards bounds the forwarded connections open at once on one SSH
// connection (VS Code Remote-SSH keeps a few open; each is a process in the
// environment).
const maxForwards = 32

// forwardDialTimeout bounds how long reaching the port may take.
const forwardDialTimeout = 30 * time.Second

// directTCPIP is the payload of a "direct-tcpip" channel open (RFC 4254,
// section 7.2): where to connect, and where the client's connection came
// from.
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// loopback tells whether a forward's destination is the environment itself.
func loopback(host string) bool {
	switch strings.ToLower(strings.TrimSuffix(host, ".")) {
	case "localhost", "127.0.0.1", "::1", "[::1]", "0:0:0:0:0:0:0:1":
		return true
	}
	return false
}

// forward handles a direct-tcpip channel (ssh -L, VS Code Remote-SSH): it
// checks the destination and the person as for a session, then, without
// holding up the connection's other channels, dials the port in the
// environment through its fleet driver and bridges the channel to it.
func (cn *conn) forward(nc ssh.NewChannel, count *atomic.Int64, wg *sync.WaitGroup) {
	var d directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &d); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	if !loopback(d.Host) {
		cn.log.Info("SSH forward refused", "to_host", clip(d.Host), "port", d.Port, "reason", "not the environment itself")
		_ = nc.Reject(ssh.Prohibited, fmt.Sprintf("devport forwards only to ports on the environment itself (localhost, 127.0.0.1 or ::1), not to %s", strconv.Quote(clip(d.Host))))
		return
	}
	if d.Port < 1 || d.Port > 65535 {
		_ = nc.Reject(ssh.ConnectionFailed, fmt.Sprintf("port %d is not between 1 and 65535", d.Port))
		return
	}
	if count.Add(1) > maxForwards {
		count.Add(-1)
		_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d forwarded connections may be open at once on one SSH connection", maxForwards))
		return
	}
	wg.Go(func() {
		defer count.Add(-1)
		cn.runForward(nc, d)
	})
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (cn *conn) runForward(nc ssh.NewChannel, d directTCPIP) {
	a, msg := cn.authorize()
	if msg != "" {
		cn.log.Info("SSH forward refused", "port", d.Port, "reason", msg)
		_ = nc.Reject(ssh.Prohibited, msg)
		return
	}
	t := a.t
	port := int(d.Port)
	dialer, ok := a.drv.(fleet.Dialer)
	if !ok {
		_ = nc.Reject(ssh.Prohibited, fmt.Sprintf("%s %s runs on host %s, whose driver %s cannot forward ports", t.kind, t.name, t.host, t.driver))
		return
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	id := "fwd-" + hex.EncodeToString(b)
	log := cn.log.With("forward", id, "port", port)

	ctx, cancel := context.WithTimeout(cn.s.ctx, forwardDialTimeout)
	stream, err := dialer.DialPort(ctx, t.instanceID, port)
	cancel()
	if err != nil {
		log.Info("SSH forward: dial failed", "error", err)
		switch {
		case errors.Is(err, fleet.ErrRefused):
			_ = nc.Reject(ssh.ConnectionFailed, fmt.Sprintf("nothing listens on port %d in %s %s", port, t.kind, t.name))
		case errors.Is(err, fleet.ErrNotSupported):
			_ = nc.Reject(ssh.Prohibited, fmt.Sprintf("%s %s cannot forward ports: %v", t.kind, t.name, err))
		case errors.Is(err, fleet.ErrUnreachable):
			_ = nc.Reject(ssh.ConnectionFailed, fmt.Sprintf("%s %s's host %s does not answer just now; try again shortly", t.kind, t.name, t.host))
		default:
			_ = nc.Reject(ssh.ConnectionFailed, fmt.Sprintf("devport could not reach port %d in %s %s: %v", port, t.kind, t.name, err))
		}
		return
	}
	defer stream.Close()

	who := store.UserActor(a.user, cn.remoteAddr, id)
	audit := func(ctx context.Context, action string, detail map[string]any) error {
		return cn.s.o.Store.InTx(ctx, func(tx *store.Tx) error {
			return tx.Audit(ctx, who, action, t.kind, t.name, detail)
		})
	}
	actx, acancel := context.WithTimeout(cn.s.ctx, 10*time.Second)
	err = audit(actx, "ssh.forward.open", map[string]any{
		"port": port, "to_host": d.Host, "key": cn.fingerprint, "host": t.host, "forward": id,
	})
	acancel()
	if err != nil {
		log.Error("SSH forward: audit failed", "error", err)
		_ = nc.Reject(ssh.ConnectionFailed, "devport could not record this forward, so it does not open; try again shortly")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		log.Info("SSH forward: accept failed", "error", err)
		cn.forwardClosed(log, id, audit, port, time.Now(), 0, 0, "client went away")
		return
	}
	begun := time.Now()
	log.Info("SSH forward opened")

	// The channel's requests end when the client closes the channel or the
	// connection goes.
	chClosed := make(chan struct{})
	go func() {
		for r := range reqs {
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
		close(chClosed)
	}()
	up := &countWriter{w: stream} // client → environment
	down := &countWriter{w: ch}   // environment → client
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		if _, err := io.Copy(up, ch); err == nil {
			// The client sent EOF: pass it on when the stream can.
			if cw, ok := stream.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}
	}()
	downDone := make(chan struct{})
	var envEnded atomic.Bool // the environment's side ended (before the client's close, if set first)
	go func() {
		defer close(downDone)
		_, _ = io.Copy(down, stream)
		envEnded.Store(true)
		_ = ch.CloseWrite()
	}()
	ended := ""
	select {
	case <-downDone:
		ended = "closed by the environment"
	case <-chClosed:
		// The client closes after the environment's end reached it, too.
		ended = "closed by the client"
		if envEnded.Load() {
			ended = "closed by the environment"
		}
	case <-cn.s.ctx.Done():
		ended = "portal shut down"
	}
	_ = stream.Close()
	_ = ch.Close()
	<-downDone
	select {
	case <-upDone:
	case <-time.After(outputGrace):
	}
	cn.forwardClosed(log, id, audit, port, begun, up.n.Load(), down.n.Load(), ended)
}

// forwardClosed audits the end of a forward.
func (cn *conn) forwardClosed(log *slog.Logger, id string, audit func(context.Context, string, map[string]any) error, port int, begun time.Time, up, down int64, ended string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	took := time.Since(begun).Round(time.Millisecond)
	detail := map[string]any{
		"port": port, "ended": ended, "bytes_to_environment": up, "bytes_from_environment": down,
		"duration": took.String(), "duration_ms": took.Milliseconds(), "forward": id,
	}
	if err := audit(ctx, "ssh.forward.close", detail); err != nil {
		log.Error("SSH forward: audit of its end failed", "error", err)
	}
	log.Info("SSH forward closed", "ended", ended, "bytes_to_environment", up, "bytes_from_environment", down, "duration", took)
}
