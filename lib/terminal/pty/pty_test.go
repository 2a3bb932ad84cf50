//go:build linux || darwin

package pty

import (
	"io"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenAndSize(t *testing.T) {
	ptmx, tty, err := Open()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := SetSize(ptmx, 91, 33); err != nil {
		t.Fatal(err)
	}
	var ws *unix.Winsize
	control(tty, func(fd int) (err error) { ws, err = unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); return err })
	if ws == nil || ws.Col != 91 || ws.Row != 33 {
		t.Errorf("size = %+v", ws)
	}
	tty.Write([]byte("hi\n"))
	buf := make([]byte, 16)
	n, err := io.ReadAtLeast(ptmx, buf, 2)
	if err != nil || string(buf[:2]) != "hi" {
		t.Errorf("read %q, %v", buf[:n], err)
	}
}
