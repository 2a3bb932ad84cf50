package ttyhold

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bb-bottles/bb/lib/terminal/pty"
)

// HoldOptions say what to hold and where.
type HoldOptions struct {
	// Socket is the Unix socket clients join at; Socket+".status" gets the
	// command's status as it ends.
	Socket string
	// Wait starts the command only once the first client has joined, so
	// that nothing it prints first is lost.
	Wait bool
	// Command is the command and its arguments; Env its environment (TERM
	// is the first client's, else xterm-256color, unless Env has one); Dir
	// its working folder ("" the holder's).
	Command []string
	Env     []string
	Dir     string
}

// writeTimeout drops a client that stops reading: the command must not
// stall on a full terminal because a terminal far away hung.
const writeTimeout = 10 * time.Second

// Hold runs o.Command on a pseudo-terminal until it exits, and returns its
// exit status (128+n for a signal n). ctx being done hangs the command up.
func Hold(ctx context.Context, o HoldOptions) (int, error) {
	if len(o.Command) == 0 {
		return 0, errors.New("holding a terminal: no command")
	}
	if err := os.MkdirAll(filepath.Dir(o.Socket), 0o700); err != nil {
		return 0, fmt.Errorf("holding a terminal: %w", err)
	}
	if r, _ := Status(o.Socket); r.Running {
		return 0, fmt.Errorf("holding a terminal: %s is held already", o.Socket)
	}
	os.Remove(o.Socket)
	os.Remove(statusFile(o.Socket))
	ln, err := net.Listen("unix", o.Socket)
	if err != nil {
		return 0, fmt.Errorf("holding a terminal: %w", err)
	}
	defer os.Remove(o.Socket)
	defer ln.Close()
	if err := os.Chmod(o.Socket, 0o600); err != nil {
		return 0, fmt.Errorf("holding a terminal: %w", err)
	}
	h := &holder{joined: make(chan *client, 1)}
	go h.accept(ln)

	size := hello{Cols: 80, Rows: 24}
	var first *client
	if o.Wait {
		select {
		case first = <-h.joined:
			size = first.hello
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	ptmx, tty, err := pty.Open()
	if err != nil {
		return 0, fmt.Errorf("holding a terminal: %w", err)
	}
	defer ptmx.Close()
	h.ptmx = ptmx
	pty.SetSize(ptmx, size.Cols, size.Rows) //nolint:errcheck // a size is a courtesy
	env := slices.Clone(o.Env)
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "TERM=") }) {
		term := size.Term
		if term == "" {
			term = "xterm-256color"
		}
		env = append(env, "TERM="+term)
	}
	if first != nil {
		// Joined before the command starts: its first words are not
		// printed to nobody.
		h.join(first)
	}
	cmd := exec.Command(o.Command[0], o.Command[1:]...)
	cmd.Env, cmd.Dir = env, o.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		tty.Close()
		return 0, fmt.Errorf("starting %s: %w", o.Command[0], err)
	}
	tty.Close()
	go h.serve()
	output := make(chan struct{})
	go func() {
		defer close(output)
		buf := make([]byte, 32<<10)
		for {
			n, err := ptmx.Read(buf)
			if n > 0 {
				h.send(frameData, buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	stop := context.AfterFunc(ctx, func() { cmd.Process.Signal(syscall.SIGHUP) }) //nolint:errcheck
	defer stop()
	code := 0
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return 0, fmt.Errorf("running %s: %w", o.Command[0], err)
		}
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	// What the command printed last is read before it is said to have
	// ended; a child of it holding the terminal open is not waited for.
	select {
	case <-output:
	case <-time.After(2 * time.Second):
	}
	if err := writeStatus(o.Socket, code); err != nil {
		return code, fmt.Errorf("recording the exit status: %w", err)
	}
	var st [4]byte
	st[0], st[1], st[2], st[3] = byte(uint32(code)>>24), byte(uint32(code)>>16), byte(uint32(code)>>8), byte(uint32(code))
	h.send(frameExit, st[:])
	h.drop()
	return code, nil
}

// holder is the terminal's side of its clients: one at a time, the newest.
type holder struct {
	ptmx   *os.File
	joined chan *client

	mu  sync.Mutex
	cur *client
}

type client struct {
	conn  net.Conn
	hello hello
}

// accept takes clients: each must say hello first, within a few seconds.
// A connection that says nothing is Status looking, and is let go.
func (h *holder) accept(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
			typ, p, err := readFrame(conn)
			var hi hello
			if err != nil || typ != frameHello || json.Unmarshal(p, &hi) != nil {
				conn.Close()
				return
			}
			conn.SetReadDeadline(time.Time{}) //nolint:errcheck
			c := &client{conn: conn, hello: hi}
			select {
			case h.joined <- c:
			default:
				// Nobody is taking clients: the command has ended.
				conn.Close()
			}
		}()
	}
}

