package egress

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

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
)

// wsFrame is the header of one frame from the client.
type wsFrame struct {
	fin    bool
	rsv    byte
	opcode byte
	key    [4]byte
	n      int64 // payload length
}

var (
	errFrameTooBig = errors.New("frame too big")
	errWSBusy      = errors.New("the sidecar holds too many WebSocket messages for scanning")
)

// readFrameHeader reads a client frame's header. Client frames must be
// masked; a frame longer than max is refused before its payload is read.
func readFrameHeader(r *bufio.Reader, max int64) (wsFrame, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{fin: hdr[0]&0x80 != 0, rsv: hdr[0] & 0x70, opcode: hdr[0] & 0x0f}
	if hdr[1]&0x80 == 0 {
		return f, errors.New("unmasked client frame")
	}
	f.n = int64(hdr[1] & 0x7f)
	switch f.n {
	case 126:
		if _, err := io.ReadFull(r, hdr[:2]); err != nil {
			return f, err
		}
		f.n = int64(binary.BigEndian.Uint16(hdr[:2]))
	case 127:
		if _, err := io.ReadFull(r, hdr[:8]); err != nil {
			return f, err
		}
		u := binary.BigEndian.Uint64(hdr[:8])
		if u > uint64(max) {
			return f, errFrameTooBig
		}
		f.n = int64(u)
	}
	if f.n > max {
		return f, errFrameTooBig
	}
	_, err := io.ReadFull(r, f.key[:])
	return f, err
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
		for i := range dst[n0:] {
			dst[n0+i] ^= f.key[(done+int64(i))%4]
		}
		done += k
	}
	return dst, nil
}

// readFrame reads one whole client frame (the tests' upstream uses it).
func readFrame(r *bufio.Reader, max int64) (wsFrame, []byte, error) {
	f, err := readFrameHeader(r, max)
	if err != nil {
		return f, nil, err
	}
	p, err := readPayload(r, f, nil, nil)
	return f, p, err
}

// writeFrame writes f with payload, masked again with f's key.
func writeFrame(w *bufio.Writer, f wsFrame, payload []byte) error {
	var b0 byte = f.rsv | f.opcode
	if f.fin {
		b0 |= 0x80
	}
	w.WriteByte(b0)
	switch n := len(payload); {
	case n < 126:
		w.WriteByte(0x80 | byte(n))
	case n <= 0xffff:
		w.Write([]byte{0x80 | 126, byte(n >> 8), byte(n)})
	default:
		var l [9]byte
		l[0] = 0x80 | 127
		binary.BigEndian.PutUint64(l[1:], uint64(n))
		w.Write(l[:])
	}
	w.Write(f.key[:])
	var buf [512]byte
	for off := 0; off < len(payload); off += len(buf) {
		chunk := payload[off:min(off+len(buf), len(payload))]
		for i, c := range chunk {
			buf[i] = c ^ f.key[(off+i)%4]
		}
		if _, err := w.Write(buf[:len(chunk)]); err != nil {
			return err
		}
	}
	return nil
}

// relayServerFrames copies the upstream's frames to the client, each
// frame's payload through a guard for the injected tokens, released in
// full at the frame's end: a token within a frame never reaches the
// client, and a frame is not delayed past its end. (A token the upstream
// splits across frames is not found; nothing the agent sends can make an
// upstream do that with a token it was given in a header.)
func relayServerFrames(client io.Writer, upstream io.Reader, det *detect.Detector) (int64, error) {
	br := bufio.NewReaderSize(upstream, 4<<10)
	bw := bufio.NewWriterSize(client, 32<<10)
	g := det.GuardTight(nil)
	var n int64
	var hdr [10]byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return n, err
		}
		if hdr[1]&0x80 != 0 {
			return n, errors.New("masked server frame")
		}
		hl := 2
		size := int64(hdr[1] & 0x7f)
		switch size {
		case 126:
			hl = 4
		case 127:
			hl = 10
		}
		if _, err := io.ReadFull(br, hdr[2:hl]); err != nil {
			return n, err
		}
		switch hl {
		case 4:
			size = int64(binary.BigEndian.Uint16(hdr[2:4]))
		case 10:
			size = int64(binary.BigEndian.Uint64(hdr[2:10]) & (1<<63 - 1))
		}
		if _, err := bw.Write(hdr[:hl]); err != nil {
			return n, err
		}
		g.Reset(io.LimitReader(br, size))
		m, err := io.Copy(bw, g)
		n += m
		if err != nil {
			return n, err
		}
		if m < size {
			return n, io.ErrUnexpectedEOF
		}
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return n, err
			}
		}
	}
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

