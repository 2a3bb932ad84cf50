// Package ttyhold keeps a command's terminal inside a bottle's guest, for
// backends whose tool cannot attach a person to a running process (smolvm
// runs a command with a terminal only for as long as the one exec that
// started it). Hold runs the command on a pseudo-terminal it owns and lets
// one client at a time join it over a Unix socket; Attach is that client,
// run in the terminal of the tool's own interactive exec, and leaves on
// Ctrl-P Ctrl-Q with the command still running; Status says whether the
// command runs, or how it ended. bb-egress carries them as its hidden
// "guest" command, since its static Linux binary is what bb already puts
// into guests.
package ttyhold

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"time"
)

// DetachKeys leave an attached command running: Ctrl-P then Ctrl-Q, as with
// docker attach.
var DetachKeys = []byte{0x10, 0x11}

// Frame types. A frame is its type, a big-endian uint32 length and that
// many bytes.
const (
	frameHello  = 'h' // client: JSON hello, first
	frameData   = 'd' // either way: terminal bytes
	frameResize = 'r' // client: cols, rows as two big-endian uint16
	frameExit   = 'x' // holder: the command's exit status, big-endian int32
)

// maxFrame bounds a frame's payload: a peer cannot make the other allocate
// more.
const maxFrame = 1 << 20

type hello struct {
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
	Term string `json:"term,omitempty"`
}

func writeFrame(w io.Writer, typ byte, p []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.Write(append(hdr[:], p...)); err != nil {
		return err
	}
	return nil
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("a frame of %d bytes is over the limit of %d", n, maxFrame)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

func resizeFrame(cols, rows uint16) []byte {
	var p [4]byte
	binary.BigEndian.PutUint16(p[:2], cols)
	binary.BigEndian.PutUint16(p[2:], rows)
	return p[:]
}

// Result is what Status finds.
type Result struct {
	// Running says the holder still runs the command.
	Running bool `json:"running"`
	// ExitCode is the command's status once it ended; nil while it runs,
	// or when no holder ever ran at the socket.
	ExitCode *int `json:"exit_code,omitempty"`
}

// statusFile is where a holder leaves the command's status as it ends.
func statusFile(socket string) string { return socket + ".status" }

// Status reports on the holder at socket.
func Status(socket string) (Result, error) {
	b, err := os.ReadFile(statusFile(socket))
	if err == nil {
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return Result{}, fmt.Errorf("reading %s: %w", statusFile(socket), err)
		}
		r.Running = false
		return r, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Result{}, err
	}
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return Result{}, nil
	}
	c.Close()
	return Result{Running: true}, nil
}

func writeStatus(socket string, code int) error {
	b, err := json.Marshal(Result{ExitCode: &code})
	if err != nil {
		return err
	}
	tmp := statusFile(socket) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, statusFile(socket))
}
