// Package guest holds what runs inside a bottle's agent on a backend that
// cannot do it from outside the guest (Apple's container, whose CLI copies
// files only into running containers and attaches only to a container it
// starts): the agent's init, its way to the sidecar, and its terminal.
//
// The init (Init, `bb-egress guest init`) starts as root with a handful of
// capabilities, and before the agent's command runs it writes the files a
// Spec lists (the bottle's CA into the system's bundle, /etc/hosts), then
// gives up root for good: every capability out of the bounding set, no new
// privileges, the agent's uid and groups. As the agent it writes the
// agent's own files, relays 127.0.0.1:<port> to the sidecar's socket (the
// agent's machine has no network device: that socket is its only way out),
// and runs the agent's command on a pseudo-terminal it holds, which any
// number of `bb-egress guest attach` clients join and leave while the agent
// runs. `bb-egress guest run` runs a command with no new privileges, for
// bb-launch exec.
//
// Only Linux has these: elsewhere every entry point says so.
package guest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Spec is what the init reads (spec.json, written by bb-launch into a
// folder the agent's container mounts read-only).
type Spec struct {
	// User is the agent's user: a name or uid of the image's /etc/passwd,
	// optionally :gid. Never root.
	User string `json:"user"`
	// Home, when set, is the agent's home instead of /etc/passwd's.
	Home string `json:"home,omitempty"`
	// AgentDirs are folders the init makes (when missing) and gives to
	// the agent as root, besides its home: a fresh repository's volume,
	// whose root a new filesystem gives to root. The agent's files may be
	// in them.
	AgentDirs []string `json:"agent_dirs,omitempty"`
	// Files are written before the agent starts: root's first, as root,
	// then the agent's, as the agent.
	Files []File `json:"files"`
	// Hosts are lines added to /etc/hosts ("127.0.0.1 bb.egress"), once.
	Hosts []string `json:"hosts"`
	// Relay is the agent's way to the sidecar.
	Relay Relay `json:"relay"`
	// Socket is where attach clients connect (owned by the agent, 0600).
	Socket string `json:"socket"`
	// WaitAttach holds the agent's command until the first client
	// attaches, so that it prints nothing before someone sees it, and
	// starts at the client's terminal size.
	WaitAttach bool `json:"wait_attach"`
	// Scrollback is how much of the agent's latest output a client
	// joining later is shown first (bytes; 0: DefaultScrollback).
	Scrollback int `json:"scrollback,omitempty"`
}

// Relay is a TCP listener in the guest whose connections go to a unix
// socket: the sidecar's proxy, relayed into the guest by the backend.
type Relay struct {
	Listen string `json:"listen"` // 127.0.0.1:3128
	Socket string `json:"socket"` // /bb/egress.sock
	// Mode is set on Socket before the agent's user needs it (octal, as
	// the backend creates it with the host socket's permissions).
	Mode uint32 `json:"mode,omitempty"`
}

// Owners of a File.
const (
	OwnerRoot  = "root"
	OwnerAgent = "agent"
)

// File is one file the init writes.
type File struct {
	// Path is absolute, or starts with "~/" for the agent's home. An
	// agent's file must lie in its home or one of AgentDirs.
	Path string `json:"path"`
	// Dir makes a folder (of Mode), not a file.
	Dir bool `json:"dir,omitempty"`
	// Mode is the file's permission bits (0644).
	Mode uint32 `json:"mode"`
	// Owner is OwnerRoot or OwnerAgent.
	Owner   string `json:"owner"`
	Content []byte `json:"content"`
	// Keep leaves a file that exists as it is (a CLI's own state, which a
	// resumed agent keeps).
	Keep bool `json:"keep,omitempty"`
	// AppendOnce adds Content to the end of the file unless it holds it
	// already (a CA to the system's bundle, on every boot of an image that
	// may have it from a snapshot).
	AppendOnce bool `json:"append_once,omitempty"`
}

// ReadyLine starts the line the init writes to its log once it has given
// root up, before the agent's command runs: the launch waits for it.
const ReadyLine = logPrefix + "running as uid"

const logPrefix = "bb-egress guest: "

// DefaultScrollback is Spec.Scrollback when unset: a screenful or two of a
// terminal program's drawing.
const DefaultScrollback = 64 << 10

// ReadSpec reads a Spec, refusing fields it does not know and what it
// cannot carry out.
func ReadSpec(r io.Reader, name string) (*Spec, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return &s, nil
}

// Check refuses a Spec that cannot be carried out.
func (s *Spec) Check() error {
	u, _, _ := strings.Cut(s.User, ":")
	switch {
	case u == "":
		return errors.New("user: empty")
	case u == "root" || u == "0":
		return fmt.Errorf("user: %q is root: the agent must run as another user", s.User)
	case s.Home != "" && !cleanAbs(s.Home):
		return fmt.Errorf("home: %q is not a clean absolute path", s.Home)
	case s.Socket == "" || !cleanAbs(s.Socket):
		return fmt.Errorf("socket: %q is not a clean absolute path", s.Socket)
	case s.Relay.Socket != "" && !cleanAbs(s.Relay.Socket):
		return fmt.Errorf("relay.socket: %q is not a clean absolute path", s.Relay.Socket)
	case (s.Relay.Listen == "") != (s.Relay.Socket == ""):
		return errors.New("relay: want both listen and socket, or neither")
	case s.Scrollback < 0:
		return errors.New("scrollback: negative")
	}
	for i, d := range s.AgentDirs {
		if !cleanAbs(d) || d == "/" {
			return fmt.Errorf("agent_dirs[%d]: %q is not a clean absolute folder", i, d)
		}
	}
	for i, f := range s.Files {
		p := f.Path
		if rest, ok := strings.CutPrefix(p, "~/"); ok {
			p = "/home/x/" + rest
		}
		switch {
		case !cleanAbs(p) || p == "/":
			return fmt.Errorf("files[%d]: path %q is not a clean absolute (or ~/) path", i, f.Path)
		case f.Owner != OwnerRoot && f.Owner != OwnerAgent:
			return fmt.Errorf("files[%d]: owner %q: want %s or %s", i, f.Owner, OwnerRoot, OwnerAgent)
		case f.Mode&^0o777 != 0:
			return fmt.Errorf("files[%d]: mode %o: want permission bits only", i, f.Mode)
		case f.AppendOnce && f.Keep:
			return fmt.Errorf("files[%d]: append_once and keep together", i)
		case f.Dir && (f.AppendOnce || len(f.Content) > 0):
			return fmt.Errorf("files[%d]: a folder with content", i)
		}
	}
	for i, h := range s.Hosts {
		if strings.ContainsAny(h, "\n\r") {
			return fmt.Errorf("hosts[%d]: a line break", i)
		}
	}
	return nil
}

func cleanAbs(p string) bool { return path.IsAbs(p) && path.Clean(p) == p }

// The attach protocol: frames of a type byte, a big-endian uint32 length
// and that many bytes, over the unix socket.
const (
	// client to init
	frameHello  = 'h' // JSON hello
	frameInput  = 'i' // keys typed
	frameResize = 'r' // JSON winsize
	// init to client
	frameOutput = 'o' // what the agent printed
	frameExit   = 'x' // uint32 exit status: the agent ended
	frameError  = 'e' // text: the init could not start the agent
)

// maxFrame bounds a frame a peer may send.
const maxFrame = 1 << 20

// hello is a client's first frame.
type hello struct {
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
}

type winsize struct {
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
}

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > maxFrame {
		return fmt.Errorf("frame of %d bytes", len(payload))
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return head[0], payload, nil
}

// ring keeps the last n bytes written.
type ring struct {
	buf []byte
	max int
}

func (r *ring) Write(p []byte) {
	if len(p) >= r.max {
		r.buf = append(r.buf[:0], p[len(p)-r.max:]...)
		return
	}
	if over := len(r.buf) + len(p) - r.max; over > 0 {
		r.buf = append(r.buf[:0], r.buf[over:]...)
	}
	r.buf = append(r.buf, p...)
}

func (r *ring) Bytes() []byte { return bytes.Clone(r.buf) }

// ExitError is the agent's exit status, which the command passes on.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("the agent exited with status %d", e.Code) }

// ErrNotLinux is every entry point's error where the guest cannot run.
var ErrNotLinux = errors.New("bb-egress guest runs only inside a Linux bottle")
