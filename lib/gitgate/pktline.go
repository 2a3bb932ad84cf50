package gitgate

import (
	"bufio"
	"fmt"
	"io"
)

// MaxPktLine is the largest pkt-line git sends or takes (LARGE_PACKET_MAX
// in git's pkt-line.h): four bytes of length and 65516 of payload.
const MaxPktLine = 65520

// A pkt-line's kind: data, or one of the special packets.
const (
	pktData  = iota
	pktFlush // 0000
	pktDelim // 0001 (protocol v2)
	pktEnd   // 0002 (protocol v2)
)

// errPkt is a malformed pkt-line stream: the gate refuses what it cannot
// read exactly as git would.
type errPkt struct{ msg string }

func (e *errPkt) Error() string { return "malformed pkt-line stream: " + e.msg }

// pktReader reads pkt-lines from a stream, counting the bytes it consumed
// so the caller knows where what follows them (a pack) begins.
type pktReader struct {
	r   *bufio.Reader
	n   int64 // bytes consumed
	buf [MaxPktLine]byte
}

func newPktReader(r io.Reader) *pktReader {
	return &pktReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next packet's kind and payload (which it owns until the
// next call). A length that is not four hex digits, 0003, or more than
// MaxPktLine is an error, as in git; so is the stream ending inside a
// packet, or before any.
func (p *pktReader) next() (int, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(p.r, hdr[:]); err != nil {
		if err == io.EOF {
			return 0, nil, io.EOF
		}
		return 0, nil, &errPkt{"the stream ends inside a packet's length"}
	}
	p.n += 4
	n := 0
	for _, c := range hdr {
		v, ok := hexVal(c)
		if !ok {
			return 0, nil, &errPkt{fmt.Sprintf("bad length %q", hdr[:])}
		}
		n = n<<4 | v
	}
	switch {
	case n == 0:
		return pktFlush, nil, nil
	case n == 1:
		return pktDelim, nil, nil
	case n == 2:
		return pktEnd, nil, nil
	case n < 4:
		return 0, nil, &errPkt{fmt.Sprintf("bad length %q", hdr[:])}
	case n > MaxPktLine:
		return 0, nil, &errPkt{fmt.Sprintf("a packet of %d bytes, over git's %d", n, MaxPktLine)}
	}
	b := p.buf[:n-4]
	if _, err := io.ReadFull(p.r, b); err != nil {
		return 0, nil, &errPkt{"the stream ends inside a packet"}
	}
	p.n += int64(len(b))
	return pktData, b, nil
}

func hexVal(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10, true
	}
	return 0, false
}

// appendPkt appends payload as one pkt-line.
func appendPkt(b []byte, payload string) []byte {
	return append(fmt.Appendf(b, "%04x", len(payload)+4), payload...)
}
