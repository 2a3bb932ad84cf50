package gitgate

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// ZeroID is the all-zero object id: as an old id it creates a ref, as a
// new one it deletes it.
const ZeroID = "0000000000000000000000000000000000000000"

// Command is one ref update of a push.
type Command struct {
	Old, New string // 40 lower-case hex digits; ZeroID for none
	Ref      string
}

// Create reports whether c creates its ref; Delete whether it deletes it.
func (c Command) Create() bool { return c.Old == ZeroID }
func (c Command) Delete() bool { return c.New == ZeroID }

// Update is the head of a git-receive-pack request: everything before the
// pack, parsed as git's receive-pack reads it (read_head_info and
// read_push_options in builtin/receive-pack.c).
type Update struct {
	Commands []Command
	// Caps are the capabilities the client asked for, from every command
	// line that carries a list (receive-pack reads them from each).
	Caps []string
	// Shallow are the client's shallow commits.
	Shallow []string
	// Options are the push options (git push -o), sent when the client
	// asked for push-options.
	Options []string
	// HeadLen is the bytes of the head: the pack, if any, starts there.
	HeadLen int64
	// Text is the head's text — ref names, capabilities, options, shallow
	// lines — for the secret scan: all of it leaves with the push.
	Text []byte
}

// HasCap reports whether the client asked for capability name (alone or
// as name=value).
func (u *Update) HasCap(name string) bool {
	for _, c := range u.Caps {
		if c == name || strings.HasPrefix(c, name+"=") {
			return true
		}
	}
	return false
}

// Probe reports whether the request is git's probe: a flush and nothing
// else, sent before a large push to see that the server answers (it
// updates nothing, and receive-pack answers it with nothing).
func (u *Update) Probe() bool { return len(u.Commands) == 0 && len(u.Shallow) == 0 && u.HeadLen == 4 }

// UpdateLimits bound what ReadUpdate takes.
type UpdateLimits struct {
	MaxCommands int // ref updates in one push
	MaxOptions  int // push options
	MaxText     int // bytes of Text
}

// ReadUpdate reads the head of a receive-pack request from r, up to and
// including the flush that ends the command list (and the push options'
// flush, when the client asked for push-options). Anything git would
// refuse, and some things it would take that the gate will not (signed
// pushes, SHA-256 ids, empty packets), is an error: the gate does not
// guess at what the upstream would make of them.
func ReadUpdate(r io.Reader, lim UpdateLimits) (*Update, error) {
	p := newPktReader(r)
	u := &Update{}
	var text bytes.Buffer
	addText := func(b []byte) error {
		if text.Len()+len(b)+1 > lim.MaxText {
			return &LimitError{fmt.Sprintf("the push's ref names, options and capabilities are over %d bytes", lim.MaxText)}
		}
		text.Write(b)
		text.WriteByte('\n')
		return nil
	}
	pushOptions := false
	for {
		kind, line, err := p.next()
		if err == io.EOF {
			if p.n == 0 {
				return nil, &errPkt{"the request body is empty"}
			}
			return nil, &errPkt{"the command list has no flush"}
		}
		if err != nil {
			return nil, err
		}
		if kind == pktFlush {
			break
		}
		if kind != pktData {
			return nil, &errPkt{"a protocol v2 special packet in a push"}
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		if err := addText(line); err != nil {
			return nil, err
		}
		if len(line) == 0 {
			return nil, &errPkt{"an empty command"}
		}
		if bytes.HasPrefix(line, []byte("push-cert")) {
			return nil, &EndpointError{"signed pushes (push-cert) are not taken by the gate: push without --signed"}
		}
		if rest, ok := bytes.CutPrefix(line, []byte("shallow ")); ok {
			id, err := objectID(rest)
			if err != nil {
				return nil, fmt.Errorf("shallow line: %w", err)
			}
			u.Shallow = append(u.Shallow, id)
			continue
		}
		cmd, feats, hasFeats := bytes.Cut(line, []byte{0})
		if hasFeats {
			// Split as git's parse_feature_value reads them: a feature
			// stands between isspace() characters.
			for _, f := range strings.FieldsFunc(string(feats), gitSpace) {
				u.Caps = append(u.Caps, f)
				if f == "push-options" || strings.HasPrefix(f, "push-options=") {
					pushOptions = true
				}
			}
		}
		c, err := parseCommand(cmd)
		if err != nil {
			return nil, err
		}
		if len(u.Commands) >= lim.MaxCommands {
			return nil, &LimitError{fmt.Sprintf("the push updates more than %d refs", lim.MaxCommands)}
		}
		u.Commands = append(u.Commands, c)
	}
	if pushOptions && len(u.Commands) > 0 {
		for {
			kind, line, err := p.next()
			if err == io.EOF {
				return nil, &errPkt{"the push options have no flush"}
			}
			if err != nil {
				return nil, err
			}
			if kind == pktFlush {
				break
			}
			if kind != pktData {
				return nil, &errPkt{"a protocol v2 special packet in the push options"}
			}
			line = bytes.TrimSuffix(line, []byte("\n"))
			if err := addText(line); err != nil {
				return nil, err
			}
			if len(u.Options) >= lim.MaxOptions {
				return nil, &LimitError{fmt.Sprintf("the push has more than %d push options", lim.MaxOptions)}
			}
			u.Options = append(u.Options, string(line))
		}
	}
	u.HeadLen = p.n
	u.Text = text.Bytes()
	return u, nil
}

// gitSpace is git's isspace: its sane_ctype table's GIT_SPACE, which is
// not C's (no \v, no \f).
func gitSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// parseCommand reads "<old> <new> <ref>" as receive-pack's queue_command
// does, with ids of 40 hex digits (SHA-1: the gate reads SHA-1 packs only).
func parseCommand(b []byte) (Command, error) {
	const hexsz = 40
	if len(b) >= 2*64+2 && b[64] == ' ' && b[129] == ' ' {
		return Command{}, &EndpointError{"a SHA-256 repository: the gate reads SHA-1 repositories only"}
	}
	if len(b) < 2*hexsz+2 || b[hexsz] != ' ' || b[2*hexsz+1] != ' ' {
		return Command{}, &errPkt{fmt.Sprintf("expected old/new/ref, got %q", truncate(b, 100))}
	}
	old, err := objectID(b[:hexsz])
	if err != nil {
		return Command{}, err
	}
	nu, err := objectID(b[hexsz+1 : 2*hexsz+1])
	if err != nil {
		return Command{}, err
	}
	return Command{Old: old, New: nu, Ref: string(b[2*hexsz+2:])}, nil
}

// objectID reads 40 hex digits of either case (as git's get_oid_hex does)
// and returns them in lower case.
func objectID(b []byte) (string, error) {
	if len(b) != 40 {
		return "", &errPkt{fmt.Sprintf("%q is not an object id", truncate(b, 100))}
	}
	out := make([]byte, 40)
	for i, c := range b {
		if _, ok := hexVal(c); !ok {
			return "", &errPkt{fmt.Sprintf("%q is not an object id", truncate(b, 100))}
		}
		if c >= 'A' && c <= 'F' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out), nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
