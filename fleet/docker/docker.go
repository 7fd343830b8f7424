// Package docker runs devservers as containers on Docker engines through the
// Engine API. A devserver is a container of its flavour's image with CPU and
// memory limits and a named volume for the user's home (/home/dev); labels
// carry devport's keys, so a retried Create finds what an earlier attempt made,
// and the container's name is derived from the key, so the engine itself
// refuses a second one.
//
// An instance ID is "<host>/<container name>": the host tells which engine to
// ask, the name is stable from the key (and names the home volume too, so a
// Destroy retried after the container is gone still removes the volume).
package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/devport/devport/fleet"
)

// DefaultImage is the image devservers run when neither the spec nor the
// options name one; fleet/docker/image/build.sh builds it (make docker-image).
const DefaultImage = "devport-base:latest"

// Labels devport puts on its containers and volumes.
const (
	LabelManaged = "devport.managed" // "true" on everything the driver makes
	LabelKey     = "devport.key"     // the Spec.Key that made it
	LabelName    = "devport.name"    // the devserver's name
	LabelHost    = "devport.host"    // the inventory host
	LabelVolume  = "devport.volume"  // on a container: its home volume
)

// Home is the devserver user's home directory in the container; User is that user.
const (
	Home = "/home/dev"
	User = "dev"
)

// Timeouts of engine calls: a control call (inspect, create, start, list)
// that takes longer means the engine is in trouble.
const (
	dialTimeout  = 5 * time.Second
	callTimeout  = 30 * time.Second
	stopTimeout  = 10 // seconds the engine waits after SIGTERM before SIGKILL
	execTimeout  = 30 * time.Minute
	healthExec   = 10 * time.Second
	outputLimit  = 1 << 20 // bytes of an Exec's output kept (the end of it)
	defaultShell = "bash"
)

// Options configure the driver.
type Options struct {
	Log *slog.Logger
	// Engines maps an inventory host's name to its Docker endpoint, such as
	// unix:///var/run/docker.sock or tcp://10.0.0.5:2375. Several hosts may
	// share one engine.
	Engines map[string]string
	// Image is the default image ("devport-base:latest" when empty).
	Image string
	// Labels are put on everything the driver makes and select what it
	// finds, e.g. devport.instance=<portal id> when portals share an engine.
	Labels map[string]string
}

// Driver is the Docker fleet driver.
type Driver struct {
	log     *slog.Logger
	engines map[string]string
	image   string
	labels  map[string]string

	mu      sync.Mutex
	clients map[string]*client.Client // by endpoint
}

var (
	_ fleet.Driver      = (*Driver)(nil)
	_ fleet.Interactive = (*Driver)(nil)
)

// New returns a driver for the given engines. It does not contact them:
// an engine that is down makes calls fail with fleet.ErrUnreachable later.
func New(opts Options) (*Driver, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Image == "" {
		opts.Image = DefaultImage
	}
	d := &Driver{
		log: opts.Log.With("component", "fleet/docker"), engines: map[string]string{},
		image: opts.Image, labels: map[string]string{}, clients: map[string]*client.Client{},
	}
	for host, endpoint := range opts.Engines {
		if host == "" || strings.Contains(host, "/") {
			return nil, fmt.Errorf("docker driver: host name %q must be non-empty and have no slash", host)
		}
		if endpoint == "" {
			return nil, fmt.Errorf("docker driver: host %s has no Docker endpoint", host)
		}
		u, err := client.ParseHostURL(endpoint)
		if err != nil {
			return nil, fmt.Errorf("docker driver: host %s: endpoint %q: %w", host, endpoint, err)
		}
		if u.Scheme != "unix" && u.Scheme != "tcp" && u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("docker driver: host %s: endpoint %q: use unix:///path/to/docker.sock or tcp://host:port", host, endpoint)
		}
		d.engines[host] = endpoint
	}
	for k, v := range opts.Labels {
		if k == LabelManaged || k == LabelKey || k == LabelName || k == LabelHost || k == LabelVolume {
			return nil, fmt.Errorf("docker driver: label %s is the driver's own", k)
		}
		d.labels[k] = v
	}
	return d, nil
}

