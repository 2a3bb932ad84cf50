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
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/bb-bottles/bb/lib/terminal/pty"
)

// Session is the agent's side of the guest once the init has given up
// root: the relay to the sidecar, the attach socket and the agent's
// command on a pseudo-terminal.
type Session struct {
	Spec    *Spec
	Command []string
	// Env and Dir are the agent's (nil: the init's own).
	Env []string
	Dir string
	// Logf reports what the init does (nil: nowhere).
	Logf func(format string, a ...any)
	// Ready, when set, is closed once the relay and the attach socket
	// listen.
	Ready chan struct{}
	// StopGrace is how long the agent has after a hangup before it is
	// killed, when ctx ends (0: 10s).
	StopGrace time.Duration
	// RelayAddr is where the relay listens, once Ready.
	RelayAddr net.Addr
}

func (s *Session) logf(format string, a ...any) {
	if s.Logf != nil {
		s.Logf(format, a...)
	}
}

// Run serves the session until the agent's command exits, and returns its
// status (128+signal for one killed by a signal). When ctx ends first, the
// agent's process group is hung up, then killed after StopGrace.
func (s *Session) Run(ctx context.Context) (int, error) {
	if len(s.Command) == 0 {
		return 0, errors.New("no command for the agent")
	}
	var relay net.Listener
	if s.Spec.Relay.Listen != "" {
		var err error
		relay, err = net.Listen("tcp", s.Spec.Relay.Listen)
		if err != nil {
			return 0, fmt.Errorf("listening for the agent's proxy connections: %w", err)
		}
		defer relay.Close()
		s.RelayAddr = relay.Addr()
		go s.serveRelay(relay)
	}
	if st, err := os.Lstat(s.Spec.Socket); err == nil && st.Mode().Type() == os.ModeSocket {
		os.Remove(s.Spec.Socket) // a previous boot's
	}
	ln, err := net.Listen("unix", s.Spec.Socket)
	if err != nil {
		return 0, fmt.Errorf("listening for attach clients: %w", err)
	}
	defer ln.Close()
	if err := os.Chmod(s.Spec.Socket, 0o600); err != nil {
		return 0, fmt.Errorf("listening for attach clients: %w", err)
	}
	h := &hub{scroll: ring{max: s.Spec.Scrollback}, clients: map[*client]bool{}, start: make(chan winsize, 1),
		ready: make(chan struct{}), done: make(chan struct{})}
	if h.scroll.max == 0 {
		h.scroll.max = DefaultScrollback
	}
	go h.accept(ln)
	if s.Ready != nil {
		close(s.Ready)
	}

	size := winsize{Cols: 80, Rows: 24}
	if s.Spec.WaitAttach {
		s.logf("waiting for the first attach to start the agent")
		select {
		case size = <-h.start:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	code, err := s.runAgent(ctx, h, size)
	if err != nil {
		h.fail(err.Error())
		return 0, err
	}
	h.exit(code)
	return code, nil
}

func (s *Session) serveRelay(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.DialTimeout("unix", s.Spec.Relay.Socket, 10*time.Second)
			if err != nil {
				s.logf("relaying a connection to the sidecar: %v", err)
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
			go func() { io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

func (s *Session) runAgent(ctx context.Context, h *hub, size winsize) (int, error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return 0, fmt.Errorf("opening the agent's terminal: %w", err)
	}
	defer ptmx.Close()
	setSize(ptmx, size)
	h.setPTY(ptmx)
	cmd := exec.Command(s.Command[0], s.Command[1:]...)
	cmd.Env, cmd.Dir = s.Env, s.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		tty.Close()
		return 0, fmt.Errorf("starting the agent: %w", err)
	}
	tty.Close()
	s.logf("started the agent (pid %d)", cmd.Process.Pid)

	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		buf := make([]byte, 32<<10)
		for {
			n, err := ptmx.Read(buf)
			if n > 0 {
				h.output(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		// A terminal's hangup first, as when a person closes one; then
		// a termination; then a kill.
		pgid := -cmd.Process.Pid
		grace := s.StopGrace
		if grace == 0 {
			grace = 10 * time.Second
		}
		werr = stop(pgid, waited, grace)
	}
	// What the agent printed last is read before its status is sent; a
	// process it left behind that still holds the terminal is not waited
	// for.
	select {
	case <-pumped:
	case <-time.After(500 * time.Millisecond):
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	} else if werr != nil {
		return 0, fmt.Errorf("waiting for the agent: %w", werr)
	}
	s.logf("the agent exited with status %d", code)
	return code, nil
}

func stop(pgid int, waited chan error, grace time.Duration) error {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		syscall.Kill(pgid, sig)
		select {
		case err := <-waited:
			return err
		case <-time.After(grace / 2):
		}
	}
	syscall.Kill(pgid, syscall.SIGKILL)
	return <-waited
}

// hub is the agent's terminal as its clients share it.
type hub struct {
	mu      sync.Mutex
	ptmx    *os.File
	scroll  ring
	clients map[*client]bool
	start   chan winsize // the first hello's size, once
	started bool
	ready   chan struct{} // closed once ptmx is set
	done    chan struct{} // closed once the agent ended
	ended   []byte        // the last frame, once the agent ended: exit or error
	endType byte
}

type client struct {
	conn net.Conn
	mu   sync.Mutex
	gone chan struct{} // closed once the client has left
}

func (c *client) send(typ byte, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return writeFrame(c.conn, typ, p)
}

func (h *hub) setPTY(f *os.File) {
	h.mu.Lock()
	h.ptmx = f
	h.mu.Unlock()
	close(h.ready)
}

func (h *hub) accept(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go h.serve(&client{conn: conn, gone: make(chan struct{})})
	}
}

func (h *hub) serve(c *client) {
	defer c.conn.Close()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, p, err := readFrame(c.conn)
	var hi hello
	if err != nil || typ != frameHello || json.Unmarshal(p, &hi) != nil {
		return
	}
	c.conn.SetReadDeadline(time.Time{})
	h.mu.Lock()
	if h.ended != nil {
		typ, last := h.endType, h.ended
		h.mu.Unlock()
		c.send(typ, last)
		return
	}
	h.clients[c] = true
	backlog := h.scroll.Bytes()
	// The first client's frames go out after the backlog: both under the
	// lock, so no output slips between them.
	c.send(frameOutput, backlog)
	size := winsize(hi)
	if !h.started {
		h.started = true
		if size.Cols == 0 || size.Rows == 0 {
			size = winsize{Cols: 80, Rows: 24}
		}
		h.start <- size
	} else if h.ptmx != nil && size.Cols > 0 && size.Rows > 0 {
		setSize(h.ptmx, size)
	}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.clients, c)
		h.mu.Unlock()
		close(c.gone)
	}()
	for {
		typ, p, err := readFrame(c.conn)
		if err != nil {
			return
		}
		// Keys typed while the agent starts wait for its terminal; after
		// its end they go nowhere, until the client leaves.
		select {
		case <-h.ready:
		case <-h.done:
			continue
		}
		h.mu.Lock()
		ptmx := h.ptmx
		h.mu.Unlock()
		switch typ {
		case frameInput:
			ptmx.Write(p)
		case frameResize:
			var ws winsize
			if json.Unmarshal(p, &ws) == nil && ws.Cols > 0 && ws.Rows > 0 {
				setSize(ptmx, ws)
			}
		}
	}
}

func (h *hub) output(p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.scroll.Write(p)
	for c := range h.clients {
		if c.send(frameOutput, p) != nil {
			c.conn.Close()
			delete(h.clients, c)
		}
	}
}

// end tells every client how the agent ended, and waits (a few seconds at
// most) for each to leave: the init's exit stops the container, which
// would end a client before it passed the status on.
func (h *hub) end(typ byte, p []byte) {
	h.mu.Lock()
	h.ended, h.endType = p, typ
	close(h.done)
	var clients []*client
	for c := range h.clients {
		c.send(typ, p)
		c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		clients = append(clients, c)
	}
	h.mu.Unlock()
	for _, c := range clients {
		<-c.gone
	}
}

func (h *hub) exit(code int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	h.end(frameExit, b[:])
}

func (h *hub) fail(msg string) { h.end(frameError, []byte(msg)) }

func setSize(f *os.File, ws winsize) {
	pty.SetSize(f, ws.Cols, ws.Rows) //nolint:errcheck // a size is a nicety
}
