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
	"sync"

	"github.com/bb-bottles/bb/lib/terminal"
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
	// Closing it tells the init this client is done: once the status
	// came, the init waits for that before it ends the container.
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()

	size := winsize{}
	term, err := terminal.New(in)
	if err == nil {
		if sz, err := term.Size(); err == nil {
			size = winsize{Cols: uint16(sz.Width), Rows: uint16(sz.Height)}
		}
		if term.MakeRaw() == nil {
			defer term.Restore() //nolint:errcheck // the exec's terminal goes away with it
		}
	} else {
		term = nil
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
	if term != nil {
		go func() {
			for sz := range term.Resizes(ctx) {
				b, _ := json.Marshal(winsize{Cols: uint16(sz.Width), Rows: uint16(sz.Height)})
				send(frameResize, b) //nolint:errcheck // the session's end says it
			}
		}()
	}
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
			if term != nil {
				term.Restore() //nolint:errcheck // before the connection closes: the init ends soon after
			}
			return int(binary.BigEndian.Uint32(p)), nil
		case frameError:
			return 255, fmt.Errorf("the agent did not start: %s", p)
		}
	}
}
