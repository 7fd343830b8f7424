package sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/devport/devport/fleet"
)

var _ fleet.Interactive = (*Driver)(nil)

// OpenSession runs a command, or a small line shell when spec.Cmd is empty,
// against the simulated home directory. The shell understands echo, exit,
// and whatever Exec understands (cat, ls, write, rm, true, false), and
// under a TTY it echoes and edits lines as a terminal's line discipline would.
func (d *Driver) OpenSession(ctx context.Context, id string, spec fleet.SessionSpec) (fleet.Session, error) {
	in, err := d.running(ctx, id, OpExec)
	if err != nil {
		return nil, err
	}
	s := &session{d: d, id: id, name: in.Name, tty: spec.TTY, done: make(chan struct{})}
	s.stdin, s.stdout = newBufferedPipe(), newBufferedPipe()
	if !spec.TTY {
		s.stderr = newBufferedPipe()
	}
	go s.run(context.WithoutCancel(ctx), spec.Cmd)
	return s, nil
}

type session struct {
	d    *Driver
	id   string
	name string
	tty  bool

	stdin, stdout, stderr *bufferedPipe

	// lines reads input without a TTY.
	lines *bufio.Reader

	once sync.Once
	done chan struct{}
	exit int
	err  error
}

func (s *session) Stdin() io.WriteCloser { return s.stdin }
func (s *session) Stdout() io.Reader     { return s.stdout }

func (s *session) Stderr() io.Reader {
	if s.stderr == nil {
		return nil
	}
	return s.stderr
}

// Resize has nothing to do: the simulated shell does not lay out its output.
func (s *session) Resize(context.Context, uint16, uint16) error { return nil }

func (s *session) Wait(ctx context.Context) (int, error) {
	select {
	case <-s.done:
		return s.exit, s.err
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

func (s *session) Close() error {
	s.stdin.Close()
	s.finish(-1, errors.New("session closed"))
	return nil
}

// closed tells whether the session has ended: input typed ahead of a
// closed session is not run.
func (s *session) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *session) finish(code int, err error) {
	s.once.Do(func() {
		s.exit, s.err = code, err
		s.stdout.Close()
		if s.stderr != nil {
			s.stderr.Close()
		}
		close(s.done)
	})
}

func (s *session) newline() string {
	if s.tty {
		return "\r\n"
	}
	return "\n"
}

func (s *session) write(text string) {
	if s.tty {
		text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n")
	}
	_, _ = io.WriteString(s.stdout, text)
}

func (s *session) run(ctx context.Context, cmd []string) {
	if len(cmd) > 0 {
		if len(cmd) >= 3 && cmd[0] == "sh" && cmd[1] == "-c" {
			cmd = cmd[2:3]
		}
		code, _ := s.script(ctx, strings.Join(cmd, " "))
		s.finish(code, nil)
		return
	}
	s.write("Welcome to " + s.name + " (simulated devserver: a small shell; try echo, ls, cat, exit)\n")
	last := 0
	for {
		s.write("dev@" + s.name + ":~$ ")
		line, ok := s.readLine()
		if !ok || s.closed() {
			s.finish(last, nil)
			return
		}
		code, exited := s.script(ctx, line)
		if exited {
			s.finish(code, nil)
			return
		}
		last = code
	}
}

// readLine reads one line; under a TTY it echoes what is typed and handles
// backspace, Ctrl-C (a fresh line) and Ctrl-D (end of input on an empty line).
func (s *session) readLine() (string, bool) {
	if !s.tty {
		if s.lines == nil {
			s.lines = bufio.NewReader(s.stdin)
		}
		line, err := s.lines.ReadString('\n')
		if err != nil && line == "" {
			return "", false
		}
		return strings.TrimRight(line, "\r\n"), true
	}
	var line []rune
	buf := make([]byte, 1)
	for {
		if _, err := s.stdin.Read(buf); err != nil {
			return "", false
		}
		switch c := buf[0]; {
		case c == '\r' || c == '\n':
			s.write("\n")
			return string(line), true
		case c == 0x7f || c == 0x08:
			if len(line) > 0 {
				line = line[:len(line)-1]
				s.write("\b \b")
			}
		case c == 0x03:
			s.write("^C\n")
			return "", true
		case c == 0x04:
			if len(line) == 0 {
				s.write("exit\n")
				return "", false
			}
		case c >= 0x20:
			line = append(line, rune(c))
			_, _ = s.stdout.Write([]byte{c})
		}
	}
}

// script runs a line of simple commands separated by ";" and returns the
// last exit status, and whether the line asked to exit.
func (s *session) script(ctx context.Context, line string) (int, bool) {
	code := 0
	for _, part := range strings.Split(line, ";") {
		words := splitWords(part)
		if len(words) == 0 {
			continue
		}
		if s.closed() {
			return code, true
		}
		switch words[0] {
		case "exit":
			if len(words) > 1 {
				if n, err := strconv.Atoi(words[1]); err == nil {
					code = n & 0xff
				}
			}
			return code, true
		case "echo":
			s.write(strings.Join(words[1:], " ") + "\n")
			code = 0
			continue
		}
		res, err := s.d.Exec(ctx, s.id, words)
		if err != nil {
			s.write(fmt.Sprintf("sim: %v\n", err))
			code = 126
			continue
		}
		out := res.Output
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		if res.ExitCode != 0 && s.stderr != nil {
			_, _ = io.WriteString(s.stderr, out)
		} else {
			s.write(out)
		}
		code = res.ExitCode
	}
	return code, false
}

// splitWords splits a command line into words, honouring single and double quotes.
func splitWords(line string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	in := false
	for _, r := range strings.TrimSpace(line) {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// bufferedPipe is a pipe whose writes never wait for the reader, as a
// terminal's input buffer: what is typed is kept until the shell reads it.
type bufferedPipe struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
}

func newBufferedPipe() *bufferedPipe {
	p := &bufferedPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *bufferedPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, io.ErrClosedPipe
	}
	p.buf = append(p.buf, b...)
	p.cond.Signal()
	return len(b), nil
}

func (p *bufferedPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.closed {
		p.cond.Wait()
	}
	if len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	return n, nil
}

func (p *bufferedPipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.cond.Broadcast()
	return nil
}
