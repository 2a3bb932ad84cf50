package terminal

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// unlockPTY is unlockpt(3) and ptsname(3) on Linux.
func unlockPTY(fd int) (string, error) {
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return "", err
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("/dev/pts/%d", n), nil
}
