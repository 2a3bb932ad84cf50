package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/terminal"
)

// DetachKeys leave an attached agent running: Ctrl-P then Ctrl-Q, as with
// docker attach (terminal.DetachKeys).
var DetachKeys = terminal.DetachKeys

// Session is a terminal's connection to an agent's container, opened before
// the container starts (so nothing it prints first is lost) or while it
// runs.
type Session struct {
	api Engine
	id  string
	hj  client.HijackedResponse
}

// OpenAttach connects to the container's terminal (it was created with a
// TTY, so input and output are one raw stream each way).
func OpenAttach(ctx context.Context, api Engine, id string) (*Session, error) {
	res, err := api.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("attaching to container %s: %w", id, err))
	}
	return &Session{api: api, id: id, hj: res.HijackedResponse}, nil
}

// Close ends the session, leaving the container as it is.
func (s *Session) Close() { s.hj.Close() }

// Run joins term to the session until the agent exits (its status is
// code), the person types DetachKeys (detached), or ctx is done. The
// terminal is in raw mode meanwhile, and follows resizes; it is restored
// however Run ends.
func (s *Session) Run(ctx context.Context, term *terminal.Terminal) (code int, detached bool, err error) {
	if err := term.MakeRaw(); err != nil {
		s.Close()
		return 0, false, err
	}
	defer term.Restore()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The agent's terminal has the person's size before the first key
	// reaches it (a command typed at once must not see 0 0), then follows.
	if sz, err := term.Size(); err == nil && sz.Width > 0 && sz.Height > 0 {
		s.api.ContainerResize(ctx, s.id, client.ContainerResizeOptions{Width: sz.Width, Height: sz.Height}) //nolint:errcheck // Resizes tries again
	}
	go func() {
		for sz := range term.Resizes(ctx) {
			s.api.ContainerResize(ctx, s.id, client.ContainerResizeOptions{Width: sz.Width, Height: sz.Height}) //nolint:errcheck // the next resize tries again
		}
	}()
	output := make(chan error, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, err := io.Copy(term, s.hj.Reader)
		output <- err
	}()
	// Nothing the agent sent is written to the terminal after Run returns:
	// the caller then resets what the agent may have changed (bb-launch's
	// tint), and a late write would undo the reset.
	defer func() {
		s.Close()
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
	}()
	// A deadline left by an earlier session would end this one's input at
	// once.
	term.File().SetReadDeadline(time.Time{}) //nolint:errcheck // not every terminal has deadlines
	input := make(chan error, 1)
	go func() { input <- terminal.CopyInput(s.hj.Conn, term) }()
	// Unblocks the input's read of the terminal when Run returns.
	defer term.File().SetReadDeadline(time.Now()) //nolint:errcheck

	select {
	case <-ctx.Done():
		return 0, false, ctx.Err()
	case err := <-input:
		if errors.Is(err, terminal.ErrDetached) {
			return 0, true, nil
		}
		// The terminal is gone (hung up): the agent keeps running.
		return 0, true, nil
	case <-output:
	}
	return s.exitCode(ctx)
}

// exitCode waits for the container whose output ended to stop, and returns
// its status; one still running after a while was detached by the engine.
func (s *Session) exitCode(ctx context.Context) (int, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w := s.api.ContainerWait(ctx, s.id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-w.Result:
		return int(r.StatusCode), false, nil
	case err := <-w.Error:
		if ctx.Err() != nil {
			return 0, true, nil
		}
		return 0, false, exit.Backend(fmt.Errorf("waiting for container %s: %w", s.id, err))
	}
}
