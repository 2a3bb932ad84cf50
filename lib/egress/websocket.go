package egress

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
	"github.com/bb-bottles/bb/lib/routes"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// What a WebSocket may cost besides Config's MaxWSMessage and
// MaxWSBuffered. A frame is work and bookkeeping even when it is empty:
// every frame that arrives while a client message is held is charged
// wsFrameCost on top of its payload, to the message's budget and to the
// sidecar's, and a message may span at most wsMaxFragments frames. So a
// message is MaxWSMessage bytes in one frame, or less in many, and
// endless empty fragments end the connection instead of growing anything.
//
// An open WebSocket is charged wsConnCost to the sidecar's budget too, for
// as long as it is open: its fixed buffers (both directions' readers and
// writers, the guard and the scanners), so that a thousand idle
// WebSockets cannot grow the sidecar any more than held messages can.
const (
	wsFrameCost    = 64
	wsMaxFragments = 1024
	wsConnCost     = 96 << 10
	// wsCloseWait is how long a closing relay waits for the other side's
	// close frame, or for a peer that does not read.
	wsCloseWait = 2 * time.Second
)

// wsFrame is the header of one frame.
type wsFrame struct {
	fin    bool
	rsv    byte
	opcode byte
	masked bool
	key    [4]byte
	n      int64 // payload length
}

// wsError refuses a frame: code is the close code the sender gets (0 for
// none) and why is what the log says.
type wsError struct {
	code uint16
	why  string
}

func (e *wsError) Error() string { return e.why }

func protocolError(why string) *wsError { return &wsError{code: 1002, why: why} }

var (
	errFrameTooBig = errors.New("frame too big")
	errWSBusy      = errors.New("the sidecar holds too many WebSocket messages for scanning")
)

// readFrameHeader reads a frame's header; a frame longer than max is
// refused before its payload is read. It reads from r's buffer in place,
// so a frame costs no allocation.
func readFrameHeader(r *bufio.Reader, max int64) (wsFrame, error) {
	b, err := r.Peek(2)
	if err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{fin: b[0]&0x80 != 0, rsv: b[0] & 0x70, opcode: b[0] & 0x0f, masked: b[1]&0x80 != 0, n: int64(b[1] & 0x7f)}
	hl := 2
	switch f.n {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	if f.masked {
		hl += 4
	}
	if b, err = r.Peek(hl); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return f, err
	}
	switch f.n {
	case 126:
		f.n = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u > math.MaxInt64 {
			return f, protocolError("frame length with its top bit set")
		}
		f.n = int64(u)
	}
	if f.masked {
		copy(f.key[:], b[hl-4:hl])
	}
	r.Discard(hl)
	if f.n > max {
		return f, errFrameTooBig
	}
	return f, nil
}

// checkFrame says why f cannot come next from a client (fromClient) or
// from the upstream, inMsg telling whether a fragmented message is open.
// Extensions are never negotiated, so RSV bits are refused: a compressed
// frame would carry its bytes past the scanner.
func checkFrame(f wsFrame, fromClient, inMsg bool) *wsError {
	switch {
	case fromClient && !f.masked:
		return protocolError("unmasked client frame")
	case !fromClient && f.masked:
		return protocolError("masked frame from the upstream")
	case f.rsv != 0:
		return protocolError("frame with RSV bits set (an extension's, such as a compressed frame, which cannot be scanned)")
	case f.opcode == opClose || f.opcode == opPing || f.opcode == opPong:
		if !f.fin || f.n > 125 {
			return protocolError("control frame fragmented or over 125 bytes")
		}
	case f.opcode == opContinuation:
		if !inMsg {
			return protocolError("continuation frame outside a message")
		}
	case f.opcode == opText || f.opcode == opBinary:
		if inMsg {
			return protocolError("new message inside a fragmented one")
		}
	default:
		return protocolError(fmt.Sprintf("unknown opcode %#x", f.opcode))
	}
	return nil
}

