package gitgate

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// RewriteAdvert copies the upstream's answer to info/refs?service=
// git-receive-pack from r to w, changing the capabilities of its first ref
// line: it adds no-thin, so that git sends a self-contained pack
// (gitprotocol-capabilities(5): "A client MUST NOT send a thin pack if the
// server advertises the no-thin capability"), and drops push-cert, as the
// gate takes no signed push. The rest is copied as it comes.
func RewriteAdvert(w io.Writer, r io.Reader) error {
	p := newPktReader(r)
	var out []byte
	// "# service=git-receive-pack" and its flush, then the first ref line.
	for i := 0; ; i++ {
		kind, line, err := p.next()
		if err != nil {
			if err == io.EOF {
				err = &errPkt{"the advertisement ends early"}
			}
			return fmt.Errorf("reading the upstream's refs: %w", err)
		}
		switch {
		case kind == pktData && i == 0 && bytes.HasPrefix(line, []byte("# service=")):
			out = appendPkt(out, string(line))
			continue
		case kind == pktFlush && i == 1:
			out = append(out, "0000"...)
			continue
		case kind == pktData && bytes.HasPrefix(line, []byte("version ")) && !bytes.Contains(line, []byte{0}):
			out = appendPkt(out, string(line)) // protocol v1 says so before its refs
			continue
		case kind == pktData:
			out = appendPkt(out, rewriteCaps(string(line)))
		case kind == pktFlush:
			out = append(out, "0000"...) // no refs and no capabilities
		default:
			return fmt.Errorf("reading the upstream's refs: %w", &errPkt{"a special packet in the advertisement"})
		}
		break
	}
	if _, err := w.Write(out); err != nil {
		return err
	}
	// What follows is the upstream's own, unchanged, from the bytes the
	// reader has buffered on.
	_, err := io.Copy(w, p.r)
	return err
}

// rewriteCaps adds no-thin to, and drops push-cert from, the capability
// list of a ref line ("<id> <ref>\x00<caps>\n").
func rewriteCaps(line string) string {
	ref, caps, ok := strings.Cut(line, "\x00")
	if !ok {
		return line
	}
	nl := strings.HasSuffix(caps, "\n")
	caps = strings.TrimSuffix(caps, "\n")
	var keep []string
	thin := false
	for _, c := range strings.Split(caps, " ") {
		switch {
		case c == "":
		case c == "push-cert" || strings.HasPrefix(c, "push-cert="):
		case c == "no-thin":
			thin = true
			keep = append(keep, c)
		default:
			keep = append(keep, c)
		}
	}
	if !thin {
		keep = append(keep, "no-thin")
	}
	out := ref + "\x00" + strings.Join(keep, " ")
	if nl {
		out += "\n"
	}
	return out
}

// advRef is one ref of an advertisement.
type advRef struct {
	id, name string
}

// readAdvert reads an upload-pack advertisement (protocol v0): the service
// line and its flush when present, then "<id> <ref>" lines (the first with
// the capabilities), then a flush.
func readAdvert(r io.Reader) ([]advRef, []string, error) {
	p := newPktReader(r)
	var refs []advRef
	var caps []string
	first := true
	for i := 0; ; i++ {
		kind, line, err := p.next()
		if err == io.EOF {
			return nil, nil, &errPkt{"the advertisement has no flush"}
		}
		if err != nil {
			return nil, nil, err
		}
		if i == 0 && kind == pktData && bytes.HasPrefix(line, []byte("# service=")) {
			if kind, _, err = p.next(); err != nil || kind != pktFlush {
				return nil, nil, &errPkt{"no flush after the service line"}
			}
			continue
		}
		if kind == pktFlush {
			return refs, caps, nil
		}
		if kind != pktData {
			return nil, nil, &errPkt{"a special packet in the advertisement"}
		}
		s := strings.TrimSuffix(string(line), "\n")
		if strings.HasPrefix(s, "ERR ") {
			return nil, nil, fmt.Errorf("the upstream says: %s", strings.TrimPrefix(s, "ERR "))
		}
		if first {
			var c string
			s, c, _ = strings.Cut(s, "\x00")
			caps = strings.Fields(c)
			first = false
		}
		id, name, ok := strings.Cut(s, " ")
		if !ok {
			return nil, nil, &errPkt{fmt.Sprintf("bad ref line %q", truncate([]byte(s), 100))}
		}
		if _, err := objectID([]byte(id)); err != nil {
			return nil, nil, err
		}
		if id == ZeroID && name == "capabilities^{}" {
			continue // an empty repository
		}
		refs = append(refs, advRef{id: strings.ToLower(id), name: name})
	}
}