// Name is "docker".
func (d *Driver) Name() string { return "docker" }

// Close closes the engine connections.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for ep, c := range d.clients {
		errs = append(errs, c.Close())
		delete(d.clients, ep)
	}
	return errors.Join(errs...)
}

// engine returns the client of host's engine.
func (d *Driver) engine(host string) (*client.Client, error) {
	endpoint, ok := d.engines[host]
	if !ok {
		return nil, fmt.Errorf("docker driver: no Docker engine configured for host %q", host)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.clients[endpoint]; ok {
		return c, nil
	}
	opts := []client.Opt{client.WithHost(endpoint), client.WithAPIVersionNegotiation()}
	if u, err := client.ParseHostURL(endpoint); err == nil && (u.Scheme == "unix" || u.Scheme == "tcp") {
		// A dial timeout, so that an engine that is gone fails fast instead
		// of hanging; calls carry their own deadlines.
		dialer := &net.Dialer{Timeout: dialTimeout}
		proto, addr := u.Scheme, u.Host // for unix, Host holds the socket's path
		opts = append(opts, client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, proto, addr)
		}))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker driver: host %s: %w", host, err)
	}
	d.clients[endpoint] = c
	return c, nil
}

// parseID splits an instance ID into its host and container name.
func parseID(id string) (host, name string, err error) {
	i := strings.LastIndex(id, "/")
	if i <= 0 || i == len(id)-1 {
		return "", "", fmt.Errorf("docker instance %q: %w (not a host/container ID)", id, fleet.ErrNotFound)
	}
	return id[:i], id[i+1:], nil
}

// target resolves an instance ID to its engine and container name.
func (d *Driver) target(id string) (*client.Client, string, string, error) {
	host, name, err := parseID(id)
	if err != nil {
		return nil, "", "", err
	}
	c, err := d.engine(host)
	if err != nil {
		return nil, "", "", err
	}
	return c, host, name, nil
}

// unsafeName matches what may not appear in a container or volume name.
var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// names returns the container and volume names of a key: readable, and
// distinct per key and per the driver's labels (two portals sharing an engine
// with the same keys do not collide).
func (d *Driver) names(key string) (containerName, volumeName string) {
	h := sha256.New()
	io.WriteString(h, key)
	for _, k := range sortedKeys(d.labels) {
		fmt.Fprintf(h, "\x00%s=%s", k, d.labels[k])
	}
	sum := hex.EncodeToString(h.Sum(nil))[:10]
	base := strings.Trim(unsafeName.ReplaceAllString(key, "-"), "-._")
	if len(base) > 40 {
		base = base[:40]
	}
	containerName = "devport-" + base + "-" + sum
	return containerName, containerName + "-home"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ownLabels are the labels of everything the driver makes for spec.
func (d *Driver) ownLabels(spec fleet.Spec, volumeName string) map[string]string {
	l := map[string]string{LabelManaged: "true", LabelKey: spec.Key, LabelName: spec.Name, LabelHost: spec.Host}
	if volumeName != "" {
		l[LabelVolume] = volumeName
	}
	for k, v := range d.labels {
		l[k] = v
	}
	return l
}

// selector filters what this driver made (with its extra labels).
func (d *Driver) selector(extra ...string) filters.Args {
	f := filters.NewArgs(filters.Arg("label", LabelManaged+"=true"))
	for k, v := range d.labels {
		f.Add("label", k+"="+v)
	}
	for _, e := range extra {
		f.Add("label", e)
	}
	return f
}

// call bounds a control call's duration.
func call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout)
}

// wrap turns an engine error into one the portal can act on: an engine
// that does not answer is fleet.ErrUnreachable, a missing container
// fleet.ErrNotFound.
func wrap(op, host string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case unreachable(err):
		return fmt.Errorf("docker %s on %s: %w: %w", op, host, fleet.ErrUnreachable, err)
	case errdefs.IsNotFound(err):
		return fmt.Errorf("docker %s on %s: %w: %w", op, host, fleet.ErrNotFound, err)
	}
	return fmt.Errorf("docker %s on %s: %w", op, host, err)
}

