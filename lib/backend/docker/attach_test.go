package docker

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/terminal"
	"github.com/bb-bottles/bb/lib/terminal/ptytest"
)

// openPTY returns a new pseudo-terminal's controller and its terminal.
func openPTY(t *testing.T) (ptmx, tty *os.File) { return ptytest.Open(t, 100, 30) }

// screen collects what the agent writes to the terminal.
type screen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) waitFor(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		ok := strings.Contains(s.buf.String(), text)
		s.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Fatalf("the terminal never showed %q; it shows:\n%q", text, s.buf.String())
}

// A launched agent attached to a terminal: what it prints first is shown,
// keys reach it, the terminal size is its, Ctrl-P Ctrl-Q leaves it
// running, and its exit status comes back.
func TestAttach(t *testing.T) {
	c := needBase(t)
	ctx := t.Context()
	slug := newSlug("attach")
	p, raw := shellPlan(t, slug, nil)
	p.Agent.Command = []string{"bash", "--norc", "-i"}
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	var s *Session
	o := launchOptions(t, p, raw, st)
	o.BeforeStart = func(ctx context.Context, id string) (err error) {
		s, err = OpenAttach(ctx, c, id)
		return err
	}
	if _, err := Launch(ctx, c, o); err != nil {
		t.Fatal(err)
	}
	ptmx, tty := openPTY(t)
	term, err := terminal.New(tty)
	if err != nil {
		t.Fatal(err)
	}
	var out screen
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()

	type result struct {
		code     int
		detached bool
		err      error
	}
	run := func(s *Session) chan result {
		done := make(chan result, 1)
		go func() {
			code, detached, err := s.Run(ctx, term)
			done <- result{code, detached, err}
		}()
		return done
	}
	wait := func(done chan result) result {
		select {
		case r := <-done:
			return r
		case <-time.After(20 * time.Second):
			t.Fatal("the session did not end")
			return result{}
		}
	}

	done := run(s)
	ptmx.Write([]byte("echo size=$(stty size)\r"))
	out.waitFor(t, "size=30 100")
	// Ctrl-P then something else reaches the agent as typed; Ctrl-P Ctrl-Q
	// detaches.
	ptmx.Write([]byte("IFS= read -r line; printf 'got=%q\\n' \"$line\"\r"))
	time.Sleep(200 * time.Millisecond)
	ptmx.Write([]byte("a\x10b\r"))
	out.waitFor(t, `got=$'a\020b'`)
	ptmx.Write([]byte{0x10, 0x11})
	if r := wait(done); !r.detached || r.err != nil {
		t.Fatalf("after Ctrl-P Ctrl-Q: %+v, want detached", r)
	}
	if _, running, _ := FindContainer(ctx, c, slug, RoleAgent); !running {
		t.Fatal("the agent stopped when the terminal detached")
	}
	if attrs, err := ptytest.Termios(tty); err != nil || attrs.Lflag&unix.ICANON == 0 {
		t.Error("the terminal is still raw after the session")
	}

	// Attach again to the running agent, and end it.
	id, _, err := FindContainer(ctx, c, slug, RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	if s, err = OpenAttach(ctx, c, id); err != nil {
		t.Fatal(err)
	}
	done = run(s)
	ptmx.Write([]byte("exit 3\r"))
	if r := wait(done); r.code != 3 || r.detached || r.err != nil {
		t.Errorf("after exit 3: %+v", r)
	}
}
