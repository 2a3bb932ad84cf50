//go:build linux || darwin

package ttyhold

import (
	"os"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal: its controller, and the terminal the
// command gets.
func openPTY() (ptmx, tty *os.File, err error) {
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

// setSize sets the terminal's size; its command gets SIGWINCH.
func setSize(ptmx *os.File, cols, rows uint16) error {
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
