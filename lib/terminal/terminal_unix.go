//go:build unix

package terminal

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// control runs fn with f's descriptor. Unlike f.Fd(), it leaves f in
// non-blocking mode, where read deadlines work: they are how a read of the
// terminal is ended.
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

func isTerminal(f *os.File) bool {
	return control(f, func(fd int) error {
		_, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
		return err
	}) == nil
}

// makeRaw is cfmakeraw(3), as x/term does it.
func makeRaw(f *os.File) (func() error, error) {
	var old *unix.Termios
	err := control(f, func(fd int) (err error) {
		old, err = unix.IoctlGetTermios(fd, ioctlGetTermios)
		return err
	})
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	set := func(t *unix.Termios) error {
		return control(f, func(fd int) error { return unix.IoctlSetTermios(fd, ioctlSetTermios, t) })
	}
	if err := set(&raw); err != nil {
		return nil, err
	}
	return func() error { return set(old) }, nil
}

func size(f *os.File) (Size, error) {
	var ws *unix.Winsize
	err := control(f, func(fd int) (err error) {
		ws, err = unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		return err
	})
	if err != nil {
		return Size{}, err
	}
	return Size{Width: uint(ws.Col), Height: uint(ws.Row)}, nil
}

func notifyResize(c chan<- os.Signal) { signal.Notify(c, syscall.SIGWINCH) }