// wsPiece is how much of a payload is read (and charged) at a time: a
// frame header's length is a promise, not data, and memory follows data.
const wsPiece = 32 << 10

// readPayload appends f's payload, unmasked, to dst as it arrives, piece
// by piece; charge is called with each piece's size before it is read,
// and may refuse it.
func readPayload(r *bufio.Reader, f wsFrame, dst []byte, charge func(int64) error) ([]byte, error) {
	for done := int64(0); done < f.n; {
		k := min(f.n-done, wsPiece)
		if charge != nil {
			if err := charge(k); err != nil {
				return dst, err
			}
		}
		n0 := len(dst)
		dst = slices.Grow(dst, int(k))[:n0+int(k)]
		if _, err := io.ReadFull(r, dst[n0:]); err != nil {
			return dst[:n0], err
		}
		if f.masked {
			for i := range dst[n0:] {
				dst[n0+i] ^= f.key[(done+int64(i))%4]
			}
		}
		done += k
	}
	return dst, nil
}

// readFrame reads one whole client frame (the tests' upstream uses it).
func readFrame(r *bufio.Reader, max int64) (wsFrame, []byte, error) {
	f, err := readFrameHeader(r, max)
	if err == nil && !f.masked {
		err = errors.New("unmasked client frame")
	}
	if err != nil {
		return f, nil, err
	}
	p, err := readPayload(r, f, nil, nil)
	return f, p, err
}

// writeFrameHeader writes f's first bytes, and f's key when it is masked,
// a byte at a time: nothing of a frame escapes to the heap.
func writeFrameHeader(w *bufio.Writer, f wsFrame) {
	var hdr [14]byte
	hdr[0] = f.rsv | f.opcode
	if f.fin {
		hdr[0] |= 0x80
	}
	var n int
	switch {
	case f.n < 126:
		hdr[1], n = byte(f.n), 2
	case f.n <= 0xffff:
		hdr[1], n = 126, 4
		binary.BigEndian.PutUint16(hdr[2:], uint16(f.n))
	default:
		hdr[1], n = 127, 10
		binary.BigEndian.PutUint64(hdr[2:], uint64(f.n))
	}
	if f.masked {
		hdr[1] |= 0x80
		n += copy(hdr[n:], f.key[:])
	}
	for _, c := range hdr[:n] {
		w.WriteByte(c)
	}
}

// writeClientFrame writes a whole frame to the upstream, masked with a
// fresh key of the sidecar's (math/rand/v2's global source is ChaCha8,
// seeded by the runtime from the OS): the agent's keys are not reused, so
// it cannot choose the bytes on the wire.
func writeClientFrame(w *bufio.Writer, opcode byte, payload []byte) error {
	f := wsFrame{fin: true, opcode: opcode, masked: true, n: int64(len(payload))}
	binary.LittleEndian.PutUint32(f.key[:], mrand.Uint32())
	writeFrameHeader(w, f)
	for off := 0; off < len(payload); {
		if w.Available() == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		b := w.AvailableBuffer() // masked in w's own buffer: no copy of the payload
		b = b[:min(cap(b), len(payload)-off)]
		for i := range b {
			b[i] = payload[off+i] ^ f.key[(off+i)%4]
		}
		w.Write(b)
		off += len(b)
	}
	_, err := w.Write(nil)
	return err
}

// frameBuffered reports whether r holds a whole next frame: when it does
// not, reading on may block, and what is written must be flushed first.
func frameBuffered(r *bufio.Reader) bool {
	n := r.Buffered()
	if n < 2 {
		return false
	}
	b, _ := r.Peek(min(n, 8))
	hl, size := 2, int(b[1]&0x7f)
	if b[1]&0x80 != 0 {
		hl += 4
	}
	switch size {
	case 126:
		if n < 4 {
			return false
		}
		hl += 2
		size = int(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		return false
	}
	return n >= hl+size
}

// closeFrame is an unmasked (server to client) close frame.
func closeFrame(code uint16, reason string) []byte {
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, code)
	p = append(p, reason...)
	if len(p) > 125 {
		p = p[:125]
	}
	return append([]byte{0x80 | opClose, byte(len(p))}, p...)
}

