package ptytest

import (
	"bytes"
	"unsafe"

	"golang.org/x/sys/unix"
)

const ioctlGetTermios = unix.TIOCGETA

// unlock grants and unlocks the controller fd's terminal and returns its
// path, as grantpt(3), unlockpt(3) and ptsname(3) do on macOS: the
// TIOCPTYGRANT, TIOCPTYUNLK and TIOCPTYGNAME ioctls of <sys/ttycom.h>, the
// last filling a 128-byte buffer with the name.
func unlock(fd int) (string, error) {
	if err := unix.IoctlSetInt(fd, unix.TIOCPTYGRANT, 0); err != nil {
		return "", err
	}
	if err := unix.IoctlSetInt(fd, unix.TIOCPTYUNLK, 0); err != nil {
		return "", err
	}
	var buf [128]byte
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCPTYGNAME, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return "", errno
	}
	name, _, _ := bytes.Cut(buf[:], []byte{0})
	return string(name), nil
}
