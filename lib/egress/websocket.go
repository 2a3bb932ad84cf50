package egress

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// wsFrame is one frame from the client: its bytes as received (to forward
// unchanged) and its unmasked payload (to scan).
type wsFrame struct {
	fin     bool
	rsv     byte
	opcode  byte
	raw     []byte
	payload []byte
}

var errFrameTooBig = errors.New("frame too big")

// readFrame reads one client frame. Client frames must be masked.
func readFrame(r *bufio.Reader, max int64) (*wsFrame, error) {
	var hdr [14]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return nil, err
	}
	f := &wsFrame{fin: hdr[0]&0x80 != 0, rsv: hdr[0] & 0x70, opcode: hdr[0] & 0x0f}
	if hdr[1]&0x80 == 0 {
		return nil, errors.New("unmasked client frame")
	}
	n := int64(hdr[1] & 0x7f)
	hl := 2
	switch n {
	case 126:
		if _, err := io.ReadFull(r, hdr[2:4]); err != nil {
			return nil, err
		}
		n, hl = int64(binary.BigEndian.Uint16(hdr[2:4])), 4
	case 127:
		if _, err := io.ReadFull(r, hdr[2:10]); err != nil {
			return nil, err
		}
		u := binary.BigEndian.Uint64(hdr[2:10])
		if u > uint64(max) {
			return nil, errFrameTooBig
		}
		n, hl = int64(u), 10
	}
	if n > max {
		return nil, errFrameTooBig
	}
	if _, err := io.ReadFull(r, hdr[hl:hl+4]); err != nil {
		return nil, err
	}
	key := hdr[hl : hl+4]
	f.raw = make([]byte, hl+4+int(n))
	copy(f.raw, hdr[:hl+4])
	if _, err := io.ReadFull(r, f.raw[hl+4:]); err != nil {
		return nil, err
	}
	f.payload = make([]byte, n)
	for i, b := range f.raw[hl+4:] {
		f.payload[i] = b ^ key[i%4]
	}
	return f, nil
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

	head := fmt.Sprintf("HTTP/1.1 101 %s\r\n", http.StatusText(101))
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
	var up int64
	var msg []byte
	var pending [][]byte
	var hit *detect.Hit
	var why string
loop:
	for {
		conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		f, err := readFrame(brw.Reader, s.cfg.MaxWSMessage)
		if err != nil {
			if errors.Is(err, errFrameTooBig) {
				conn.Write(closeFrame(1009, "bb-egress: message too big to scan"))
				why = "client frame over the scan limit"
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				why = err.Error()
			}
			break
		}
		if f.rsv != 0 {
			conn.Write(closeFrame(1002, "bb-egress: extensions are not relayed"))
			why = "client frame with RSV bits (a compressed frame cannot be scanned)"
			break
		}
		if f.opcode >= opClose { // control frames stand alone
			if det != nil {
				if h, ok := det.Find(f.payload); ok {
					hit = &h
					break
				}
			}
			if _, err := upstream.Write(f.raw); err != nil {
				break loop
			}
			up += int64(len(f.payload))
			continue
		}
		msg = append(msg, f.payload...)
		pending = append(pending, f.raw)
		if int64(len(msg)) > s.cfg.MaxWSMessage {
			conn.Write(closeFrame(1009, "bb-egress: message too big to scan"))
			why = "client message over the scan limit"
			break
		}
		if !f.fin {
			continue
		}
		if det != nil {
			if h, ok := det.Search(msg); ok {
				hit = &h
				break
			}
			sc.Write(msg)
			if sc.Found() {
				h := sc.Hits()[0]
				hit = &h
				break
			}
		}
		for _, raw := range pending {
			if _, err := upstream.Write(raw); err != nil {
				break loop
			}
		}
		up += int64(len(msg))
		msg, pending = msg[:0], pending[:0]
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
	e.DurationMS = ms(time.Since(e.Time))
	s.audit(e)
}