// checkClose checks a close frame's payload: empty, or a code and a
// UTF-8 reason. It returns the code (1005 when none).
func checkClose(p []byte) (uint16, *wsError) {
	switch {
	case len(p) == 0:
		return 1005, nil
	case len(p) == 1:
		return 0, protocolError("close frame of one byte")
	case !utf8.Valid(p[2:]):
		return 0, &wsError{code: 1007, why: "close frame whose reason is not UTF-8"}
	}
	return binary.BigEndian.Uint16(p), nil
}

// wsRelay is one relayed WebSocket: the agent's connection, the
// upstream's, and what the close line reports.
type wsRelay struct {
	s        *Server
	conn     net.Conn           // the agent's
	cr       *bufio.Reader      // of conn, past the handshake
	upstream io.ReadWriteCloser // the upstream's
	det      *detect.Detector   // the request scanner; nil scans nothing
	injected *detect.Detector   // the injected tokens, kept from the agent; nil when none

	// Frames read from each side, and the payload bytes sent on.
	upFrames, upBytes     int64 // the agent's
	downFrames, downBytes int64 // the upstream's
	agentClosed           bool  // the agent sent a close frame (relayUp's)

	// downOver is set when the upstream's side has ended; the agent's
	// read is then cut short by a deadline in the past.
	downOver atomic.Bool
	// midFrame: the agent has part of a frame, so the sidecar's own close
	// frame cannot follow (relayDown's until it ends, then relayWebSocket's).
	midFrame bool

	mu      sync.Mutex
	why     string      // the first reason the relay ended
	hit     *detect.Hit // a secret in the agent's frames
	downHit *detect.Hit // an injected token in the upstream's frames
}

// end records why the relay ends; the first reason stands.
func (x *wsRelay) end(why string) {
	x.mu.Lock()
	if x.why == "" {
		x.why = why
	}
	x.mu.Unlock()
}

