package terminal

import (
	"context"
	"errors"
	"os"
	"time"
	"unicode/utf8"
)

// key is one key press: a rune typed, or one of the named keys.
type key struct {
	r    rune
	name keyName
}

type keyName int

const (
	keyRune keyName = iota
	keyEnter
	keyBackspace
	keyInterrupt // Ctrl-C
	keyKill      // Ctrl-U: the whole line
	keyUp
	keyDown
	keyLeft
	keyRight
	keyOther // a control key or sequence a prompt ignores
)

// parseKeys splits what a raw terminal sent into keys. An escape sequence
// cut at the end of b is left in rest for the next read; a lone ESC at the
// end is the Escape key (keyOther).
func parseKeys(b []byte) (keys []key, rest []byte) {
	for len(b) > 0 {
		c := b[0]
		switch {
		case c == '\r' || c == '\n':
			keys, b = append(keys, key{name: keyEnter}), b[1:]
		case c == 0x7f || c == 0x08:
			keys, b = append(keys, key{name: keyBackspace}), b[1:]
		case c == 0x03:
			keys, b = append(keys, key{name: keyInterrupt}), b[1:]
		case c == 0x15:
			keys, b = append(keys, key{name: keyKill}), b[1:]
		case c == 0x1b:
			n, k, ok := parseEscape(b)
			if !ok {
				return keys, b
			}
			keys, b = append(keys, k), b[n:]
		case c < 0x20:
			keys, b = append(keys, key{name: keyOther}), b[1:]
		default:
			if !utf8.FullRune(b) {
				return keys, b
			}
			r, n := utf8.DecodeRune(b)
			b = b[n:]
			if r == utf8.RuneError || r >= 0x80 && r < 0xa0 {
				keys = append(keys, key{name: keyOther})
				continue
			}
			keys = append(keys, key{r: r})
		}
	}
	return keys, nil
}

// parseEscape reads the escape sequence b starts with: ESC [ params final
// (CSI) or ESC O final (SS3; arrows in application mode). ok is false when
// b ends inside it.
func parseEscape(b []byte) (n int, k key, ok bool) {
	if len(b) == 1 {
		return 1, key{name: keyOther}, true
	}
	switch b[1] {
	case '[', 'O':
		for i := 2; i < len(b); i++ {
			if b[i] >= 0x40 && b[i] <= 0x7e {
				k := key{name: keyOther}
				// Arrows, with or without modifiers (ESC [ 1 ; 5 A).
				switch b[i] {
				case 'A':
					k.name = keyUp
				case 'B':
					k.name = keyDown
				case 'C':
					k.name = keyRight
				case 'D':
					k.name = keyLeft
				}
				return i + 1, k, true
			}
		}
		return 0, key{}, false
	}
	// ESC and a key: Alt+key, ignored.
	return 2, key{name: keyOther}, true
}

// keyReader reads keys from a terminal until ctx is done.
type keyReader struct {
	f    *os.File
	ctx  context.Context
	buf  []byte
	keys []key
}

func newKeyReader(ctx context.Context, f *os.File) *keyReader {
	// A deadline left by an earlier reader would end the first read.
	f.SetReadDeadline(time.Time{}) //nolint:errcheck // not every file has deadlines
	return &keyReader{f: f, ctx: ctx}
}

// next returns the next key; ctx being done ends a read in progress (by a
// read deadline) with ctx's error.
func (r *keyReader) next() (key, error) {
	for len(r.keys) == 0 {
		if err := r.ctx.Err(); err != nil {
			return key{}, err
		}
		stop := context.AfterFunc(r.ctx, func() { r.f.SetReadDeadline(time.Now()) }) //nolint:errcheck
		b := make([]byte, 256)
		n, err := r.f.Read(b)
		stop()
		r.buf = append(r.buf, b[:n]...)
		r.keys, r.buf = parseKeys(r.buf)
		if len(r.keys) > 0 {
			break
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && r.ctx.Err() != nil {
				return key{}, r.ctx.Err()
			}
			return key{}, err
		}
	}
	k := r.keys[0]
	r.keys = r.keys[1:]
	return k, nil
}