// serve makes each client that joins the current one, in the newest's
// size, and copies what it types to the command.
func (h *holder) serve() {
	for c := range h.joined {
		h.join(c)
	}
}

func (h *holder) join(c *client) {
	h.mu.Lock()
	if h.cur != nil {
		h.cur.conn.Close()
	}
	h.cur = c
	h.mu.Unlock()
	if c.hello.Cols > 0 && c.hello.Rows > 0 {
		pty.SetSize(h.ptmx, c.hello.Cols, c.hello.Rows) //nolint:errcheck
	}
	go h.input(c)
}

func (h *holder) input(c *client) {
	defer func() {
		h.mu.Lock()
		if h.cur == c {
			h.cur = nil
		}
		h.mu.Unlock()
		c.conn.Close()
	}()
	for {
		typ, p, err := readFrame(c.conn)
		if err != nil {
			return
		}
		switch typ {
		case frameData:
			if _, err := h.ptmx.Write(p); err != nil {
				return
			}
		case frameResize:
			if len(p) == 4 {
				pty.SetSize(h.ptmx, uint16(p[0])<<8|uint16(p[1]), uint16(p[2])<<8|uint16(p[3])) //nolint:errcheck
			}
		}
	}
}

// send writes one frame to the current client; output with none is
// dropped, as a terminal nobody looks at shows nothing.
func (h *holder) send(typ byte, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil {
		return
	}
	h.cur.conn.SetWriteDeadline(time.Now().Add(writeTimeout)) //nolint:errcheck
	if err := writeFrame(h.cur.conn, typ, p); err != nil {
		h.cur.conn.Close()
		h.cur = nil
	}
}

func (h *holder) drop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur != nil {
		h.cur.conn.Close()
		h.cur = nil
	}
	close(h.joined)
}

var errHolderGone = errors.New("the terminal holder went away")

// Attach joins the holder at socket: in (the terminal, raw while attached
// when it is one) goes to the command, its output to out, until the
// command exits (its status is code) or the person types DetachKeys
// (detached). size, when not nil, gives the terminal's size now and at
// every change; term is the TERM to ask for.
func Attach(ctx context.Context, socket string, in io.Reader, out io.Writer, size <-chan [2]uint16, term string) (code int, detached bool, err error) {
	conn, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return 0, false, fmt.Errorf("joining the terminal at %s: %w", socket, err)
	}
	defer conn.Close()
	var wmu sync.Mutex
	write := func(typ byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(conn, typ, p)
	}
	hi := hello{Term: term}
	if size != nil {
		select {
		case s, ok := <-size:
			if ok {
				hi.Cols, hi.Rows = s[0], s[1]
			}
		case <-time.After(time.Second):
		}
	}
	b, _ := json.Marshal(hi)
	if err := write(frameHello, b); err != nil {
		return 0, false, fmt.Errorf("joining the terminal at %s: %w", socket, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if size != nil {
		go func() {
			for {
				select {
				case s, ok := <-size:
					if !ok {
						return
					}
					write(frameResize, resizeFrame(s[0], s[1])) //nolint:errcheck
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	detach := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		pending := false
		for {
			n, err := in.Read(buf)
			var send []byte
			for _, c := range buf[:n] {
				if pending {
					pending = false
					if c == DetachKeys[1] {
						close(detach)
						conn.Close()
						return
					}
					send = append(send, DetachKeys[0])
				}
				if c == DetachKeys[0] {
					pending = true
					continue
				}
				send = append(send, c)
			}
			if len(send) > 0 && write(frameData, send) != nil {
				return
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	for {
		typ, p, err := readFrame(conn)
		if err != nil {
			select {
			case <-detach:
				return 0, true, nil
			default:
			}
			if ctx.Err() != nil {
				return 0, false, ctx.Err()
			}
			return 0, false, errHolderGone
		}
		switch typ {
		case frameData:
			if _, err := out.Write(p); err != nil {
				return 0, false, err
			}
		case frameExit:
			if len(p) != 4 {
				return 0, false, errHolderGone
			}
			return int(int32(uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3]))), false, nil
		}
	}
}
