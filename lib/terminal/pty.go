//go:build linux || darwin

package terminal

import (
	"os"

	"golang.org/x/sys/unix"
)

// OpenPTY opens a new pseudo-terminal: its controller, and the terminal a
// command gets.
func OpenPTY() (ptmx, tty *os.File, err error) {
	ptmx, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var name string
	rc, err := ptmx.SyscallConn()
	if err == nil {
		if cerr := rc.Control(func(fd uintptr) { name, err = unlockPTY(int(fd)) }); cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	tty, err = os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	return ptmx, tty, nil
}

// SetPTYSize sets a pseudo-terminal's size through its controller; the
// terminal's process group gets SIGWINCH.
func SetPTYSize(ptmx *os.File, cols, rows uint16) error {
	rc, err := ptmx.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	}); err != nil {
		return err
	}
	return serr
}
