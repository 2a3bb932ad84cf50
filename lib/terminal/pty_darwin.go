package terminal

import (
	"bytes"
	"unsafe"

	"golang.org/x/sys/unix"
)

// unlockPTY is grantpt(3), unlockpt(3) and ptsname(3) on macOS.
func unlockPTY(fd int) (string, error) {
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
