package smolvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/terminal"
	"github.com/bb-bottles/bb/lib/ttyhold"
)

// session is a terminal's way to the agent's holder: an interactive
// `machine exec` of bb-egress guest join, joined to the person's
// terminal. smolvm has no attach; the holder keeps the agent's terminal
// between sessions.
type session struct {
	t        *tool
	vm, slug string
}

// Run joins term to the agent until it exits, the person detaches (Ctrl-P
// Ctrl-Q, which the guest's attach takes), or ctx is done. How it ended is
// asked of the holder afterwards: smolvm's exit status alone cannot tell
// an agent's 1 from its own failure.
func (s *session) Run(ctx context.Context, term *terminal.Terminal) (code int, detached bool, err error) {
	if err := term.MakeRaw(); err != nil {
		return 0, false, err
	}
	defer term.Restore()
	cmd := s.t.command(ctx, nil, "machine", "exec", "--name", s.vm, "--interactive", "--tty", "--",
		GuestHelper, "guest", "join", "--socket", AgentSocket)
	f := term.File()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, f
	runErr := cmd.Run()
	term.Restore()
	if ctx.Err() != nil {
		return 0, false, ctx.Err()
	}
	var ee *exec.ExitError
	if runErr != nil && !errors.As(runErr, &ee) {
		return 0, false, exit.Backend(fmt.Errorf("attaching to bottle %s: %w", s.slug, runErr))
	}
	r, err := s.status(context.WithoutCancel(ctx))
	if err != nil {
		return 0, false, err
	}
	switch {
	case r.ExitCode != nil:
		return *r.ExitCode, false, nil
	case r.Running && runErr == nil:
		return 0, true, nil
	case r.Running:
		return 0, false, exit.Backend(fmt.Errorf("attaching to bottle %s: smolvm exited with status %d, and the agent still runs", s.slug, ee.ExitCode()),
			fmt.Sprintf("'bb-launch attach %s' tries again", s.slug))
	}
	return 0, false, exit.Backend(fmt.Errorf("bottle %s's agent is gone, and how it ended is not known (its VM stopped?)", s.slug))
}

// Close leaves the agent as it is: a session holds nothing between runs.
func (s *session) Close() {}

// status asks the holder in the agent's VM how the agent is.
func (s *session) status(ctx context.Context) (ttyhold.Result, error) {
	out, err := s.t.output(ctx, nil, "machine", "exec", "--name", s.vm, "--", GuestHelper, "guest", "status", "--socket", AgentSocket)
	if err != nil {
		return ttyhold.Result{}, fmt.Errorf("asking after bottle %s's agent: %w", s.slug, err)
	}
	var r ttyhold.Result
	if err := json.Unmarshal(out, &r); err != nil {
		return ttyhold.Result{}, exit.Backend(fmt.Errorf("asking after bottle %s's agent: %q: %w", s.slug, out, err))
	}
	return r, nil
}