// unreachable tells errors of an engine that is down, gone or too slow.
func unreachable(err error) bool {
	if client.IsErrConnectionFailed(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ENOENT) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return strings.Contains(err.Error(), "Cannot connect to the Docker daemon")
}

// Create makes the container of spec (or finds the one an earlier call made
// with the same key) with its home volume; it does not start it.
func (d *Driver) Create(ctx context.Context, spec fleet.Spec) (fleet.Instance, error) {
	if spec.Key == "" {
		return fleet.Instance{}, errors.New("docker create: the spec has no key")
	}
	c, err := d.engine(spec.Host)
	if err != nil {
		return fleet.Instance{}, err
	}
	name, volName := d.names(spec.Key)
	if in, ok, err := d.find(ctx, c, spec); err != nil || ok {
		return in, err
	}

	image := spec.Image
	if image == "" {
		image = d.image
	}
	cctx, cancel := call(ctx)
	defer cancel()
	if _, err := c.ImageInspect(cctx, image); err != nil {
		if errdefs.IsNotFound(err) {
			return fleet.Instance{}, fmt.Errorf("docker create on %s: image %s does not exist on the engine; build it with `make docker-image` (fleet/docker/image/build.sh) or load it with `docker load`", spec.Host, image)
		}
		return fleet.Instance{}, wrap("image inspect", spec.Host, err)
	}
	info, err := c.Info(cctx)
	if err != nil {
		return fleet.Instance{}, wrap("info", spec.Host, err)
	}

	labels := d.ownLabels(spec, volName)
	if _, err := c.VolumeCreate(cctx, volume.CreateOptions{Name: volName, Labels: d.ownLabels(spec, "")}); err != nil {
		return fleet.Instance{}, wrap("volume create", spec.Host, err)
	}
	res := container.Resources{}
	if spec.CPUs > 0 {
		cpus := spec.CPUs
		if info.NCPU > 0 && cpus > info.NCPU {
			// The engine refuses a limit above its CPUs; such a limit is no limit.
			d.log.Warn("Limiting a container to the engine's CPUs", "host", spec.Host, "asked", spec.CPUs, "engine", info.NCPU)
			cpus = info.NCPU
		}
		res.NanoCPUs = int64(cpus) * 1e9
	}
	if spec.MemoryGB > 0 {
		res.Memory = int64(spec.MemoryGB) << 30
	}
	if spec.GPUs > 0 {
		res.DeviceRequests = []container.DeviceRequest{{Count: spec.GPUs, Capabilities: [][]string{{"gpu"}}}}
	}
	hostname := strings.Trim(unsafeName.ReplaceAllString(spec.Name, "-"), "-._")
	if len(hostname) > 63 {
		hostname = hostname[:63]
	}
	cfg := &container.Config{
		Image: image, Labels: labels, Hostname: hostname, User: User, WorkingDir: Home,
		Env: []string{"HOME=" + Home, "USER=" + User, "LANG=C.UTF-8"},
	}
	hc := &container.HostConfig{
		Resources:     res,
		Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: volName, Target: Home}},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
	}
	_, err = c.ContainerCreate(cctx, cfg, hc, nil, nil, name)
	if err != nil && errdefs.IsConflict(err) {
		// The name is taken: an earlier attempt made it (the engine may
		// have died before answering). Find it by its labels.
		if in, ok, ferr := d.find(ctx, c, spec); ferr != nil || ok {
			return in, ferr
		}
	}
	if err != nil {
		return fleet.Instance{}, wrap("create", spec.Host, err)
	}
	d.log.Info("Created container", "host", spec.Host, "container", name, "key", spec.Key, "image", image)
	return fleet.Instance{ID: spec.Host + "/" + name, Host: spec.Host, State: "created"}, nil
}