// relayWebSocket relays an upgraded connection. What the client sends is
// read frame by frame, and a whole message (all its fragments) is scanned
// before it goes on, as one frame; a scanner spanning the connection also
// catches a secret split across messages and control frames. What the
// upstream sends is streamed, each message through a guard for the
// injected tokens across its fragments (relayDown). Either way a hit
// closes the connection. The WebSocket is logged when it opens and again
// when it closes.
func (s *Server) relayWebSocket(w http.ResponseWriter, r *http.Request, resp *http.Response, snap *snapshot, det *detect.Detector, e audit.Entry, rt *routes.Route) {
	upstream, ok := resp.Body.(io.ReadWriteCloser)
	hj, ok2 := w.(http.Hijacker)
	if !ok || !ok2 {
		s.refuse(w, r, snap, e, http.StatusBadGateway, audit.Allow, "cannot relay the WebSocket", "bb-egress: cannot relay the WebSocket\n")
		return
	}
	if s.wsBytes.Add(wsConnCost) > s.cfg.MaxWSBuffered {
		s.wsBytes.Add(-wsConnCost)
		reason := "too many WebSockets open on the sidecar (their buffers are over MaxWSBuffered); try again later"
		s.refuse(w, r, snap, e, http.StatusServiceUnavailable, audit.Allow, reason, "bb-egress: "+reason+"\n")
		return
	}
	charged := true
	release := func() {
		if charged {
			s.wsBytes.Add(-wsConnCost)
			charged = false
		}
	}
	defer release()
	e.Path = s.redact(snap, e.Path)
	e.Query = s.redact(snap, e.Query)
	e.Route = rt.String()
	conn, brw, err := hj.Hijack()
	if err != nil {
		e.Status, e.Decision = http.StatusBadGateway, audit.Allow
		e.Reason = "the upstream accepted the WebSocket, but the agent's connection could not be taken over: " + err.Error()
		e.DurationMS = ms(time.Since(e.Time))
		s.audit(e)
		return
	}
	s.conns.Add(1)
	defer s.conns.Done()
	defer s.track(conn)()
	defer conn.Close()
	defer upstream.Close()

	h := resp.Header.Clone()
	h.Del("Sec-Websocket-Extensions")
	redacted := screenHeader(snap, h)
	// The open line is written before the agent hears the 101: every
	// frame that follows belongs to a WebSocket already in the log. It
	// carries only what the request scan passed, redacted again.
	e.Status, e.Decision = http.StatusSwitchingProtocols, audit.Allow
	e.Reason = "WebSocket opened by route " + rt.String()
	if redacted != "" {
		e.Reason += "; response headers redacted: " + redacted
	}
	e.DurationMS = ms(time.Since(e.Time))
	s.audit(e)
	if s.auditFailing() {
		// Unlogged, nothing of the agent's goes to the upstream.
		fmt.Fprintf(brw, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\nbb-egress: %s\n",
			len("bb-egress: "+auditDownReason+"\n"), auditDownReason)
		brw.Flush()
		return
	}

	fmt.Fprintf(brw, "HTTP/1.1 %d %s\r\n", http.StatusSwitchingProtocols, http.StatusText(http.StatusSwitchingProtocols))
	h.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		release()
		s.auditWSClose(e, &wsRelay{why: "the agent's connection failed at the handshake"}, redacted)
		return
	}

	x := &wsRelay{s: s, conn: conn, cr: brw.Reader, upstream: upstream, det: det, injected: snap.injected}
	down := make(chan struct{})
	go func() {
		defer close(down)
		x.relayDown()
	}()
	werr := x.relayUp()
	if werr != nil {
		x.end(werr.why)
	}
	if x.agentClosed && werr == nil {
		// The agent closed: give the upstream's close frame a moment
		// to come back to it.
		select {
		case <-down:
		case <-time.After(wsCloseWait):
		}
	}
	upstream.Close()
	conn.SetWriteDeadline(time.Now().Add(wsCloseWait)) // a relay blocked on an agent that does not read ends
	<-down
	if werr != nil && werr.code != 0 && !x.midFrame {
		conn.SetWriteDeadline(time.Now().Add(wsCloseWait))
		conn.Write(closeFrame(werr.code, "bb-egress: "+werr.why))
	}
	conn.Close()
	release() // before the close line: whoever reads it sees the budget whole
	s.auditWSClose(e, x, redacted)
}

// auditWSClose writes the close line: why the WebSocket ended, what went
// each way, and the block if there was one.
func (s *Server) auditWSClose(e audit.Entry, x *wsRelay, redacted string) {
	x.mu.Lock()
	why, hit, downHit := x.why, x.hit, x.downHit
	x.mu.Unlock()
	e.BytesUp, e.BytesDown = x.upBytes, x.downBytes
	counts := fmt.Sprintf("; %d frames (%d bytes) up, %d frames (%d bytes) down", x.upFrames, x.upBytes, x.downFrames, x.downBytes)
	e.Status, e.Decision = http.StatusSwitchingProtocols, audit.Allow
	e.Reason = "WebSocket closed: " + why + counts
	if redacted != "" {
		e.Reason += "; response headers redacted: " + redacted
	}
	switch {
	case hit != nil:
		e = blockEntry(e, *hit)
		e.Decision, e.Status = audit.Block, http.StatusForbidden
		e.Reason = "secret " + hit.Secret + " (" + hit.Encoding + ") in a WebSocket message: WebSocket closed" + counts
	case downHit != nil:
		e.Decision, e.Secret, e.Encoding = audit.Block, downHit.Secret, downHit.Encoding
		e.Reason = "response carries token " + downHit.Secret + " (" + downHit.Encoding + "), which the sidecar injected: WebSocket closed" + counts
	}
	e.DurationMS = ms(time.Since(e.Time))
	s.audit(e)
}

