// Package terminal holds what talking to a person's terminal needs:
// opening the controlling terminal (/dev/tty, since stdin is often the pipe
// that brought the plan), raw mode that is always restored, the window size
// with its changes; colour (when to use it, 24-bit or 256) and the tint that
// marks a terminal attached to a bottle, with its reset; and the prompts of
// bb-plan --ask (a pre-filled line, a colour picker).
package terminal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
)

// ErrNoTerminal is returned by Open when the process has no controlling
// terminal (cron, CI, a pipe from another program).
var ErrNoTerminal = errors.New("no terminal")

// Size is a terminal's size in character cells.
type Size struct {
	Width, Height uint
}

// Terminal is an open terminal device.
type Terminal struct {
	f       *os.File
	mu      sync.Mutex
	restore func() error
}

// Open opens the controlling terminal, /dev/tty, for reading and writing.
// It fails with an error matching ErrNoTerminal when there is none.
func Open() (*Terminal, error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/tty: %w: %w", ErrNoTerminal, err)
	}
	if !isTerminal(f) {
		f.Close()
		return nil, fmt.Errorf("opening /dev/tty: %w", ErrNoTerminal)
	}
	return &Terminal{f: f}, nil
}

// New wraps f, which must be a terminal (tests pass a pty).
func New(f *os.File) (*Terminal, error) {
	if !isTerminal(f) {
		return nil, fmt.Errorf("%s: %w", f.Name(), ErrNoTerminal)
	}
	return &Terminal{f: f}, nil
}

// File is the terminal's device, to read keys from and write output to.
func (t *Terminal) File() *os.File { return t.f }

// Read reads keys from the terminal.
func (t *Terminal) Read(p []byte) (int, error) { return t.f.Read(p) }

// Write writes to the terminal.
func (t *Terminal) Write(p []byte) (int, error) { return t.f.Write(p) }

// MakeRaw puts the terminal in raw mode: keys, Ctrl-C included, go to the
// agent as they are. Restore undoes it; calling MakeRaw twice is harmless.
func (t *Terminal) MakeRaw() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.restore != nil {
		return nil
	}
	restore, err := makeRaw(t.f)
	if err != nil {
		return fmt.Errorf("putting the terminal in raw mode: %w", err)
	}
	t.restore = restore
	return nil
}

// Restore puts the terminal back as MakeRaw found it. It is safe to call
// at any time, any number of times, and from a deferred call after a panic.
func (t *Terminal) Restore() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.restore == nil {
		return nil
	}
	err := t.restore()
	t.restore = nil
	if err != nil {
		return fmt.Errorf("restoring the terminal: %w", err)
	}
	return nil
}

// Close restores the terminal and closes it.
func (t *Terminal) Close() error {
	err := t.Restore()
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Size returns the terminal's size.
func (t *Terminal) Size() (Size, error) { return size(t.f) }

// Resizes sends the terminal's size now and every time it changes
// (SIGWINCH), until ctx is done; then the channel is closed. A size that
// cannot be read is skipped.
func (t *Terminal) Resizes(ctx context.Context) <-chan Size {
	out := make(chan Size, 1)
	sig := make(chan os.Signal, 1)
	notifyResize(sig)
	go func() {
		defer close(out)
		defer signal.Stop(sig)
		for {
			if s, err := t.Size(); err == nil && s.Width > 0 && s.Height > 0 {
				select {
				case out <- s:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-sig:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
