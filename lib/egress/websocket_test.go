package egress

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
)

// serveWS is the upstream's WebSocket echo: it records every payload it
// receives and sends each whole message back.
func (u *upstream) serveWS(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-Websocket-Key")
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	// The extension is forced on though the sidecar never asked for it:
	// wsDial checks that the agent never hears of it.
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Upstream-Auth: %s\r\n"+
		"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]), r.Header.Get("Authorization"))
	brw.Flush()
	var msg []byte
	bw := bufio.NewWriter(c)
	for {
		f, payload, err := readFrame(brw.Reader, 1<<20)
		if err != nil {
			return
		}
		u.mu.Lock()
		u.received.Write(payload)
		u.mu.Unlock()
		if f.opcode == opClose {
			return
		}
		if f.opcode >= opClose {
			continue
		}
		msg = append(msg, payload...)
		if f.fin {
			if b := u.wsCommand(string(msg), r); b != nil {
				bw.Write(b)
				bw.Flush()
				msg = nil
				continue
			}
			if string(msg) == "whoami" { // an echo of the credential
				msg = []byte("you are " + r.Header.Get("Authorization"))
			}
			writeFrameHeader(bw, wsFrame{fin: true, opcode: opText, n: int64(len(msg))})
			bw.Write(msg)
			if brw.Reader.Buffered() == 0 {
				bw.Flush()
			}
			msg = nil
		}
	}
}

// wsFrameBytes is a masked client frame.
func wsFrameBytes(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	default:
		out = append(out, 0x80|126, 0, 0)
		binary.BigEndian.PutUint16(out[2:], uint16(n))
	}
	key := []byte{1, 2, 3, 4}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// wsDial opens a WebSocket through the proxy, as a plain proxy request or
// inside an intercepted tunnel, and returns the connection and the
// status line of the answer.
func (h *harness) wsDial(t *testing.T, host string, overTLS bool) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	target := fmt.Sprintf("http://%s:%d/ws", host, h.up.pport)
	if overTLS {
		fmt.Fprintf(c, "CONNECT %s:%d HTTP/1.1\r\nHost: %s\r\n\r\n", host, h.up.port, host)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(h.srv.CA())
		tc := tls.Client(c, &tls.Config{ServerName: host, RootCAs: pool, NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c, target = tc, "/ws"
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", target, host)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		b, _ := io.ReadAll(resp.Body)
		h.bodies = append(h.bodies, string(b))
		return c, br, resp.Status + " " + string(b)
	}
	if resp.Header.Get("Sec-Websocket-Extensions") != "" {
		t.Error("an extension was negotiated: frames could be compressed past the scanner")
	}
	return c, br, resp.Status
}

func TestWebSocketRefused(t *testing.T) {
	h := newHarness(t, "")
	for _, overTLS := range []bool{false, true} {
		_, _, status := h.wsDial(t, "other.test", overTLS)
		if !strings.HasPrefix(status, "403") || !strings.Contains(status, "websocket: true") {
			t.Errorf("WebSocket to a route without websocket: %s", status)
		}
	}
	if h.up.count() != 0 {
		t.Error("the upgrade reached the upstream")
	}
}

func TestWebSocketScanned(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", overTLS), func(t *testing.T) {
			h := newHarness(t, "")
			c, br, status := h.wsDial(t, "ws.test", overTLS)
			if !strings.HasPrefix(status, "101") {
				t.Fatalf("upgrade: %s", status)
			}
			// A clean message, in two fragments, is echoed.
			c.Write(wsFrameBytes(false, opText, []byte("hello ")))
			c.Write(wsFrameBytes(true, opContinuation, []byte("world")))
			hdr := make([]byte, 2)
			if _, err := io.ReadFull(br, hdr); err != nil {
				t.Fatal(err)
			}
			echo := make([]byte, hdr[1]&0x7f)
			io.ReadFull(br, echo)
			if string(echo) != "hello world" {
				t.Fatalf("echo = %q", echo)
			}
			// The canary split across a fragment boundary: no part of it may leave.
			half := len(h.canary) / 2
			c.Write(wsFrameBytes(false, opText, []byte("x"+h.canary[:half])))
			c.Write(wsFrameBytes(true, opContinuation, []byte(h.canary[half:]+"y")))
			rest, _ := io.ReadAll(br)
			if len(rest) < 2 || rest[0] != 0x88 || binary.BigEndian.Uint16(rest[2:4]) != 1008 {
				t.Errorf("after the canary the client got %q, want a 1008 close", rest)
			}
			h.bodies = append(h.bodies, string(rest))
			e := h.waitEntry("ws block", func(e audit.Entry) bool { return e.Decision == audit.Block })
			if !e.Canary || e.Secret != "CANARY" || e.Host != "ws.test" {
				t.Errorf("entry = %+v", e)
			}
			got := string(h.up.got())
			if strings.Contains(got, h.canary[:half]) || !strings.Contains(got, "hello world") {
				t.Errorf("upstream received %q", got)
			}
		})
	}
}

