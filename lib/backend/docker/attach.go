package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/terminal"
)

// DetachKeys leave an attached agent running: Ctrl-P then Ctrl-Q, as with
// docker attach.
var DetachKeys = []byte{0x10, 0x11}

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
	go func() { input <- copyInput(s.hj.Conn, term) }()
	// Unblocks the input's read of the terminal when Run returns.
	defer term.File().SetReadDeadline(time.Now()) //nolint:errcheck

	select {
	case <-ctx.Done():
		return 0, false, ctx.Err()
	case err := <-input:
		if errors.Is(err, errDetached) {
			return 0, true, nil
		}
		// The terminal is gone (hung up): the agent keeps running.
		return 0, true, nil
	case <-output:
	}
	return s.exitCode(ctx)
}

var errDetached = errors.New("detached")

// copyInput copies keys from term to w until DetachKeys are typed (then
// errDetached) or term ends. A Ctrl-P is held until the next key shows
// whether it starts the sequence.
func copyInput(w io.Writer, term io.Reader) error {
	buf := make([]byte, 1024)
	held := false
	for {
		n, err := term.Read(buf)
		out := make([]byte, 0, n+1)
		for _, b := range buf[:n] {
			switch {
			case held && b == DetachKeys[1]:
				return errDetached
			case held:
				out = append(out, DetachKeys[0])
				held = false
				if b == DetachKeys[0] {
					held = true
					continue
				}
				out = append(out, b)
			case b == DetachKeys[0]:
				held = true
			default:
				out = append(out, b)
			}
		}
		if len(out) > 0 {
			if _, werr := w.Write(out); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
	}
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