func ptr[T any](v T) *T { return &v }

// find returns the container an earlier Create with spec's key made.
func (d *Driver) find(ctx context.Context, c *client.Client, spec fleet.Spec) (fleet.Instance, bool, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	list, err := c.ContainerList(cctx, container.ListOptions{All: true, Filters: d.selector(LabelKey + "=" + spec.Key)})
	if err != nil {
		return fleet.Instance{}, false, wrap("list", spec.Host, err)
	}
	if len(list) == 0 {
		return fleet.Instance{}, false, nil
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Created < list[j].Created })
	if len(list) > 1 {
		d.log.Warn("Several containers carry one key; using the oldest", "key", spec.Key, "count", len(list))
	}
	s := list[0]
	name := strings.TrimPrefix(firstName(s.Names), "/")
	return fleet.Instance{ID: spec.Host + "/" + name, Host: spec.Host, State: state(s.State), Address: address(s)}, true, nil
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// state maps the engine's container states to the fleet's.
func state(s string) string {
	switch s {
	case "running", "restarting", "paused":
		return "running"
	case "created":
		return "created"
	}
	return "stopped"
}

func address(s container.Summary) string {
	if s.NetworkSettings == nil {
		return ""
	}
	for _, n := range s.NetworkSettings.Networks {
		if n != nil && n.IPAddress != "" {
			return n.IPAddress
		}
	}
	return ""
}

// inspect returns the container of id as an instance.
func (d *Driver) inspect(ctx context.Context, c *client.Client, host, name string) (fleet.Instance, container.InspectResponse, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	ci, err := c.ContainerInspect(cctx, name)
	if err != nil {
		return fleet.Instance{}, ci, wrap("inspect "+name, host, err)
	}
	in := fleet.Instance{ID: host + "/" + name, Host: host, State: "stopped"}
	if ci.State != nil {
		in.State = state(ci.State.Status)
	}
	if ci.NetworkSettings != nil {
		for _, n := range ci.NetworkSettings.Networks {
			if n != nil && n.IPAddress != "" {
				in.Address = n.IPAddress
				break
			}
		}
	}
	return in, ci, nil
}

// Start starts the container; starting a running one does nothing.
func (d *Driver) Start(ctx context.Context, id string) (fleet.Instance, error) {
	c, host, name, err := d.target(id)
	if err != nil {
		return fleet.Instance{}, err
	}
	cctx, cancel := call(ctx)
	defer cancel()
	err = c.ContainerStart(cctx, name, container.StartOptions{})
	if err != nil && strings.Contains(err.Error(), "already exists") {
		// The engine was killed while it started the container: it restarts
		// with the container stopped, but the container runtime keeps a task
		// of that container's ID, so the container cannot start again. A
		// fresh container of the same name, config and home volume can.
		d.log.Warn("Recreating a container the engine cannot start after a crash", "host", host, "container", name, "error", err)
		if err = d.recreate(cctx, c, name); err == nil {
			err = c.ContainerStart(cctx, name, container.StartOptions{})
		}
	}
	if err != nil {
		return fleet.Instance{}, wrap("start "+name, host, err)
	}
	in, _, err := d.inspect(ctx, c, host, name)
	return in, err
}

// recreate replaces a container with one of the same name and config; the
// home volume stays.
func (d *Driver) recreate(ctx context.Context, c *client.Client, name string) error {
	ci, err := c.ContainerInspect(ctx, name)
	if err != nil {
		return err
	}
	if ci.Config == nil || ci.HostConfig == nil {
		return fmt.Errorf("container %s has no config to recreate it from", name)
	}
	if err := c.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	_, err = c.ContainerCreate(ctx, ci.Config, ci.HostConfig, nil, nil, name)
	return err
}

// Stop stops the container, keeping its home; stopping a stopped one does nothing.
func (d *Driver) Stop(ctx context.Context, id string) error {
	c, host, name, err := d.target(id)
	if err != nil {
		return err
	}
	cctx, cancel := call(ctx)
	defer cancel()
	return wrap("stop "+name, host, c.ContainerStop(cctx, name, container.StopOptions{Timeout: ptr(stopTimeout)}))
}