// scan looks for a secret in p, and in the connection's stream so far: a
// secret split between messages or control frames is caught when its
// last piece comes (the pieces before it have left).
func (x *wsRelay) scan(sc *detect.Scanner, op byte, p []byte) *detect.Hit {
	if x.det == nil {
		return nil
	}
	if h, ok := x.det.Search(p); ok {
		return hitOf(h)
	}
	sc.Write(streamPart(op, p))
	if sc.Found() {
		return hitOf(sc.Hits()[0])
	}
	return nil
}

// streamPart is what of a frame's payload a scanner across frames sees:
// a close frame's reason without its code, which would stand between the
// pieces of a secret split into it.
func streamPart(op byte, p []byte) []byte {
	if op == opClose && len(p) >= 2 {
		return p[2:]
	}
	return p
}

// hitOf is &h, allocated only on the way that has a hit.
func hitOf(h detect.Hit) *detect.Hit { return &h }

// relayUp relays the agent's frames to the upstream, holding each data
// message until it is whole and scanned, and returns why it stopped when
// that was a refusal (nil when a side closed or went away).
func (x *wsRelay) relayUp() *wsError {
	s := x.s
	var sc *detect.Scanner
	if x.det != nil {
		sc = x.det.NewScanner()
	}
	uw := bufio.NewWriterSize(x.upstream, 4<<10)
	var pending int64 // payload bytes in uw
	flush := func() bool {
		if uw.Flush() != nil {
			x.end("the upstream's connection failed")
			return false
		}
		x.upBytes += pending
		pending = 0
		return true
	}

	// The message held: its opcode (0: none), payload, frames so far and
	// the time it must be whole by. Its frames and bytes are charged to
	// the budget every WebSocket of the sidecar shares.
	var (
		op       byte
		msg, ctl []byte
		frames   int64
		by       time.Time
		charged  int64
	)
	charge := func(n int64) error {
		if s.wsBytes.Add(n) > s.cfg.MaxWSBuffered {
			s.wsBytes.Add(-n)
			return errWSBusy
		}
		charged += n
		return nil
	}
	defer func() { s.wsBytes.Add(-charged) }()

	for {
		if uw.Buffered() > 0 && !frameBuffered(x.cr) && !flush() {
			return nil
		}
		deadline := time.Now().Add(s.cfg.IdleTimeout)
		if op != 0 && by.Before(deadline) {
			deadline = by
		}
		x.conn.SetReadDeadline(deadline)
		if x.downOver.Load() {
			return nil
		}
		f, err := readFrameHeader(x.cr, s.cfg.MaxWSMessage)
		if err == nil {
			if werr := checkFrame(f, true, op != 0); werr != nil {
				return x.refuseFrame(f, werr, sc, charge)
			}
			x.upFrames++
			if op != 0 || f.opcode < opClose {
				frames++
				switch {
				case frames > wsMaxFragments:
					return &wsError{code: 1009, why: fmt.Sprintf("client message in more than %d frames", wsMaxFragments)}
				case int64(len(msg))+f.n+frames*wsFrameCost > s.cfg.MaxWSMessage+wsFrameCost:
					err = errFrameTooBig
				default:
					err = charge(wsFrameCost)
				}
			}
		}
		if err == nil {
			if f.opcode >= opClose { // control frames stand alone, amid a message's frames
				ctl, err = readPayload(x.cr, f, ctl[:0], nil)
			} else {
				if op == 0 {
					op, by = f.opcode, time.Now().Add(s.cfg.BodyReadTimeout)
				}
				msg, err = readPayload(x.cr, f, msg, charge)
			}
		}
		if err != nil {
			return x.readFailed(err, op != 0)
		}

		if f.opcode >= opClose {
			if hit := x.scan(sc, f.opcode, ctl); hit != nil {
				return x.blocked(hit)
			}
			code, werr := uint16(0), (*wsError)(nil)
			if f.opcode == opClose {
				if code, werr = checkClose(ctl); werr != nil {
					return werr
				}
			}
			writeClientFrame(uw, f.opcode, ctl)
			pending += int64(len(ctl))
			if f.opcode == opClose {
				x.agentClosed = true
				x.end(fmt.Sprintf("the agent closed it (code %d)", code))
				flush()
				return nil
			}
			continue
		}
		if !f.fin {
			continue
		}
		// The whole message: checked, scanned, then sent as one frame
		// (RFC 6455 §5.4 lets an intermediary coalesce fragments).
		if hit := x.scan(sc, op, msg); hit != nil {
			return x.blocked(hit)
		}
		// RFC 6455 §8.1 fails such a connection; and an overlong or broken
		// form that a lenient decoder upstream might read as ASCII would
		// spell a secret the byte scanner did not see.
		if op == opText && !utf8.Valid(msg) {
			return &wsError{code: 1007, why: "client text message that is not UTF-8"}
		}
		writeClientFrame(uw, op, msg)
		pending += int64(len(msg))
		s.wsBytes.Add(-charged)
		charged = 0
		if cap(msg) > wsPiece {
			msg = nil // a big message's buffer is not kept for the next
		}
		op, msg, frames = 0, msg[:0], 0
	}
}

