package pty

import (
	"bytes"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Open opens a new pseudo-terminal: its controller and its terminal, the
// terminal not made the caller's controlling one. It does what
// posix_openpt(3), grantpt(3), unlockpt(3) and ptsname(3) do on macOS: the
// TIOCPTYGRANT, TIOCPTYUNLK and TIOCPTYGNAME ioctls of <sys/ttycom.h>, the
// last filling a 128-byte buffer with the name.
func Open() (ptmx, tty *os.File, err error) {
	ptmx, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var name string
	err = control(ptmx, func(fd int) error {
		if err := unix.IoctlSetInt(fd, unix.TIOCPTYGRANT, 0); err != nil {
			return err
		}
		if err := unix.IoctlSetInt(fd, unix.TIOCPTYUNLK, 0); err != nil {
			return err
		}
		var buf [128]byte
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCPTYGNAME, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
			return errno
		}
		n, _, _ := bytes.Cut(buf[:], []byte{0})
		name = string(n)
		return nil
	})
	if err != nil {
		ptmx.Close()
		return nil, nil, fmt.Errorf("opening a pseudo-terminal: %w", err)
	}
	tty, err = os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	return ptmx, tty, nil
}