// relayWebSocket relays an upgraded connection. What the server sends is
// copied as is; what the client sends is read frame by frame, and a whole
// message (all its fragments) is scanned before any frame of it goes on.
// A scanner spanning the connection also catches a secret split across
// messages; either way a hit closes the connection.
func (s *Server) relayWebSocket(w http.ResponseWriter, r *http.Request, resp *http.Response, snap *snapshot, det *detect.Detector, e audit.Entry, rt *routes.Route) {
	upstream, ok := resp.Body.(io.ReadWriteCloser)
	hj, ok2 := w.(http.Hijacker)
	if !ok || !ok2 {
		s.refuse(w, r, snap, e, http.StatusBadGateway, audit.Allow, "cannot relay the WebSocket", "bb-egress: cannot relay the WebSocket\n")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	s.conns.Add(1)
	defer s.conns.Done()
	defer s.track(conn)()
	defer conn.Close()
	defer upstream.Close()

	head := fmt.Sprintf("HTTP/1.1 %d %s\r\n", http.StatusSwitchingProtocols, http.StatusText(http.StatusSwitchingProtocols))
	brw.WriteString(head)
	h := resp.Header.Clone()
	h.Del("Sec-Websocket-Extensions")
	redacted := redactHeader(snap.injected, h)
	h.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return
	}

	var down int64
	var downHit *detect.Hit
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if snap.injected == nil {
			down, _ = io.Copy(conn, upstream)
		} else {
			var err error
			down, err = relayServerFrames(conn, upstream, snap.injected)
			if h, ok := detect.IsHit(err); ok {
				downHit = &h
			}
		}
		conn.Close()
	}()

	var sc *detect.Scanner
	if det != nil {
		sc = det.NewScanner()
	}
	// A message is held, unmasked, until all its frames are in and it is
	// scanned; only the frames' headers are kept beside it, and its bytes
	// are charged to a budget shared by every WebSocket of the sidecar.
	var charged int64
	charge := func(n int64) error {
		if s.wsBytes.Add(n) > s.cfg.MaxWSBuffered {
			s.wsBytes.Add(-n)
			return errWSBusy
		}
		charged += n
		return nil
	}
	defer func() { s.wsBytes.Add(-charged) }()
	uw := bufio.NewWriterSize(upstream, 4<<10)
	var up int64
	var msg, ctl []byte
	var frames []wsFrame
	var hit *detect.Hit
	var why string
	scan := func(p []byte) *detect.Hit {
		if det == nil {
			return nil
		}
		if h, ok := det.Search(p); ok {
			return &h
		}
		// One scanner across the connection's messages and control
		// frames: a secret split between them is caught when its last
		// piece comes (the pieces before it have left).
		sc.Write(p)
		if sc.Found() {
			h := sc.Hits()[0]
			return &h
		}
		return nil
	}
loop:
	for {
		conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		f, err := readFrameHeader(brw.Reader, s.cfg.MaxWSMessage-int64(len(msg)))
		if err == nil && f.opcode >= opClose && f.n > 125 {
			err = errors.New("control frame over 125 bytes")
		}
		if err == nil && f.rsv != 0 {
			conn.Write(closeFrame(1002, "bb-egress: extensions are not relayed"))
			why = "client frame with RSV bits (a compressed frame cannot be scanned)"
			break
		}
		var p []byte
		if err == nil {
			if f.opcode >= opClose { // control frames stand alone, amid a message's frames
				ctl, err = readPayload(brw.Reader, f, ctl[:0], nil)
				p = ctl
			} else {
				n0 := len(msg)
				msg, err = readPayload(brw.Reader, f, msg, charge)
				p = msg[n0:]
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, errFrameTooBig):
				conn.Write(closeFrame(1009, "bb-egress: message too big to scan"))
				why = "client message over the scan limit"
			case errors.Is(err, errWSBusy):
				conn.Write(closeFrame(1013, "bb-egress: too many messages being scanned; try again later"))
				why = err.Error()
			case !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
				why = err.Error()
			}
			break
		}
		if f.opcode >= opClose {
			if hit = scan(p); hit != nil {
				break
			}
			if writeFrame(uw, f, p) != nil || uw.Flush() != nil {
				break loop
			}
			up += int64(len(p))
			continue
		}
		frames = append(frames, wsFrame{fin: f.fin, rsv: f.rsv, opcode: f.opcode, key: f.key, n: f.n})
		if !f.fin {
			continue
		}
		if hit = scan(msg); hit != nil {
			break
		}
		off := int64(0)
		for _, fr := range frames {
			if writeFrame(uw, fr, msg[off:off+fr.n]) != nil {
				break loop
			}
			off += fr.n
		}
		if uw.Flush() != nil {
			break loop
		}
		up += int64(len(msg))
		s.wsBytes.Add(-charged)
		charged = 0
		if cap(msg) > wsPiece {
			msg = nil // a big message's buffer is not kept for the next
		}
		msg, frames = msg[:0], frames[:0]
	}
	if hit != nil {
		conn.Write(closeFrame(1008, "bb-egress: blocked, the message carries the secret "+hit.Secret))
	}
	upstream.Close()
	conn.Close()
	wg.Wait()

	e.BytesUp, e.BytesDown = up, down
	e.Status, e.Decision = http.StatusSwitchingProtocols, audit.Allow
	e.Route = rt.String()
	e.Reason = "WebSocket relayed by route " + rt.String()
	if redacted != "" {
		e.Reason += "; response headers redacted: " + redacted
	}
	if why != "" {
		e.Reason += "; closed: " + why
	}
	if downHit != nil && hit == nil {
		e.Decision, e.Secret, e.Encoding = audit.Block, downHit.Secret, downHit.Encoding
		e.Reason = "response carries token " + downHit.Secret + " (" + downHit.Encoding + "), which the sidecar injected: WebSocket closed"
	}
	if hit != nil {
		e = blockEntry(e, *hit)
		e.Decision = audit.Block
		e.Status = http.StatusForbidden
		e.Reason = "secret " + hit.Secret + " (" + hit.Encoding + ") in a WebSocket message: connection closed"
	}
	e.Path = s.redact(snap, e.Path)
	e.Query = s.redact(snap, e.Query)
	e.DurationMS = ms(time.Since(e.Time))
	s.audit(e)
}