// refuseFrame answers a frame the agent may not send. The frame goes
// nowhere either way; what of its payload fits the message budget is read
// and scanned first, so that a secret in it is named in the log as a
// block (a compressed frame's payload inflated too, up to MaxWSMessage).
func (x *wsRelay) refuseFrame(f wsFrame, werr *wsError, sc *detect.Scanner, charge func(int64) error) *wsError {
	if x.det == nil || f.n > x.s.cfg.MaxWSMessage {
		return werr
	}
	p, err := readPayload(x.cr, f, nil, charge)
	if err != nil {
		return werr
	}
	if hit := x.scan(sc, f.opcode, p); hit != nil {
		return x.blocked(hit)
	}
	if f.rsv&0x40 != 0 { // permessage-deflate's bit
		if hit := x.inflated(p); hit != nil {
			return x.blocked(hit)
		}
	}
	return werr
}

// inflated scans p inflated as permessage-deflate would (RFC 7692 §7.2.2:
// raw deflate, its sync tail taken off), up to MaxWSMessage bytes.
func (x *wsRelay) inflated(p []byte) *detect.Hit {
	zr := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
	defer zr.Close()
	sc := x.det.NewScanner()
	io.Copy(sc, io.LimitReader(zr, x.s.cfg.MaxWSMessage))
	if !sc.Found() {
		return nil
	}
	h := sc.Hits()[0]
	h.Encoding = "deflate, " + h.Encoding
	return &h
}

