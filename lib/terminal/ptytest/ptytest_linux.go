package ptytest

import (
	"fmt"

	"golang.org/x/sys/unix"
)

const ioctlGetTermios = unix.TCGETS

// unlock unlocks the controller fd's terminal and returns its path.
func unlock(fd int) (string, error) {
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return "", err
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("/dev/pts/%d", n), nil
}
