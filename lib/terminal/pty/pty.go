//go:build unix

// Package pty opens pseudo-terminals on Linux and macOS, where the ioctls
// that unlock and name one differ, and sets their size: for a terminal
// session relayed through a command (macos-container's attach), an agent
// run on a terminal its init holds (lib/guest), and tests.
package pty

import (
	"os"

	"golang.org/x/sys/unix"
)

// SetSize sets the terminal size of f (either end) to cols x rows.
func SetSize(f *os.File, cols, rows uint16) error {
	return control(f, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	})
}

// control runs fn with f's descriptor. Unlike f.Fd(), it leaves f in
// non-blocking mode, where a read can be ended by closing f.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