// readFailed turns a failed read of the agent's frames into the refusal
// to answer, or records how the agent went away.
func (x *wsRelay) readFailed(err error, inMsg bool) *wsError {
	var werr *wsError
	switch {
	case x.downOver.Load():
		return nil
	case errors.As(err, &werr):
		return werr
	case errors.Is(err, errFrameTooBig):
		return &wsError{code: 1009, why: "client message over the scan limit"}
	case errors.Is(err, errWSBusy):
		return &wsError{code: 1013, why: err.Error()}
	case errors.Is(err, os.ErrDeadlineExceeded) && inMsg:
		return &wsError{code: 1008, why: fmt.Sprintf("client message not whole within %v", x.s.cfg.BodyReadTimeout)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		x.end(fmt.Sprintf("the agent sent nothing for %v", x.s.cfg.IdleTimeout))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		x.end("the agent's connection closed")
	default:
		x.end("the agent's connection failed")
	}
	return nil
}

// blocked records a secret in the agent's frames; nothing more of its
// stream goes on (what is unflushed is dropped).
func (x *wsRelay) blocked(hit *detect.Hit) *wsError {
	x.mu.Lock()
	x.hit = hit
	x.mu.Unlock()
	return &wsError{code: 1008, why: "blocked, the message carries the secret " + hit.Secret}
}

// errAgentWrite is a write to the agent that failed.
var errAgentWrite = errors.New("writing to the agent failed")

// wsDown is the upstream-to-agent half of a relay.
type wsDown struct {
	x     *wsRelay
	br    *bufio.Reader // the upstream's
	bw    *bufio.Writer // to the agent
	g     *detect.Guard // a message's guard for the injected tokens; nil when none
	sc    *detect.Scanner
	mr    msgReader
	lr    io.LimitedReader
	buf   []byte
	ctl   [125]byte
	inMsg bool // unguarded: a fragmented message is open
}

// relayDown relays the upstream's frames to the agent. Where the routes
// inject tokens, a data message is read through one guard across all its
// fragments and sent on as fragments of what the guard releases: a token
// anywhere in a message, however the upstream fragments it, never reaches
// the agent, and a message is not delayed past its end. A scanner across
// the connection also catches a token split between messages or control
// frames when its last piece comes (the pieces before it have left).
// Without injected tokens frames pass as they come. Either way nothing is
// held beyond fixed buffers, whatever the frames' number or sizes.
func (x *wsRelay) relayDown() {
	defer func() {
		x.downOver.Store(true)
		x.conn.SetReadDeadline(time.Now()) // after downOver: see relayUp
	}()
	d := &wsDown{x: x, br: bufio.NewReaderSize(x.upstream, 4<<10), bw: bufio.NewWriterSize(x.conn, 16<<10), buf: make([]byte, 16<<10)}
	d.mr.d = d
	if x.injected != nil {
		d.g, d.sc = x.injected.GuardTight(nil), x.injected.NewScanner()
	}
	err := d.run()
	var werr *wsError
	hit, isHit := detect.IsHit(err)
	switch {
	case isHit:
		x.mu.Lock()
		x.downHit = &hit
		x.mu.Unlock()
		x.end("the upstream sent an injected token")
	case errors.As(err, &werr):
		x.end("the upstream broke the protocol: " + werr.why)
		if !x.midFrame {
			d.bw.Write(closeFrame(werr.code, "bb-egress: the upstream broke the protocol"))
		}
	case errors.Is(err, errAgentWrite):
		x.end("the agent's connection failed")
		return
	case errors.Is(err, io.ErrUnexpectedEOF):
		x.end("the upstream's connection closed mid-frame")
	default:
		x.end("the upstream's connection closed")
	}
	d.bw.Flush()
}

// run relays frames until an error, which says why it stopped.
func (d *wsDown) run() error {
	for {
		if err := d.flushIfIdle(); err != nil {
			return err
		}
		f, err := readFrameHeader(d.br, math.MaxInt64)
		if err != nil {
			return err
		}
		if werr := checkFrame(f, false, d.inMsg); werr != nil {
			return werr
		}
		d.x.downFrames++
		switch {
		case f.opcode >= opClose:
			err = d.control(f)
		case d.g == nil:
			err = d.pass(f)
		default:
			err = d.message(f)
		}
		if err != nil {
			return err
		}
	}
}

// flushIfIdle flushes what the agent is owed when the next frame is not
// all buffered: reading on may wait.
func (d *wsDown) flushIfIdle() error {
	if d.bw.Buffered() > 0 && !frameBuffered(d.br) && d.bw.Flush() != nil {
		return errAgentWrite
	}
	return nil
}

// emit sends the agent one whole frame, after the connection's scanner.
func (d *wsDown) emit(op byte, fin bool, p []byte) error {
	if d.sc != nil {
		d.sc.Write(streamPart(op, p))
		if d.sc.Found() {
			return &detect.HitError{Hit: d.sc.Hits()[0]}
		}
	}
	writeFrameHeader(d.bw, wsFrame{fin: fin, opcode: op, n: int64(len(p))})
	if _, err := d.bw.Write(p); err != nil {
		return errAgentWrite
	}
	d.x.downBytes += int64(len(p))
	return nil
}

// control relays a control frame (at most 125 bytes, read whole).
func (d *wsDown) control(f wsFrame) error {
	p := d.ctl[:f.n]
	if _, err := io.ReadFull(d.br, p); err != nil {
		return io.ErrUnexpectedEOF
	}
	if d.g != nil {
		if h, ok := d.x.injected.Find(p); ok {
			return &detect.HitError{Hit: h}
		}
	}
	if err := d.emit(f.opcode, true, p); err != nil {
		return err
	}
	if f.opcode == opClose {
		code := uint16(1005)
		if len(p) >= 2 {
			code = binary.BigEndian.Uint16(p)
		}
		d.x.end(fmt.Sprintf("the upstream closed it (code %d)", code))
	}
	return nil
}

// pass streams a data frame as it came (no token to guard).
func (d *wsDown) pass(f wsFrame) error {
	d.inMsg = !f.fin
	d.x.midFrame = true
	writeFrameHeader(d.bw, f)
	d.lr.R, d.lr.N = d.br, f.n
	for d.lr.N > 0 {
		if d.br.Buffered() == 0 && d.bw.Buffered() > 0 && d.bw.Flush() != nil { // more will wait on the network
			return errAgentWrite
		}
		n, err := d.lr.Read(d.buf)
		if _, err := d.bw.Write(d.buf[:n]); err != nil {
			return errAgentWrite
		}
		d.x.downBytes += int64(n)
		if err != nil {
			return io.ErrUnexpectedEOF
		}
	}
	d.x.midFrame = false
	return nil
}

// message relays a data message through the guard, from its first frame
// f to its last, as fragments of what the guard releases. A message in
// one frame that fits the buffer is read whole and sent as it came.
func (d *wsDown) message(f wsFrame) error {
	if f.fin && f.n <= int64(len(d.buf)) {
		p := d.buf[:f.n]
		if _, err := io.ReadFull(d.br, p); err != nil {
			return io.ErrUnexpectedEOF
		}
		if h, ok := d.x.injected.Find(p); ok {
			return &detect.HitError{Hit: h}
		}
		return d.emit(f.opcode, true, p)
	}
	d.mr.left, d.mr.fin = f.n, f.fin
	d.g.Reset(&d.mr)
	op := f.opcode
	for {
		n, err := d.g.Read(d.buf)
		if n > 0 {
			if err := d.emit(op, false, d.buf[:n]); err != nil {
				return err
			}
			op = opContinuation
		}
		if err == io.EOF {
			return d.emit(op, true, nil)
		}
		if err != nil {
			return err
		}
	}
}

// msgReader reads the payload of one upstream message across its
// fragments, relaying the control frames amid them as they come.
type msgReader struct {
	d    *wsDown
	left int64 // of the current frame
	fin  bool  // the current frame is the last
}

func (m *msgReader) Read(p []byte) (int, error) {
	d := m.d
	for m.left == 0 {
		if m.fin {
			return 0, io.EOF
		}
		if err := d.flushIfIdle(); err != nil {
			return 0, err
		}
		f, err := readFrameHeader(d.br, math.MaxInt64)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return 0, err
		}
		if werr := checkFrame(f, false, true); werr != nil {
			return 0, werr
		}
		d.x.downFrames++
		if f.opcode >= opClose {
			if err := d.control(f); err != nil {
				return 0, err
			}
			continue
		}
		m.left, m.fin = f.n, f.fin
	}
	if d.br.Buffered() == 0 && d.bw.Buffered() > 0 && d.bw.Flush() != nil {
		return 0, errAgentWrite
	}
	n, err := d.br.Read(p[:min(int64(len(p)), m.left)])
	m.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
