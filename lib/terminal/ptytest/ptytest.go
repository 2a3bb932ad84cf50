//go:build unix

// Package ptytest opens pseudo-terminals for tests (terminal.OpenPTY, on
// Linux and macOS); on other systems a test that needs one is skipped.
package ptytest

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bb-bottles/bb/lib/terminal"
)

// Open returns a new pseudo-terminal's controller and its terminal, closed
// when t ends, the terminal sized cols x rows (0 x 0 leaves the system's
// size). A system without pseudo-terminals skips t.
func Open(t testing.TB, cols, rows uint16) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, tty, err := terminal.OpenPTY()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	t.Cleanup(func() { tty.Close() })
	if cols != 0 || rows != 0 {
		if err := unix.IoctlSetWinsize(int(ptmx.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows}); err != nil {
			t.Fatal(err)
		}
	}
	return ptmx, tty
}

// Termios returns f's terminal attributes.
func Termios(f *os.File) (*unix.Termios, error) {
	return unix.IoctlGetTermios(int(f.Fd()), ioctlGetTermios)
}
