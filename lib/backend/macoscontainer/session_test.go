//go:build linux || darwin

package macoscontainer

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bb-bottles/bb/internal/testio"
	"github.com/bb-bottles/bb/lib/terminal"
	"github.com/bb-bottles/bb/lib/terminal/pty"
)

// person is a pseudo-terminal standing for a person's: the test types into
// keys and reads what reaches the screen.
func person(t *testing.T) (keys *os.File, screen *testio.Buffer, term *terminal.Terminal) {
	t.Helper()
	keys, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	pty.SetSize(keys, 100, 30)
	t.Cleanup(func() { keys.Close(); tty.Close() })
	term, err = terminal.New(tty)
	if err != nil {
		t.Fatal(err)
	}
	screen = &testio.Buffer{}
	go io.Copy(screen, keys)
	return keys, screen, term
}

// agentContainer makes and starts, in the fake, an agent container whose
// init runs cmd (the fake runs it when a session attaches).
func agentContainer(t *testing.T, f *fake, cmd string) {
	t.Helper()
	build := t.TempDir()
	os.WriteFile(filepath.Join(build, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	f.run(t, "build", "--tag", "agent:1", build)
	f.run(t, "create", "--name", "bot-bottle-s-1", "--entrypoint", "/bb/guest/bb-egress", "--network", "none",
		"agent:1", "guest", "init", "--spec", "/bb/guest/spec.json", "--", "sh", "-c", cmd)
	f.run(t, "start", "bot-bottle-s-1")
}

func testSession(f *fake, stopped bool) *Session {
	return &Session{tool: &f.Tool, agent: "bot-bottle-s-1",
		argv: []string{"exec", "--interactive", "--tty", "--user", "agent", "bot-bottle-s-1",
			"/bb/guest/bb-egress", "guest", "attach", "--socket", "/run/bb/attach.sock"},
		stopped: func(context.Context) (bool, error) { return stopped, nil }}
}

// The person's keys reach the agent, its output the person's screen, at the
// person's terminal size; its status is the session's.
func TestSessionRelaysTheTerminal(t *testing.T) {
	f := newFake(t)
	agentContainer(t, f, `stty size; read x; echo "got:$x"; exit 6`)
	keys, screen, term := person(t)
	type result struct {
		code     int
		detached bool
		err      error
	}
	done := make(chan result, 1)
	go func() {
		code, detached, err := testSession(f, true).Run(t.Context(), term)
		done <- result{code, detached, err}
	}()
	testio.WaitFor(t, screen, "30 100")
	keys.Write([]byte("hello\r"))
	testio.WaitFor(t, screen, "got:hello")
	select {
	case r := <-done:
		if r.code != 6 || r.detached || r.err != nil {
			t.Errorf("Run = %d, %v, %v; want the agent's 6", r.code, r.detached, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end with the agent")
	}
}

// Ctrl-P Ctrl-Q detaches: the session ends, the agent does not; a Ctrl-P
// followed by another key reaches the agent as typed.
func TestSessionDetaches(t *testing.T) {
	f := newFake(t)
	agentContainer(t, f, `stty raw -echo; dd bs=1 count=2 2>/dev/null | od -An -tx1; sleep 30`)
	keys, screen, term := person(t)
	done := make(chan bool, 1)
	go func() {
		_, detached, err := testSession(f, false).Run(t.Context(), term)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- detached
	}()
	time.Sleep(300 * time.Millisecond)
	keys.Write([]byte{0x10, 'a'})
	testio.WaitFor(t, screen, "10 61")
	keys.Write(terminal.DetachKeys)
	select {
	case detached := <-done:
		if !detached {
			t.Error("Run did not report a detach")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the detach keys did not end the session")
	}
	if cs, _ := DecodeContainers([]byte(f.run(t, "list", "--format", "json"))); len(cs) != 1 {
		t.Errorf("the agent's container is not running after a detach: %+v", cs)
	}
}

// A session whose command ends while the agent's container still runs was
// not the agent's end: it is reported as detached.
func TestSessionEndedButAgentRuns(t *testing.T) {
	f := newFake(t)
	agentContainer(t, f, `exit 0`)
	_, _, term := person(t)
	code, detached, err := testSession(f, false).Run(t.Context(), term)
	if err != nil || !detached || code != 0 {
		t.Errorf("Run = %d, %v, %v; want a detach", code, detached, err)
	}
}

// Cancelling ends the session, not the agent.
func TestSessionCancelled(t *testing.T) {
	f := newFake(t)
	agentContainer(t, f, `sleep 30`)
	_, _, term := person(t)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := testSession(f, false).Run(ctx, term)
	if err == nil || time.Since(start) > 8*time.Second {
		t.Errorf("Run = %v after %v", err, time.Since(start))
	}
}