// TestWebSocketControlFramesScanned: a secret split over ping frames is
// caught by the connection's scanner, and its last piece never leaves.
func TestWebSocketControlFramesScanned(t *testing.T) {
	h := newHarness(t, "")
	c, _, status := h.wsDial(t, "ws.test", false)
	if !strings.HasPrefix(status, "101") {
		t.Fatalf("upgrade: %s", status)
	}
	for i := 0; i < len(h.canary); i += 10 {
		c.Write(wsFrameBytes(true, 0x9, []byte(h.canary[i:min(i+10, len(h.canary))])))
	}
	h.waitEntry("ws block", func(e audit.Entry) bool { return e.Decision == audit.Block && e.Canary })
	if strings.Contains(string(h.up.got()), h.canary) {
		t.Errorf("the canary split over ping frames reached the upstream")
	}
}

// TestWebSocketMemoryFollowsData: a frame header promising a megabyte
// costs no megabyte before the bytes come, and the messages held for
// scanning share one server-wide budget: past it, a connection is closed
// with 1013 rather than the sidecar growing.
func TestWebSocketMemoryFollowsData(t *testing.T) {
	hdr := []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4} // 1 MiB, masked, then nothing: one piece (32 KiB) at most, not the megabyte
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	br := bufio.NewReader(bytes.NewReader(hdr))
	f, err := readFrameHeader(br, 1<<20)
	if err == nil {
		_, err = readPayload(br, f, nil, func(int64) error { return nil })
	}
	runtime.ReadMemStats(&m1)
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 256<<10 || err == nil {
		t.Errorf("a 14-byte frame header: %v, allocated %d bytes before any payload", err, alloc)
	}

	h := newHarness(t, "", func(c *Config) { c.MaxWSBuffered = 100 << 10 })
	c, br2, status := h.wsDial(t, "ws.test", false)
	if !strings.HasPrefix(status, "101") {
		t.Fatalf("upgrade: %s", status)
	}
	big := bytes.Repeat([]byte("x"), 60<<10)
	c.Write(wsFrameBytes(false, opText, big))
	c.Write(wsFrameBytes(false, opContinuation, big)) // 120 KiB held: over the budget
	rest, _ := io.ReadAll(br2)
	if len(rest) < 4 || rest[0] != 0x88 || binary.BigEndian.Uint16(rest[2:4]) != 1013 {
		t.Errorf("over the budget the client got %q, want a 1013 close", rest[:min(len(rest), 40)])
	}
	h.waitEntry("closed", func(e audit.Entry) bool { return strings.Contains(e.Reason, "too many WebSocket messages") })
	if n := h.srv.wsBytes.Load(); n != 0 {
		t.Errorf("%d bytes still charged after the connection closed", n)
	}
}
