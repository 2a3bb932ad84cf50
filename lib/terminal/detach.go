package terminal

import (
	"errors"
	"io"
	"os"
)

// DetachKeys leave an attached agent running: Ctrl-P then Ctrl-Q, as with
// docker attach, on every backend.
var DetachKeys = []byte{0x10, 0x11}

// ErrDetached is CopyInput's end when the person typed DetachKeys.
var ErrDetached = errors.New("detached")

// CopyInput copies keys from term to w until DetachKeys are typed (then
// ErrDetached) or term ends (nil when a read deadline ended it). A Ctrl-P
// is held until the next key shows whether it starts the sequence.
func CopyInput(w io.Writer, term io.Reader) error {
	buf := make([]byte, 1024)
	held := false
	for {
		n, err := term.Read(buf)
		out := make([]byte, 0, n+1)
		for _, b := range buf[:n] {
			switch {
			case held && b == DetachKeys[1]:
				return ErrDetached
			case held:
				out = append(out, DetachKeys[0])
				held = false
				if b == DetachKeys[0] {
					held = true
					continue
				}
				out = append(out, b)
			case b == DetachKeys[0]:
				held = true
			default:
				out = append(out, b)
			}
		}
		if len(out) > 0 {
			if _, werr := w.Write(out); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
	}
}