// Destroy removes the container and its home volume; what is gone stays gone.
func (d *Driver) Destroy(ctx context.Context, id string) error {
	c, host, name, err := d.target(id)
	if errors.Is(err, fleet.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	cctx, cancel := call(ctx)
	defer cancel()
	volName := name + "-home"
	if _, ci, err := d.inspect(ctx, c, host, name); err == nil && ci.Config != nil && ci.Config.Labels[LabelVolume] != "" {
		volName = ci.Config.Labels[LabelVolume]
	} else if err != nil && !errors.Is(err, fleet.ErrNotFound) {
		return err
	}
	if err := c.ContainerRemove(cctx, name, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !errdefs.IsNotFound(err) {
		return wrap("remove "+name, host, err)
	}
	if err := c.VolumeRemove(cctx, volName, true); err != nil && !errdefs.IsNotFound(err) {
		return wrap("remove volume "+volName, host, err)
	}
	d.log.Info("Destroyed container", "host", host, "container", name, "volume", volName)
	return nil
}

// Migrate is not supported: a devserver moves to another host through a
// backup and a restore.
func (d *Driver) Migrate(ctx context.Context, id, toHost string) (fleet.Instance, error) {
	return fleet.Instance{}, fmt.Errorf("docker migrate %s to %s: %w (move it with a backup and a restore)", id, toHost, fleet.ErrNotSupported)
}

// Health is the container's state and whether an exec answers in it.
func (d *Driver) Health(ctx context.Context, id string) (fleet.Health, error) {
	c, host, name, err := d.target(id)
	if err != nil {
		return fleet.Health{}, err
	}
	now := time.Now()
	_, ci, err := d.inspect(ctx, c, host, name)
	if err != nil {
		return fleet.Health{}, err
	}
	if ci.State == nil || !ci.State.Running {
		detail := "container is not running"
		if ci.State != nil {
			detail = fmt.Sprintf("container is %s (exit code %d)", ci.State.Status, ci.State.ExitCode)
			if ci.State.OOMKilled {
				detail += ", killed for using too much memory"
			}
		}
		return fleet.Health{OK: false, Detail: detail, At: now}, nil
	}
	hctx, cancel := context.WithTimeout(ctx, healthExec)
	defer cancel()
	start := time.Now()
	res, err := d.exec(hctx, c, host, name, []string{"true"}, User)
	switch {
	case err != nil && errors.Is(err, fleet.ErrUnreachable) && ctx.Err() == nil && hctx.Err() == nil:
		return fleet.Health{}, err
	case err != nil:
		return fleet.Health{OK: false, Detail: "running, but a command does not run: " + err.Error(), At: now}, nil
	case res.ExitCode != 0:
		return fleet.Health{OK: false, Detail: fmt.Sprintf("running, but `true` exited with %d: %s", res.ExitCode, res.Output), At: now}, nil
	}
	return fleet.Health{OK: true, Detail: fmt.Sprintf("running; a command answered in %d ms", time.Since(start).Milliseconds()), At: now}, nil
}

// Capacity is what the engine of host has: its CPUs and memory, and how many
// of devport's containers run there.
func (d *Driver) Capacity(ctx context.Context, host string) (fleet.Capacity, error) {
	c, err := d.engine(host)
	if err != nil {
		return fleet.Capacity{}, err
	}
	cctx, cancel := call(ctx)
	defer cancel()
	info, err := c.Info(cctx)
	if err != nil {
		return fleet.Capacity{}, wrap("info", host, err)
	}
	list, err := c.ContainerList(cctx, container.ListOptions{Filters: d.selector(LabelHost + "=" + host)})
	if err != nil {
		return fleet.Capacity{}, wrap("list", host, err)
	}
	return fleet.Capacity{CPUs: info.NCPU, MemoryGB: int(info.MemTotal >> 30), Instances: len(list)}, nil
}
