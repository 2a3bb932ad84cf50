package guest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Attach joins the terminal in/out to the agent's session at socket: in is
// put in raw mode (when it is a terminal) and its size followed, keys go to
// the agent, what the agent prints comes out. It ends when the agent exits
// (its status is returned), when the session ends without one (255), or
// when ctx does (the agent goes on).
func Attach(ctx context.Context, socket string, in *os.File, out io.Writer) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, fmt.Errorf("joining the agent's terminal: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()

	size := winsize{}
	if ws, err := getSize(in); err == nil {
		size = ws
		if restore, err := makeRaw(in); err == nil {
			defer restore()
		}
	}
	hi, _ := json.Marshal(hello(size))
	if err := writeFrame(conn, frameHello, hi); err != nil {
		return 0, fmt.Errorf("joining the agent's terminal: %w", err)
	}
	var wmu sync.Mutex
	send := func(typ byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(conn, typ, p)
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-winch:
				if ws, err := getSize(in); err == nil {
					b, _ := json.Marshal(ws)
					send(frameResize, b)
				}
			}
		}
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if send(frameInput, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		typ, p, err := readFrame(conn)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 255, errors.New("the agent's terminal closed without its exit status")
		}
		switch typ {
		case frameOutput:
			if _, err := out.Write(p); err != nil {
				return 0, err
			}
		case frameExit:
			if len(p) != 4 {
				return 255, errors.New("a malformed exit status")
			}
			return int(binary.BigEndian.Uint32(p)), nil
		case frameError:
			return 255, fmt.Errorf("the agent did not start: %s", p)
		}
	}
}

func getSize(f *os.File) (winsize, error) {
	var ws *unix.Winsize
	err := control(f, func(fd int) (err error) {
		ws, err = unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		return err
	})
	if err != nil {
		return winsize{}, err
	}
	return winsize{Cols: ws.Col, Rows: ws.Row}, nil
}

// makeRaw puts the terminal f in raw mode: keys reach the agent as typed
// (Ctrl-C too, which the agent's terminal turns into its signal).
func makeRaw(f *os.File) (restore func(), err error) {
	var old *unix.Termios
	err = control(f, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		old = t
		raw := *t
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		return unix.IoctlSetTermios(fd, unix.TCSETS, &raw)
	})
	if err != nil {
		return nil, err
	}
	return func() {
		control(f, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, old) })
	}, nil
}
