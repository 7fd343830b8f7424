package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/devport/devport/fleet"
)

// dialScript connects to 127.0.0.1:$1 inside the container with bash's
// /dev/tcp and copies bytes both ways between the socket and the exec's
// input and output. It records its PID in $0 (so that Close can stop it)
// and, once connected, writes a line on stdout before any data (the
// engine does not keep stdout and stderr in order, so the mark travels in
// the data's own stream); a failure to connect is told on stderr instead.
// It ends when the socket has nothing more to say: the output then ends,
// which is how the caller sees the far side close. When its input ends
// first (the client's EOF), the writer shuts the socket's sending side with
// Perl (perl-base is in every Debian image) and the answer is still read,
// as sshd does; without Perl the socket is closed. Stopping the script
// (TERM or HUP) stops the copiers.
const dialScript = `echo $$ > "$0"
trap 'pkill -P "$w" 2>/dev/null; kill $r $w 2>/dev/null; exit 143' TERM HUP
exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
echo ` + dialConnected + `
exec 4<&0
cat <&3 2>/dev/null & r=$!
{ cat <&4 >&3 2>/dev/null
  perl -e 'open(my $s, "+<&=", 3) or exit 1; shutdown($s, 1) or exit 1' 2>/dev/null || kill $r 2>/dev/null; } & w=$!
wait $r
pkill -P "$w" 2>/dev/null; kill $w 2>/dev/null
rm -f "$0"
exit 0`

// dialConnected is the line dialScript writes on stdout once connected.
const dialConnected = "devport-connected"

// stopDial stops a dialScript by its PID file ($1): TERM (its trap stops
// the copiers), then KILL for whatever is left.
const stopDial = `p=$(cat "$1" 2>/dev/null); rm -f "$1"; [ -n "$p" ] || exit 0
kill -TERM "$p" 2>/dev/null || exit 0
for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || exit 0; sleep 0.1; done
pkill -KILL -P "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; exit 0`

// DialPort connects to 127.0.0.1:port inside the container, as the
// devserver's user, and returns the connection as a byte stream carried by
// an exec through the engine (never to the container's address). ctx bounds
// the dial; the stream lasts until Close or until the far side closes.
// Nothing listening on the port is an error wrapping fleet.ErrRefused.
func (d *Driver) DialPort(ctx context.Context, id string, port int) (io.ReadWriteCloser, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("docker dial: port %d is not between 1 and 65535", port)
	}
	c, host, name, err := d.target(id)
	if err != nil {
		return nil, err
	}
	tag := make([]byte, 8)
	_, _ = rand.Read(tag)
	pidFile := "/tmp/.devport-dial-" + hex.EncodeToString(tag)

	cctx, cancel := call(ctx)
	defer cancel()
	created, err := c.ContainerExecCreate(cctx, name, container.ExecOptions{
		User: User, WorkingDir: Home, Cmd: []string{"bash", "-c", dialScript, pidFile, strconv.Itoa(port)},
		Env:         []string{"HOME=" + Home, "USER=" + User},
		AttachStdin: true, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return nil, wrap(fmt.Sprintf("dial port %d in %s", port, name), host, err)
	}
	att, err := c.ContainerExecAttach(cctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, wrap(fmt.Sprintf("dial port %d in %s", port, name), host, err)
	}
	outR, outW := io.Pipe()
	errs := &tailBuffer{limit: 4096}
	s := &dialStream{d: d, c: c, host: host, name: name, execID: created.ID, pidFile: pidFile, att: att, out: outR, outW: outW}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, err := stdcopy.StdCopy(outW, errs, att.Reader)
		outW.CloseWithError(err)
	}()
	// The first line of the output says the script connected.
	mark := make(chan bool, 1)
	go func() {
		line := make([]byte, len(dialConnected)+1)
		_, err := io.ReadFull(outR, line)
		mark <- err == nil && string(line) == dialConnected+"\n"
	}()
	select {
	case ok := <-mark:
		if ok {
			return s, nil
		}
		// The script ended before connecting: say why.
		select {
		case <-copied:
		case <-ctx.Done():
			_ = s.Close()
			<-copied
		}
		code, _ := d.exitCode(ctx, c, host, created.ID)
		_ = s.Close()
		msg := strings.TrimSpace(errs.String())
		if strings.Contains(msg, "Connection refused") {
			return nil, fmt.Errorf("nothing listens on port %d in %s: %w", port, name, fleet.ErrRefused)
		}
		if msg == "" {
			msg = fmt.Sprintf("the connecting shell exited with %d", code)
		}
		return nil, fmt.Errorf("docker dial port %d in %s on %s: %s", port, name, host, msg)
	case <-ctx.Done():
		_ = s.Close()
		return nil, wrap(fmt.Sprintf("dial port %d in %s", port, name), host, ctx.Err())
	}
}

// dialStream is a connection made by DialPort.
type dialStream struct {
	d       *Driver
	c       *client.Client
	host    string
	name    string
	execID  string
	pidFile string
	att     types.HijackedResponse
	out     *io.PipeReader
	outW    *io.PipeWriter

	writeOnce sync.Once
	closeOnce sync.Once
	closeErr  error
}

// Read returns what the far side sent; io.EOF once it closed.
func (s *dialStream) Read(p []byte) (int, error) { return s.out.Read(p) }

// Write sends bytes to the far side.
func (s *dialStream) Write(p []byte) (int, error) { return s.att.Conn.Write(p) }

// CloseWrite says that nothing more will be sent; the far side may still
// answer.
func (s *dialStream) CloseWrite() error {
	var err error
	s.writeOnce.Do(func() { err = s.att.CloseWrite() })
	return err
}

// Close ends the connection: it stops the script if it still runs, then
// closes the engine's connection.
func (s *dialStream) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), healthExec)
		defer cancel()
		var err error
		ins, ierr := s.c.ContainerExecInspect(ctx, s.execID)
		if ierr == nil && ins.Running {
			_, err = s.d.exec(ctx, s.c, s.host, s.name, []string{"sh", "-c", stopDial, "sh", s.pidFile}, "root")
		} else {
			_, _ = s.d.exec(ctx, s.c, s.host, s.name, []string{"rm", "-f", s.pidFile}, "root")
		}
		s.att.Close()
		s.outW.Close()
		if err != nil && !errors.Is(err, fleet.ErrNotFound) {
			s.closeErr = fmt.Errorf("close connection in %s: %w", s.name, err)
		}
	})
	return s.closeErr
}
