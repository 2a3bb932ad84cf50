package macoscontainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/bb-bottles/bb/lib/terminal"
	"github.com/bb-bottles/bb/lib/terminal/pty"
)

// Session is a terminal's connection to a bottle's agent. The container
// CLI attaches only to a container it starts itself, so the agent's init
// holds the agent's terminal (lib/guest) and a session is `container exec
// --interactive --tty ... bb-egress guest attach` on a pseudo-terminal of
// this machine: bb relays the person's terminal to it, watching for the
// detach keys, and following its size.
type Session struct {
	tool  *Tool
	agent string // the agent's container
	argv  []string
	// stopped says, once the session's command ended, whether the agent's
	// container stopped (the agent exited) rather than still runs.
	stopped func(ctx context.Context) (bool, error)
}

// Close does nothing: a session holds nothing until it runs.
func (s *Session) Close() {}

// Run joins term to the agent until it exits (its status is code), the
// person types DetachKeys (detached), or ctx is done. The terminal is raw
// meanwhile and restored however Run ends.
func (s *Session) Run(ctx context.Context, term *terminal.Terminal) (code int, detached bool, err error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return 0, false, err
	}
	defer ptmx.Close()
	if sz, err := term.Size(); err == nil {
		pty.SetSize(ptmx, uint16(sz.Width), uint16(sz.Height)) //nolint:errcheck // a size is a nicety
	}
	if err := term.MakeRaw(); err != nil {
		tty.Close()
		return 0, false, err
	}
	defer term.Restore()
	cmd, err := s.tool.Start(ctx, Call{Args: s.argv, Stdin: tty, Stdout: tty, Stderr: tty,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}})
	tty.Close()
	if err != nil {
		return 0, false, err
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for sz := range term.Resizes(rctx) {
			pty.SetSize(ptmx, uint16(sz.Width), uint16(sz.Height)) //nolint:errcheck // the next resize tries again
		}
	}()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(term, ptmx)
	}()
	term.File().SetReadDeadline(time.Time{}) //nolint:errcheck // not every terminal has deadlines
	input := make(chan error, 1)
	go func() { input <- terminal.CopyInput(ptmx, term) }()
	defer term.File().SetReadDeadline(time.Now()) //nolint:errcheck

	hangUp := func() {
		// The CLI's terminal hangs up: it ends its exec, and the attach
		// client in the guest with it; the agent goes on.
		cmd.Process.Signal(syscall.SIGHUP)
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-ended
		}
	}
	select {
	case <-ctx.Done():
		hangUp()
		return 0, false, ctx.Err()
	case <-input:
		// Detached, or the person's terminal is gone: either way the
		// agent keeps running.
		hangUp()
		return 0, true, nil
	case werr := <-ended:
		// What the agent printed last reaches the terminal before its
		// status is told.
		select {
		case <-copied:
		case <-time.After(time.Second):
		}
		code := 0
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			code = ee.ExitCode()
		} else if werr != nil {
			return 0, false, fmt.Errorf("attaching to %s: %w", s.agent, werr)
		}
		stopped, err := s.stopped(ctx)
		if err != nil {
			return 0, false, err
		}
		if !stopped {
			// The agent runs on: the session, not the agent, ended.
			return 0, true, nil
		}
		return code, false, nil
	}
}
