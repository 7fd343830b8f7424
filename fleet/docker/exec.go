package docker

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/devport/devport/fleet"
)

// Exec runs cmd as the devserver's user in its home and returns its exit
// code and output (stdout and stderr together; the last megabyte of it).
func (d *Driver) Exec(ctx context.Context, id string, cmd []string) (fleet.ExecResult, error) {
	if len(cmd) == 0 {
		return fleet.ExecResult{}, errors.New("docker exec: no command")
	}
	c, host, name, err := d.target(id)
	if err != nil {
		return fleet.ExecResult{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, execTimeout)
		defer cancel()
	}
	return d.exec(ctx, c, host, name, cmd, User)
}

// exec runs cmd in the container as user and collects its output.
func (d *Driver) exec(ctx context.Context, c *client.Client, host, name string, cmd []string, user string) (fleet.ExecResult, error) {
	cctx, cancel := call(ctx)
	created, err := c.ContainerExecCreate(cctx, name, container.ExecOptions{
		User: user, WorkingDir: Home, Cmd: argv(cmd), AttachStdout: true, AttachStderr: true,
		Env: []string{"HOME=" + Home, "USER=" + User},
	})
	cancel()
	if err != nil {
		return fleet.ExecResult{}, wrap("exec in "+name, host, err)
	}
	att, err := c.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return fleet.ExecResult{}, wrap("exec attach in "+name, host, err)
	}
	defer att.Close()
	out := &tailBuffer{limit: outputLimit}
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(out, out, att.Reader)
		copied <- err
	}()
	select {
	case err = <-copied:
	case <-ctx.Done():
		att.Close()
		<-copied
		return fleet.ExecResult{ExitCode: -1, Output: out.String()}, wrap("exec in "+name, host, ctx.Err())
	}
	if err != nil {
		return fleet.ExecResult{ExitCode: -1, Output: out.String()}, wrap("exec output in "+name, host, err)
	}
	code, err := d.exitCode(ctx, c, host, created.ID)
	return fleet.ExecResult{ExitCode: code, Output: out.String()}, err
}

// exitCode waits for an exec to end and returns its exit code.
func (d *Driver) exitCode(ctx context.Context, c *client.Client, host, execID string) (int, error) {
	wait := 10 * time.Millisecond
	for {
		cctx, cancel := call(ctx)
		ins, err := c.ContainerExecInspect(cctx, execID)
		cancel()
		if err != nil {
			return -1, wrap("exec inspect", host, err)
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return -1, wrap("exec wait", host, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 250*time.Millisecond)
	}
}

// decodeArgs is run by sh: it decodes its base64 arguments and runs them.
const decodeArgs = `for a do v=$(printf '%s' "$a" | base64 -d; echo x); set -- "$@" "${v%x}"; shift; done; exec "$@"`

// argv returns cmd as the engine can carry it: the API is JSON, which has
// no room for bytes that are not UTF-8 (a binary file written with
// fleet.WriteFileCmd), so such a command travels base64-encoded and a shell
// in the container decodes it.
func argv(cmd []string) []string {
	for _, a := range cmd {
		if !utf8.ValidString(a) {
			out := []string{"/bin/sh", "-c", decodeArgs, "sh"}
			for _, a := range cmd {
				out = append(out, base64.StdEncoding.EncodeToString([]byte(a)))
			}
			return out
		}
	}
	return cmd
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	limit   int
	buf     []byte
	dropped int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.dropped += int64(over)
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return n, nil
}

func (b *tailBuffer) String() string {
	if b.dropped > 0 {
		return fmt.Sprintf("[%d bytes of earlier output omitted]\n%s", b.dropped, b.buf)
	}
	return string(b.buf)
}

// Backup streams the home directory out of the container as a gzip-compressed
// tar archive (paths relative to the home) into w and returns the size and
// SHA-256 of what it wrote. The container may be stopped.
func (d *Driver) Backup(ctx context.Context, id string, w io.Writer) (fleet.BackupInfo, error) {
	c, host, name, err := d.target(id)
	if err != nil {
		return fleet.BackupInfo{}, err
	}
	rc, _, err := c.CopyFromContainer(ctx, name, Home)
	if err != nil {
		return fleet.BackupInfo{}, wrap("backup of "+name, host, err)
	}
	defer rc.Close()
	h := sha256.New()
	count := &counter{}
	gz := gzip.NewWriter(io.MultiWriter(w, h, count))
	if err := rebase(tar.NewReader(rc), tar.NewWriter(gz), path.Base(Home)); err != nil {
		if unreachable(err) {
			return fleet.BackupInfo{}, wrap("backup of "+name, host, err)
		}
		return fleet.BackupInfo{}, fmt.Errorf("docker backup of %s on %s: %w", name, host, err)
	}
	if err := gz.Close(); err != nil {
		return fleet.BackupInfo{}, fmt.Errorf("docker backup of %s on %s: %w", name, host, err)
	}
	return fleet.BackupInfo{SizeBytes: count.n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// rebase copies a tar archive, removing the leading directory prefix from its
// names (the engine names entries "dev/..."; a backup holds "./...") and
// refusing names that would leave the home directory.
func rebase(tr *tar.Reader, tw *tar.Writer, prefix string) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		n, err := relName(hdr.Name, prefix)
		if err != nil {
			return err
		}
		hdr.Name = n
		if hdr.Typeflag == tar.TypeLink {
			if hdr.Linkname, err = relName(hdr.Linkname, prefix); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write archive: %w", err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("copy %s: %w", hdr.Name, err)
		}
	}
}

// relName makes an archive name relative ("./x") after removing prefix.
func relName(name, prefix string) (string, error) {
	clean := path.Clean("/" + name)[1:]
	if prefix != "" {
		switch {
		case clean == prefix:
			clean = ""
		case strings.HasPrefix(clean, prefix+"/"):
			clean = strings.TrimPrefix(clean, prefix+"/")
		}
	}
	if strings.HasPrefix(path.Clean(name), "..") || strings.Contains("/"+name+"/", "/../") {
		return "", fmt.Errorf("archive entry %q leaves the home directory", name)
	}
	if clean == "" {
		return "./", nil
	}
	return "./" + clean, nil
}

// Restore replaces the home directory with a backup made by Backup: it
// checks the archive, empties the home (the container must be running) and
// extracts the archive into it through the engine.
func (d *Driver) Restore(ctx context.Context, id string, r io.Reader) error {
	c, host, name, err := d.target(id)
	if err != nil {
		return err
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("docker restore into %s: the backup is not gzip-compressed: %w", name, err)
	}
	defer gz.Close()
	res, err := d.exec(ctx, c, host, name, []string{"find", Home, "-mindepth", "1", "-delete"}, User)
	if err != nil {
		return fmt.Errorf("docker restore into %s: empty the home: %w", name, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("docker restore into %s: emptying the home exited with %d: %s", name, res.ExitCode, strings.TrimSpace(res.Output))
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(rebase(tar.NewReader(gz), tar.NewWriter(pw), "")) }()
	err = c.CopyToContainer(ctx, name, Home, pr, container.CopyToContainerOptions{})
	pr.CloseWithError(err)
	if err != nil {
		if unreachable(err) {
			return wrap("restore into "+name, host, err)
		}
		return fmt.Errorf("docker restore into %s on %s: %w", name, host, err)
	}
	return nil
}
