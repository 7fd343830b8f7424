// Package fleet is what the portal asks of infrastructure. Nothing above it
// knows which driver runs a host: jobs call a Driver, chosen by the host's
// driver name. Every call is idempotent, carries an idempotency key where it
// makes something, and may be slow; the portal calls drivers only from jobs.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors a driver reports in a way callers can act on.
var (
	// ErrNotFound: the instance does not exist (or no longer does).
	ErrNotFound = errors.New("instance not found")
	// ErrUnreachable: the host does not answer; retrying later may help.
	ErrUnreachable = errors.New("host unreachable")
	// ErrNotSupported: the driver cannot do this (for example live migration).
	ErrNotSupported = errors.New("not supported by this driver")
	// ErrRefused: nothing listens on the port a Dialer was asked to reach.
	ErrRefused = errors.New("connection refused")
)

// Spec is what to create: an environment of a flavour's size on a host.
type Spec struct {
	// Key makes Create idempotent: a second Create with the same key returns
	// the instance the first one made. It names the operation and the object,
	// such as "provision:devserver:42".
	Key      string
	Name     string // the devserver's name, for labels and logs
	Host     string // the host's name in the inventory
	Image    string // driver-specific; empty means the driver's default
	CPUs     int
	MemoryGB int
	DiskGB   int
	GPUs     int
}

// Instance is an environment as the driver sees it.
type Instance struct {
	ID      string
	Host    string
	State   string // created, running, stopped
	Address string
}

// ExecResult is what a command run in an instance produced.
type ExecResult struct {
	ExitCode int
	Output   string
}

// BackupInfo describes a copy of an instance's persistent data.
type BackupInfo struct {
	SizeBytes int64
	SHA256    string
}

// Health is an instance's condition.
type Health struct {
	OK     bool
	Detail string
	At     time.Time
}

// Capacity is what a host can take, as the driver reports it.
type Capacity struct {
	CPUs      int
	MemoryGB  int
	DiskGB    int
	GPUs      int
	Instances int // live instances on the host
}

// Driver runs environments on hosts.
type Driver interface {
	// Name is how hosts refer to the driver ("sim", "docker").
	Name() string
	Create(ctx context.Context, spec Spec) (Instance, error)
	Start(ctx context.Context, id string) (Instance, error)
	Stop(ctx context.Context, id string) error
	// Destroy removes the instance and its data. Destroying what is already
	// gone succeeds.
	Destroy(ctx context.Context, id string) error
	// Exec runs a command (a feature install, a one-off) and returns its output.
	Exec(ctx context.Context, id string, cmd []string) (ExecResult, error)
	// Backup streams the instance's persistent data to w.
	Backup(ctx context.Context, id string, w io.Writer) (BackupInfo, error)
	// Restore replaces the instance's persistent data with a backup read from r.
	Restore(ctx context.Context, id string, r io.Reader) error
	// Migrate moves a running instance to another host without stopping it.
	Migrate(ctx context.Context, id, toHost string) (Instance, error)
	Health(ctx context.Context, id string) (Health, error)
	Capacity(ctx context.Context, host string) (Capacity, error)
}

// Fleet chooses the driver of a host by the driver's name.
type Fleet struct {
	drivers map[string]Driver
}

// New returns a fleet of the given drivers.
func New(drivers ...Driver) *Fleet {
	f := &Fleet{drivers: map[string]Driver{}}
	for _, d := range drivers {
		f.drivers[d.Name()] = d
	}
	return f
}

// Driver returns the driver called name.
func (f *Fleet) Driver(name string) (Driver, error) {
	d, ok := f.drivers[name]
	if !ok {
		return nil, fmt.Errorf("no fleet driver %q", name)
	}
	return d, nil
}

// Names lists the drivers' names.
func (f *Fleet) Names() []string {
	names := make([]string, 0, len(f.drivers))
	for n := range f.drivers {
		names = append(names, n)
	}
	return names
}

// writeFileScript writes $2 to the file $1 (relative to the home directory),
// making its directory; run by a POSIX shell on a real host.
const writeFileScript = `mkdir -p "$(dirname "$1")" && printf '%s' "$2" > "$1"`

// WriteFileCmd is the command that writes content to a file in an
// instance's home directory. Real drivers run it with sh; the simulator
// recognises it and keeps the file.
func WriteFileCmd(path, content string) []string {
	return []string{"sh", "-c", writeFileScript, "sh", path, content}
}

// ParseWriteFileCmd returns the path and content of a WriteFileCmd.
func ParseWriteFileCmd(cmd []string) (path, content string, ok bool) {
	if len(cmd) == 6 && cmd[0] == "sh" && cmd[1] == "-c" && cmd[2] == writeFileScript && cmd[3] == "sh" {
		return cmd[4], cmd[5], true
	}
	return "", "", false
}

// SessionSpec is an interactive command to open in an instance: a login
// shell when Cmd is empty.
type SessionSpec struct {
	Cmd  []string
	TTY  bool // allocate a pseudo-terminal; its output merges stderr
	Env  []string
	Rows uint16
	Cols uint16
	// User is the account in the instance ("" means the devserver's user).
	User string
}

// Session is a command running in an instance with its input and output
// streamed: the SSH gateway and the web terminal bridge to one.
type Session interface {
	// Stdin takes what the person types.
	Stdin() io.WriteCloser
	// Stdout is the command's output (with stderr merged under a TTY).
	Stdout() io.Reader
	// Stderr is the command's error output without a TTY (nil with one).
	Stderr() io.Reader
	// Resize changes the pseudo-terminal's size.
	Resize(ctx context.Context, rows, cols uint16) error
	// Wait waits for the command to end and returns its exit status.
	Wait(ctx context.Context) (int, error)
	// Close ends the session, stopping the command if it still runs.
	Close() error
}

// Interactive is a driver that can open sessions (every driver should).
type Interactive interface {
	OpenSession(ctx context.Context, id string, spec SessionSpec) (Session, error)
}

// Dialer is a driver that can reach a TCP port on an instance's own
// loopback interface (127.0.0.1:port inside it), as SSH local port
// forwarding does (VS Code Remote-SSH starts its server on one). The stream
// runs through the driver, never to the instance's address. ctx bounds the
// dial only; Close ends the stream. A port where nothing listens is an error
// that wraps ErrRefused; a driver without processes returns ErrNotSupported.
type Dialer interface {
	DialPort(ctx context.Context, id string, port int) (io.ReadWriteCloser, error)
}
