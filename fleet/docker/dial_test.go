package docker_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
)

// echoServer is a Perl program (perl-base is in the image) that listens on
// 127.0.0.1:$ARGV[0] and sends back whatever a connection sends it, one
// connection at a time.
const echoServer = `use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) { while (sysread($c, my $b, 65536)) { syswrite($c, $b) } close $c }`

// greeter listens on 127.0.0.1:$ARGV[0], says hello and closes each
// connection.
const greeter = `use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) { print $c "hello from port $ARGV[0]\n"; close $c }`

// listen starts a Perl server in the instance, in the background, and
// waits until its port takes connections.
func listen(t *testing.T, d fleet.Driver, id, program, port string) {
	t.Helper()
	res, err := d.Exec(ctxT(t, time.Minute), id, []string{"sh", "-c", `nohup perl -e "$1" "$2" >/tmp/listener-$2.log 2>&1 &`, "sh", program, port})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("start listener: %v %+v", err, res)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := d.Exec(ctxT(t, time.Minute), id, []string{"bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/$1`, "bash", port})
		if err == nil && res.ExitCode == 0 {
			return
		}
		if time.Now().After(deadline) {
			log, _ := d.Exec(ctxT(t, time.Minute), id, []string{"cat", "/tmp/listener-" + port + ".log"})
			t.Fatalf("nothing listens on %s after 20 s: %v %+v; listener log: %s", port, err, res, log.Output)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// DialPort reaches a port on the container's loopback: bytes pass both ways
// unchanged, the far side's close ends the stream, a port where nothing
// listens is refused with a reason, and Close stops what the dial started.
func TestDialPort(t *testing.T) {
	d, _, _ := newDriver(t)
	in := running(t, d, "dial-"+randHex(3))
	ctx := ctxT(t, 2*time.Minute)

	_, err := d.DialPort(ctx, in.ID, 7999)
	if !errors.Is(err, fleet.ErrRefused) || !strings.Contains(err.Error(), "nothing listens on port 7999 in ") {
		t.Fatalf("dial where nothing listens = %v, want ErrRefused saying nothing listens on port 7999", err)
	}
	if _, err := d.DialPort(ctx, in.ID, 70000); err == nil {
		t.Fatal("dial port 70000 succeeded")
	}
	if _, err := d.DialPort(ctx, host+"/no-such-container", 80); !errors.Is(err, fleet.ErrNotFound) {
		t.Fatalf("dial in a missing container = %v, want ErrNotFound", err)
	}

	// The far side speaks first and closes: the stream ends.
	listen(t, d, in.ID, greeter, "8081")
	conn, err := d.DialPort(ctx, in.ID, 8081)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "hello from port 8081\n" {
		t.Fatalf("read from greeter = %q, %v", got, err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}

	// Bytes both ways, binary and large, through an echo server.
	listen(t, d, in.ID, echoServer, "8082")
	conn, err = d.DialPort(ctx, in.ID, 8082)
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 1<<20)
	_, _ = rand.Read(blob)
	go func() { _, _ = conn.Write(blob) }()
	back := make([]byte, len(blob))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(conn, back); done <- err }()
	select {
	case err := <-done:
		if err != nil || !bytes.Equal(back, blob) {
			t.Fatalf("echo of 1 MiB: %v, equal %v", err, bytes.Equal(back, blob))
		}
	case <-time.After(time.Minute):
		t.Fatal("echo of 1 MiB took more than a minute")
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	// Close stopped the script and its copiers: no cat of the dev user is
	// left, and the echo server takes the next connection.
	if out := mustExec(t, d, in.ID, "sh", "-c", "ps -u dev -o comm= | grep -c '^cat$' || true"); strings.TrimSpace(out) != "0" {
		t.Errorf("copiers left after Close: %s", out)
	}
	if out := mustExec(t, d, in.ID, "sh", "-c", "ls /tmp/.devport-dial-* 2>/dev/null | wc -l"); strings.TrimSpace(out) != "0" {
		t.Errorf("PID files left after Close: %s", out)
	}
	// Closing the sending side reaches the far side (the echo server
	// closes when its input ends), and its answer still comes back.
	conn, err = d.DialPort(ctx, in.ID, 8082)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("again\n")); err != nil {
		t.Fatal(err)
	}
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(conn)
	if err != nil || string(got) != "again\n" {
		t.Fatalf("after CloseWrite = %q, %v, want the echo and the end", got, err)
	}
}
