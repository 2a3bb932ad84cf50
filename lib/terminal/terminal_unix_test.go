//go:build unix

package terminal

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a new pseudo-terminal's controller and its terminal,
// closed when t ends. (ptytest opens them with this package.)
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, tty, err := OpenPTY()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	return ptmx, tty
}

func TestRawAndRestore(t *testing.T) {
	_, tty := openPTY(t)
	term, err := New(tty)
	if err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(tty.Fd()), ioctlGetTermios)
	if err != nil {
		t.Fatal(err)
	}
	if before.Lflag&unix.ICANON == 0 || before.Lflag&unix.ECHO == 0 {
		t.Fatalf("a new pty is not cooked: lflag %#x", before.Lflag)
	}
	if err := term.MakeRaw(); err != nil {
		t.Fatal(err)
	}
	if err := term.MakeRaw(); err != nil {
		t.Fatal(err)
	}
	raw, _ := unix.IoctlGetTermios(int(tty.Fd()), ioctlGetTermios)
	if raw.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG) != 0 {
		t.Errorf("raw mode keeps ICANON, ECHO or ISIG: lflag %#x", raw.Lflag)
	}
	if err := term.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := term.Restore(); err != nil {
		t.Errorf("a second Restore: %v", err)
	}
	after, _ := unix.IoctlGetTermios(int(tty.Fd()), ioctlGetTermios)
	if *after != *before {
		t.Errorf("termios after Restore = %+v, want %+v", *after, *before)
	}
}

func TestNotATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := New(f); !errors.Is(err, ErrNoTerminal) {
		t.Errorf("New(regular file) = %v, want ErrNoTerminal", err)
	}
}

func TestResizes(t *testing.T) {
	ptmx, tty := openPTY(t)
	term, err := New(tty)
	if err != nil {
		t.Fatal(err)
	}
	setSize := func(w, h uint16) {
		if err := unix.IoctlSetWinsize(int(ptmx.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: w, Row: h}); err != nil {
			t.Fatal(err)
		}
	}
	setSize(80, 24)
	ctx, cancel := context.WithCancel(t.Context())
	sizes := term.Resizes(ctx)
	next := func() Size {
		select {
		case s := <-sizes:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no size within 5s")
			return Size{}
		}
	}
	if s := next(); s != (Size{80, 24}) {
		t.Errorf("first size %v, want 80x24", s)
	}
	setSize(132, 43)
	// The pty is not this process's controlling terminal, so no SIGWINCH
	// comes by itself: send the one a resize would.
	unix.Kill(os.Getpid(), unix.SIGWINCH)
	if s := next(); s != (Size{132, 43}) {
		t.Errorf("size after resize %v, want 132x43", s)
	}
	cancel()
	for range sizes {
	}
}
