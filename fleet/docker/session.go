package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/devport/devport/fleet"
)

// OpenSession starts an interactive command in the container (a login shell
// when spec.Cmd is empty) with its input and output attached through the
// engine's hijacked connection.
func (d *Driver) OpenSession(ctx context.Context, id string, spec fleet.SessionSpec) (fleet.Session, error) {
	c, host, name, err := d.target(id)
	if err != nil {
		return nil, err
	}
	cmd := spec.Cmd
	if len(cmd) == 0 {
		cmd = []string{defaultShell, "-l"}
	}
	user := spec.User
	if user == "" {
		user = User
	}
	// The command records its PID, so that Close can stop it: the engine
	// has no call to end an exec.
	tag := make([]byte, 8)
	_, _ = rand.Read(tag)
	pidFile := "/tmp/.devport-session-" + hex.EncodeToString(tag)
	wrapped := append([]string{"/bin/sh", "-c", `echo $$ > "$0"; exec "$@"`, pidFile}, cmd...)
	env := []string{"HOME=" + Home, "USER=" + User}
	if spec.TTY {
		env = append(env, "TERM=xterm-256color")
	}
	env = append(env, spec.Env...)

	cctx, cancel := call(ctx)
	defer cancel()
	created, err := c.ContainerExecCreate(cctx, name, container.ExecOptions{
		User: user, WorkingDir: Home, Cmd: argv(wrapped), Env: env, Tty: spec.TTY,
		AttachStdin: true, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return nil, wrap("session in "+name, host, err)
	}
	att, err := c.ContainerExecAttach(cctx, created.ID, container.ExecAttachOptions{Tty: spec.TTY})
	if err != nil {
		return nil, wrap("session attach in "+name, host, err)
	}
	s := &session{d: d, c: c, host: host, name: name, execID: created.ID, pidFile: pidFile, att: att, tty: spec.TTY}
	s.stdin = &stdinWriter{s: s}
	if spec.TTY {
		s.stdout = att.Reader
	} else {
		outR, outW := io.Pipe()
		errR, errW := io.Pipe()
		s.stdout, s.stderr = outR, errR
		s.outW, s.errW = outW, errW
		go func() {
			_, err := stdcopy.StdCopy(outW, errW, att.Reader)
			outW.CloseWithError(err)
			errW.CloseWithError(err)
		}()
	}
	if spec.TTY && spec.Rows > 0 && spec.Cols > 0 {
		// The exec starts with the attach; its terminal may not exist for a
		// moment.
		for i := 0; i < 20; i++ {
			if err = s.Resize(ctx, spec.Rows, spec.Cols); err == nil {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if err != nil {
			d.log.Debug("Could not size a session's terminal", "container", name, "error", err)
		}
	}
	return s, nil
}

type session struct {
	d       *Driver
	c       *client.Client
	host    string
	name    string
	execID  string
	pidFile string
	att     types.HijackedResponse
	tty     bool
	stdin   io.WriteCloser
	stdout  io.Reader
	stderr  io.Reader
	// outW and errW feed stdout and stderr without a terminal; Close closes
	// them, which also frees the copier when nobody reads one of them.
	outW, errW *io.PipeWriter

	closeOnce sync.Once
}

type stdinWriter struct {
	s    *session
	once sync.Once
}

func (w *stdinWriter) Write(p []byte) (int, error) { return w.s.att.Conn.Write(p) }

func (w *stdinWriter) Close() error {
	var err error
	w.once.Do(func() { err = w.s.att.CloseWrite() })
	return err
}

func (s *session) Stdin() io.WriteCloser { return s.stdin }
func (s *session) Stdout() io.Reader     { return s.stdout }

func (s *session) Stderr() io.Reader {
	if s.tty {
		return nil
	}
	return s.stderr
}

// Resize sets the terminal's size.
func (s *session) Resize(ctx context.Context, rows, cols uint16) error {
	if !s.tty {
		return nil
	}
	cctx, cancel := call(ctx)
	defer cancel()
	return wrap("session resize in "+s.name, s.host, s.c.ContainerExecResize(cctx, s.execID, container.ResizeOptions{Height: uint(rows), Width: uint(cols)}))
}

// Wait waits for the command to end and returns its exit code.
func (s *session) Wait(ctx context.Context) (int, error) {
	return s.d.exitCode(ctx, s.c, s.host, s.execID)
}

// Close ends the session: it hangs up the command if it still runs, then
// closes the connection.
func (s *session) Close() error {
	var err error
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), healthExec)
		defer cancel()
		script := `p=$(cat "$1" 2>/dev/null); rm -f "$1"; [ -n "$p" ] || exit 0
kill -HUP "$p" 2>/dev/null || exit 0
for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || exit 0; sleep 0.1; done
kill -KILL "$p" 2>/dev/null; exit 0`
		ins, ierr := s.c.ContainerExecInspect(ctx, s.execID)
		if ierr == nil && ins.Running {
			_, err = s.d.exec(ctx, s.c, s.host, s.name, []string{"sh", "-c", script, "sh", s.pidFile}, "root")
		} else {
			_, _ = s.d.exec(ctx, s.c, s.host, s.name, []string{"rm", "-f", s.pidFile}, "root")
		}
		s.att.Close()
		if s.outW != nil {
			// The copier may be stuck writing to a stream nobody reads
			// (stderr, say), and so never see the closed connection: end
			// both streams, so that it and every reader return.
			s.outW.Close()
			s.errW.Close()
		}
		if err != nil && !errors.Is(err, fleet.ErrNotFound) {
			err = fmt.Errorf("close session in %s: %w", s.name, err)
		} else {
			err = nil
		}
	})
	return err
}
