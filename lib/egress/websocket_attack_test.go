package egress

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
)

// wsCommand is what the test upstream sends for a message that names an
// attack from its side (nil: an ordinary message, echoed).
func (u *upstream) wsCommand(msg string, r *http.Request) []byte {
	auth := r.Header.Get("Authorization")
	if cmd, arg, ok := strings.Cut(msg, " "); ok && len(auth) > 0 {
		k, _ := strconv.Atoi(arg) // where the echoed credential is split
		k = min(max(k, 0), len(auth))
		frame := func(b0 byte, p string) []byte { return append([]byte{b0, byte(len(p))}, p...) }
		switch cmd {
		case "split-frames": // one message, the credential across two fragments and a ping
			return slices.Concat(frame(0x01, "you are "+auth[:k]), frame(0x89, "ping"), frame(0x80, auth[k:]))
		case "split-bytes": // one message, a fragment a byte
			b := frame(0x01, "you are ")
			for i := range len(auth) {
				b = append(b, frame(0x00, auth[i:i+1])...)
			}
			return append(b, frame(0x80, "")...)
		case "split-messages": // two messages
			return slices.Concat(frame(0x81, "you are "+auth[:k]), frame(0x81, auth[k:]))
		case "split-close": // a message, then the rest in a close frame's reason
			return slices.Concat(frame(0x81, "you are "+auth[:k]), frame(0x88, "\x03\xe8"+auth[k:]))
		}
	}
	switch msg {
	case "flood-down": // one message in a million empty fragments
		b := []byte{0x01, 0x01, 'a'}
		b = append(b, bytes.Repeat([]byte{0x00, 0x00}, 1e6)...)
		return append(b, 0x80, 0x01, 'z')
	case "ping-down":
		return bytes.Repeat([]byte{0x89, 0x00}, 1e5)
	case "rsv-down": // a "compressed" frame: RSV1 set, never negotiated
		return append([]byte{0xc1, byte(len(auth))}, auth...)
	case "masked-down":
		return []byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2}
	case "huge-down": // a length of 2^63
		return []byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}
	case "opcode-down":
		return []byte{0x83, 0x01, 'x'}
	case "close-token": // the credential echoed in a close frame's reason
		p := append([]byte{0x03, 0xe8}, auth...)
		return append([]byte{0x88, byte(len(p))}, p...)
	}
	return nil
}

// heapInuse is the heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// wsFrameRaw is a masked client frame with any first byte and a length
// field of the given size (7, 16 or 64 bits), as an attacker writes it.
func wsFrameRaw(b0 byte, lenBits int, n uint64, payload []byte) []byte {
	out := []byte{b0}
	switch lenBits {
	case 7:
		out = append(out, 0x80|byte(n))
	case 16:
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, n)
	}
	key := []byte{9, 8, 7, 6}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// sidecarFrame is one frame the agent got.
type sidecarFrame struct {
	fin    bool
	rsv    byte
	opcode byte
	data   []byte
}

// parseFrames splits what the agent received into frames (unmasked, as a
// server sends them); a frame cut short ends the list.
func parseFrames(b []byte) []sidecarFrame {
	var out []sidecarFrame
	for len(b) >= 2 {
		f := sidecarFrame{fin: b[0]&0x80 != 0, rsv: b[0] & 0x70, opcode: b[0] & 0x0f}
		n, hl := int(b[1]&0x7f), 2
		switch n {
		case 126:
			if len(b) < 4 {
				return out
			}
			n, hl = int(binary.BigEndian.Uint16(b[2:4])), 4
		case 127:
			if len(b) < 10 {
				return out
			}
			n, hl = int(binary.BigEndian.Uint64(b[2:10])&(1<<40-1)), 10
		}
		if len(b) < hl+n {
			return out
		}
		f.data = b[hl : hl+n]
		out = append(out, f)
		b = b[hl+n:]
	}
	return out
}

// payloads is the data frames' payloads the agent got, end to end.
func payloads(b []byte) []byte {
	var out []byte
	for _, f := range parseFrames(b) {
		if f.opcode < opClose {
			out = append(out, f.data...)
		}
	}
	return out
}

// closeOf returns the code and reason of the last frame the agent got
// when it is a close frame (code 0 when it is not).
func closeOf(b []byte) (uint16, string) {
	fs := parseFrames(b)
	if len(fs) == 0 {
		return 0, ""
	}
	f := fs[len(fs)-1]
	if f.opcode != opClose || len(f.data) < 2 {
		return 0, ""
	}
	return binary.BigEndian.Uint16(f.data), string(f.data[2:])
}

// wsOpen dials a WebSocket that must open.
func (h *harness) wsOpen(t *testing.T, host string, overTLS bool) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, br, status := h.wsDial(t, host, overTLS)
	if !strings.HasPrefix(status, "101") {
		t.Fatalf("upgrade: %s", status)
	}
	return c, br
}

// TestWebSocketEmptyFragmentsBounded is issue 9's attack: a message that
// never ends, in a million empty continuation frames. The sidecar's heap
// does not grow with them (before the fix it held 24 bytes a frame for as
// long as the message was open), and the agent is told why it was cut.
func TestWebSocketEmptyFragmentsBounded(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", overTLS), func(t *testing.T) {
			h := newHarness(t, "")
			c, br := h.wsOpen(t, "ws.test", overTLS)
			c.SetDeadline(time.Now().Add(20 * time.Second))
			before := heapInuse()
			go func() {
				c.Write(wsFrameBytes(false, opText, []byte("start-")))
				batch := bytes.Repeat(wsFrameBytes(false, opContinuation, nil), 1e5)
				for range 10 {
					if _, err := c.Write(batch); err != nil {
						return
					}
				}
			}()
			rest, _ := io.ReadAll(br)
			after := heapInuse()
			t.Logf("heap in use: %d KiB before, %d KiB after a million empty fragments", before>>10, after>>10)
			if after > before+4<<20 {
				t.Errorf("the heap grew from %d KiB to %d KiB", before>>10, after>>10)
			}
			h.bodies = append(h.bodies, string(rest))
			if code, reason := closeOf(rest); code != 1009 || !strings.Contains(reason, "1024 frames") {
				t.Errorf("the agent got close %d %q, want 1009 naming the frame limit", code, reason)
			}
			h.waitEntry("close line", func(e audit.Entry) bool {
				return e.Status == 101 && strings.Contains(e.Reason, "WebSocket closed: client message in more than 1024 frames")
			})
			if bytes.Contains(h.up.got(), []byte("start-")) {
				t.Error("the unfinished message reached the upstream")
			}
			if n := h.srv.wsBytes.Load(); n != 0 {
				t.Errorf("%d bytes still charged after the connection closed", n)
			}
		})
	}
}

// TestWebSocketFloodsStayFlat: a million empty messages, and pings, pass
// through without the heap growing, and the connection still works.
func TestWebSocketFloodsStayFlat(t *testing.T) {
	h := newHarness(t, "")
	c, br := h.wsOpen(t, "ws.test", true)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	before := heapInuse()
	const msgs, pings = 1_000_000, 100_000
	got := make(chan int)
	go func() { // the upstream echoes every message: two bytes each
		n, _ := io.CopyN(io.Discard, br, 2*msgs)
		got <- int(n)
	}()
	batch := bytes.Repeat(wsFrameBytes(true, opBinary, nil), 1e5)
	for range msgs / 100_000 {
		if _, err := c.Write(batch); err != nil {
			t.Fatal(err)
		}
	}
	c.Write(bytes.Repeat(wsFrameBytes(true, 0x9, nil), pings))
	if n := <-got; n != 2*msgs {
		t.Fatalf("the agent got %d bytes of echoes, want %d", n, 2*msgs)
	}
	after := heapInuse()
	t.Logf("heap in use: %d KiB before, %d KiB after %d empty messages and %d pings", before>>10, after>>10, int(msgs), int(pings))
	if after > before+4<<20 {
		t.Errorf("the heap grew from %d KiB to %d KiB", before>>10, after>>10)
	}
	c.Write(wsFrameBytes(true, opText, []byte("still here")))
	hdr := make([]byte, 2)
	io.ReadFull(br, hdr)
	echo := make([]byte, hdr[1])
	io.ReadFull(br, echo)
	if string(echo) != "still here" {
		t.Errorf("after the flood the echo was %q", echo)
	}
}

// readMessage reads frames the sidecar sent until a data message is
// whole, and returns it and how many frames it came in.
func readMessage(br *bufio.Reader) ([]byte, int, error) {
	var msg []byte
	for n := 1; ; n++ {
		var hdr [10]byte
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return msg, n, err
		}
		size := uint64(hdr[1] & 0x7f)
		switch size {
		case 126:
			io.ReadFull(br, hdr[2:4])
			size = uint64(binary.BigEndian.Uint16(hdr[2:4]))
		case 127:
			io.ReadFull(br, hdr[2:10])
			size = binary.BigEndian.Uint64(hdr[2:10])
		}
		p := make([]byte, size)
		if _, err := io.ReadFull(br, p); err != nil {
			return msg, n, err
		}
		if hdr[0]&0x0f >= opClose {
			continue
		}
		msg = append(msg, p...)
		if hdr[0]&0x80 != 0 {
			return msg, n, nil
		}
	}
}

// wsOnlyRoutes has no route that injects a token: the upstream's frames
// are relayed as they come, not through a guard.
const wsOnlyRoutes = `
- host: ws.test
  ports: [{{TLS}}, {{PLAIN}}]
  websocket: true
`

// TestWebSocketDownFloodBounded: the upstream's million empty fragments
// and its ping flood reach the agent through fixed buffers, relayed as
// they are (no token to guard) or as what the guard releases.
func TestWebSocketDownFloodBounded(t *testing.T) {
	for _, guarded := range []bool{false, true} {
		routes := wsOnlyRoutes
		if guarded {
			routes = defaultRoutes
		}
		h := newHarness(t, routes)
		c, br := h.wsOpen(t, "ws.test", true)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		before := heapInuse()
		c.Write(wsFrameBytes(true, opText, []byte("flood-down")))
		msg, frames, err := readMessage(br)
		if err != nil || string(msg) != "az" {
			t.Fatalf("guarded=%v: the agent got %q in %d frames: %v", guarded, msg, frames, err)
		}
		if want := 1_000_002; !guarded && frames != want || guarded && frames > 3 {
			t.Errorf("guarded=%v: %d frames", guarded, frames)
		}
		c.Write(wsFrameBytes(true, opText, []byte("ping-down")))
		if n, err := io.CopyN(io.Discard, br, 2e5); err != nil {
			t.Fatalf("guarded=%v: the agent got %d bytes of pings: %v", guarded, n, err)
		}
		after := heapInuse()
		t.Logf("guarded=%v: heap in use %d KiB before, %d KiB after the upstream's floods", guarded, before>>10, after>>10)
		if after > before+4<<20 {
			t.Errorf("guarded=%v: the heap grew from %d KiB to %d KiB", guarded, before>>10, after>>10)
		}
		c.Close()
		h.waitEntry("close line", func(e audit.Entry) bool {
			return strings.Contains(e.Reason, "1100002 frames (2 bytes) down")
		})
	}
}

// TestWebSocketClientViolations: every frame a client may not send is
// refused with the close code RFC 6455 gives it, before any of it goes
// on, and the close line says why.
func TestWebSocketClientViolations(t *testing.T) {
	h := newHarness(t, "")
	unmasked := []byte{0x81, 0x05, 'l', 'e', 'a', 'k', '1'}
	cases := []struct {
		name   string
		frames [][]byte
		code   uint16
		why    string
	}{
		{"unmasked", [][]byte{unmasked}, 1002, "unmasked client frame"},
		{"rsv1 (compressed)", [][]byte{wsFrameRaw(0xc1, 7, 5, []byte("leak2"))}, 1002, "RSV bits"},
		{"rsv2 on a fragment", [][]byte{wsFrameBytes(false, opText, []byte("a")), wsFrameRaw(0xa0, 7, 5, []byte("leak3"))}, 1002, "RSV bits"},
		{"reserved opcode", [][]byte{wsFrameRaw(0x83, 7, 5, []byte("leak4"))}, 1002, "unknown opcode"},
		{"reserved control opcode", [][]byte{wsFrameRaw(0x8b, 7, 5, []byte("leak5"))}, 1002, "unknown opcode"},
		{"ping of 126", [][]byte{wsFrameRaw(0x89, 16, 126, bytes.Repeat([]byte("p"), 126))}, 1002, "control frame"},
		{"fragmented ping", [][]byte{wsFrameRaw(0x09, 7, 5, []byte("leak6"))}, 1002, "control frame"},
		{"continuation first", [][]byte{wsFrameBytes(true, opContinuation, []byte("leak7"))}, 1002, "continuation frame outside"},
		{"message inside a message", [][]byte{wsFrameBytes(false, opText, []byte("a")), wsFrameBytes(true, opText, []byte("leak8"))}, 1002, "new message inside"},
		{"length 2^63", [][]byte{wsFrameRaw(0x82, 64, 1<<63, nil)}, 1002, "top bit"},
		{"length 2^64-1", [][]byte{wsFrameRaw(0x82, 64, 1<<64-1, nil)}, 1002, "top bit"},
		{"length 2^62", [][]byte{wsFrameRaw(0x82, 64, 1<<62, nil)}, 1009, "over the scan limit"},
		{"text not UTF-8", [][]byte{wsFrameBytes(true, opText, []byte("leak9\xff"))}, 1007, "not UTF-8"},
		{"text with an overlong slash", [][]byte{wsFrameBytes(true, opText, []byte("leak\xc0\xaf10"))}, 1007, "not UTF-8"},
		{"text split inside a rune", [][]byte{wsFrameBytes(false, opText, []byte("leak11\xe2")), wsFrameBytes(true, opContinuation, []byte("\x82"))}, 1007, "not UTF-8"},
		{"close of one byte", [][]byte{wsFrameBytes(true, opClose, []byte{3})}, 1002, "one byte"},
		{"close reason not UTF-8", [][]byte{wsFrameBytes(true, opClose, []byte("\x03\xe8leak12\xff"))}, 1007, "not UTF-8"},
	}
	for _, tc := range cases {
		for _, overTLS := range []bool{false, true} {
			c, br := h.wsOpen(t, "ws.test", overTLS)
			for _, f := range tc.frames {
				c.Write(f)
			}
			rest, _ := io.ReadAll(br)
			h.bodies = append(h.bodies, string(rest))
			if code, reason := closeOf(rest); code != tc.code || !strings.Contains(reason, tc.why) {
				t.Errorf("%s tls=%v: the agent got close %d %q, want %d %q", tc.name, overTLS, code, reason, tc.code, tc.why)
			}
		}
		h.waitEntry(tc.name, func(e audit.Entry) bool {
			return strings.Contains(e.Reason, "WebSocket closed: ") && strings.Contains(e.Reason, tc.why)
		})
	}
	if got := h.up.got(); bytes.Contains(got, []byte("leak")) {
		t.Errorf("a refused frame reached the upstream: %q", got)
	}
	// Binary messages need not be UTF-8: not refused.
	c, br := h.wsOpen(t, "ws.test", false)
	c.Write(wsFrameBytes(true, opBinary, []byte("bin\xff")))
	hdr := make([]byte, 6)
	if _, err := io.ReadFull(br, hdr); err != nil || string(hdr[2:]) != "bin\xff" {
		t.Errorf("a binary message that is not UTF-8: %q %v", hdr, err)
	}
}

// TestWebSocketUpstreamViolations: an upstream cannot turn compression on
// (RSV bits), mask, use a reserved opcode or a 2^63 length: the agent gets
// a 1002 close at a frame boundary, and on a route that injects a token,
// nothing of it.
func TestWebSocketUpstreamViolations(t *testing.T) {
	h := newHarness(t, defaultRoutes+`
- host: wsapi.test
  ports: [{{TLS}}]
  websocket: true
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
`)
	plain := newHarness(t, wsOnlyRoutes) // frames relayed as they come, not through a guard
	for _, hh := range []struct {
		h    *harness
		host string
	}{{plain, "ws.test"}, {h, "ws.test"}, {h, "wsapi.test"}} {
		h, host := hh.h, hh.host
		for _, cmd := range []string{"rsv-down", "masked-down", "huge-down", "opcode-down"} {
			c, br := h.wsOpen(t, host, true)
			c.Write(wsFrameBytes(true, opText, []byte(cmd)))
			rest, _ := io.ReadAll(br)
			h.bodies = append(h.bodies, string(rest))
			fs := parseFrames(rest)
			if code, reason := closeOf(rest); code != 1002 || len(fs) != 1 || !strings.Contains(reason, "upstream broke the protocol") {
				t.Errorf("%s %s: the agent got %q, want only a 1002 close", host, cmd, rest)
			}
			if bytes.Contains(rest, []byte(apiToken[:8])) {
				t.Errorf("%s %s: the agent got the token", host, cmd)
			}
		}
		h.waitEntry("upstream violation", func(e audit.Entry) bool {
			return e.Host == host && strings.Contains(e.Reason, "the upstream broke the protocol: frame with RSV bits")
		})
	}
	// The upstream echoes the token in a close frame's reason.
	c, br := h.wsOpen(t, "wsapi.test", true)
	c.Write(wsFrameBytes(true, opText, []byte("close-token")))
	rest, _ := io.ReadAll(br)
	h.bodies = append(h.bodies, string(rest))
	if bytes.Contains(rest, []byte(apiToken[:8])) {
		t.Errorf("the agent got the token in a close frame: %q", rest)
	}
	h.waitEntry("close-token block", func(e audit.Entry) bool {
		return e.Decision == audit.Block && e.Secret == "API" && strings.Contains(e.Reason, "WebSocket closed")
	})
}

// TestWebSocketFragmentLimits: sizes and fragment counts around each
// limit, and a secret spread one byte a fragment.
func TestWebSocketFragmentLimits(t *testing.T) {
	const max = 4096
	h := newHarness(t, "", func(c *Config) { c.MaxWSMessage = max })
	send := func(overTLS bool, frames ...[]byte) []byte {
		t.Helper()
		c, br := h.wsOpen(t, "ws.test", overTLS)
		for _, f := range frames {
			c.Write(f)
		}
		c.Write(wsFrameBytes(true, opClose, []byte{0x03, 0xe8}))
		rest, _ := io.ReadAll(br)
		h.bodies = append(h.bodies, string(rest))
		return rest
	}
	frag := func(n int, each []byte) [][]byte {
		fs := [][]byte{wsFrameBytes(false, opBinary, each)}
		for i := 1; i < n-1; i++ {
			fs = append(fs, wsFrameBytes(false, opContinuation, each))
		}
		return append(fs, wsFrameBytes(true, opContinuation, each))
	}
	for _, overTLS := range []bool{false, true} {
		for _, tc := range []struct {
			name   string
			frames [][]byte
			code   uint16 // 0: relayed
		}{
			{"one frame of max-1", [][]byte{wsFrameBytes(true, opBinary, make([]byte, max-1))}, 0},
			{"one frame of max", [][]byte{wsFrameBytes(true, opBinary, make([]byte, max))}, 0},
			{"one frame of max+1", [][]byte{wsFrameBytes(true, opBinary, make([]byte, max+1))}, 1009},
			{"one frame of 10x max", [][]byte{wsFrameBytes(true, opBinary, make([]byte, 10*max))}, 1009},
			{"two frames, their cost fits", frag(2, make([]byte, (max-wsFrameCost)/2)), 0},
			{"two frames, one byte over", frag(2, make([]byte, (max-wsFrameCost)/2+1)), 1009},
			{"1023 empty fragments", frag(wsMaxFragments-1, nil), 1009}, // 1023*64 bytes of cost: over 4 KiB
		} {
			rest := send(overTLS, tc.frames...)
			code, reason := closeOf(rest)
			if tc.code == 0 && code == 1009 || tc.code != 0 && code != tc.code {
				t.Errorf("tls=%v %s: close %d %q, want %d", overTLS, tc.name, code, reason, tc.code)
			}
		}
	}
	// With the default 1 MiB, fragments are bounded by count.
	h2 := newHarness(t, "")
	for _, tc := range []struct {
		n    int
		code uint16
	}{{wsMaxFragments - 1, 0}, {wsMaxFragments, 0}, {wsMaxFragments + 1, 1009}, {10 * wsMaxFragments, 1009}} {
		c, br := h2.wsOpen(t, "ws.test", false)
		for _, f := range frag(tc.n, []byte("f")) {
			c.Write(f)
		}
		c.Write(wsFrameBytes(true, opClose, []byte{0x03, 0xe8}))
		rest, _ := io.ReadAll(br)
		if code, reason := closeOf(rest); code != tc.code && !(tc.code == 0 && code == 0) {
			t.Errorf("%d fragments: close %d %q, want %d", tc.n, code, reason, tc.code)
		}
	}
	// Control frames amid a message count among its frames.
	c, br := h2.wsOpen(t, "ws.test", true)
	c.Write(wsFrameBytes(false, opText, []byte("pinged")))
	c.Write(bytes.Repeat(wsFrameBytes(true, 0x9, nil), wsMaxFragments))
	rest, _ := io.ReadAll(br)
	if code, reason := closeOf(rest); code != 1009 || !strings.Contains(reason, "frames") {
		t.Errorf("%d pings amid a message: close %d %q, want 1009", wsMaxFragments, code, reason)
	}
	if got := h2.up.got(); !bytes.Contains(got, bytes.Repeat([]byte("f"), wsMaxFragments)) || bytes.Contains(got, bytes.Repeat([]byte("f"), wsMaxFragments+1)) {
		t.Errorf("the upstream did not get exactly the messages within the limit")
	}
	// The canary one byte a fragment: found, and no byte of it leaves.
	for _, overTLS := range []bool{false, true} {
		var fs [][]byte
		fs = append(fs, wsFrameBytes(false, opText, []byte("x")))
		for i := range len(h.canary) {
			fs = append(fs, wsFrameBytes(false, opContinuation, []byte{h.canary[i]}))
		}
		fs = append(fs, wsFrameBytes(true, opContinuation, nil))
		rest := send(overTLS, fs...)
		if code, _ := closeOf(rest); code != 1008 {
			t.Errorf("tls=%v: the canary one byte a fragment: close %d, want 1008", overTLS, code)
		}
	}
	if bytes.Contains(h.up.got(), []byte(h.canary[:6])) {
		t.Error("the canary reached the upstream")
	}
	h.waitEntry("canary block", func(e audit.Entry) bool { return e.Decision == audit.Block && e.Canary })
}

// TestWebSocketCloseReasonScanned: a secret in the reason of the agent's
// close frame is blocked, and the close frame does not go on.
func TestWebSocketCloseReasonScanned(t *testing.T) {
	h := newHarness(t, "")
	for _, overTLS := range []bool{false, true} {
		c, br := h.wsOpen(t, "ws.test", overTLS)
		c.Write(wsFrameBytes(true, opClose, append([]byte{0x03, 0xe8}, h.canary...)))
		rest, _ := io.ReadAll(br)
		h.bodies = append(h.bodies, string(rest))
		if code, _ := closeOf(rest); code != 1008 {
			t.Errorf("tls=%v: close %d, want 1008", overTLS, code)
		}
	}
	if bytes.Contains(h.up.got(), []byte(h.canary[:6])) {
		t.Error("the canary in a close reason reached the upstream")
	}
	// Half the canary in a message, the rest in the close reason: the
	// close code between the halves does not hide it.
	half := len(h.canary) / 2
	c, br := h.wsOpen(t, "ws.test", true)
	c.Write(wsFrameBytes(true, opText, []byte("x"+h.canary[:half])))
	c.Write(wsFrameBytes(true, opClose, append([]byte{0x03, 0xe8}, h.canary[half:]...)))
	rest, _ := io.ReadAll(br)
	h.bodies = append(h.bodies, string(rest))
	if code, _ := closeOf(rest); code != 1008 {
		t.Errorf("the canary split into a close reason: close %d, want 1008", code)
	}
	if bytes.Contains(h.up.got(), []byte(h.canary[half:])) { // the first half left with its message
		t.Error("the canary's last half, in a close reason, reached the upstream")
	}
	h.waitEntry("block", func(e audit.Entry) bool { return e.Decision == audit.Block && e.Canary && e.Status == 403 })
}

// TestWebSocketBudgets: frames are charged to the sidecar-wide budget
// even when empty, and a message must be whole in time, pings or not.
func TestWebSocketBudgets(t *testing.T) {
	h := newHarness(t, "", func(c *Config) {
		c.MaxWSBuffered = wsConnCost + 100*wsFrameCost
		c.BodyReadTimeout = 300 * time.Millisecond
	})
	c, br := h.wsOpen(t, "ws.test", false)
	c.Write(wsFrameBytes(false, opText, nil))
	c.Write(bytes.Repeat(wsFrameBytes(false, opContinuation, nil), 100))
	rest, _ := io.ReadAll(br)
	if code, _ := closeOf(rest); code != 1013 {
		t.Errorf("101 empty fragments over a budget of 100 frames: close %d, want 1013", code)
	}

	c, br = h.wsOpen(t, "ws.test", true)
	c.Write(wsFrameBytes(false, opText, []byte("slow")))
	stop := make(chan struct{})
	go func() { // pings keep the connection busy, not the message alive
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				c.Write(wsFrameBytes(true, 0x9, nil))
			}
		}
	}()
	start := time.Now()
	rest, _ = io.ReadAll(br)
	close(stop)
	if code, reason := closeOf(rest); code != 1008 || !strings.Contains(reason, "not whole within") {
		t.Errorf("a message never finished: close %d %q after %v", code, reason, time.Since(start))
	}
	h.waitEntry("close line", func(e audit.Entry) bool { return strings.Contains(e.Reason, "not whole within") })
	if n := h.srv.wsBytes.Load(); n != 0 {
		t.Errorf("%d bytes still charged", n)
	}
}

// TestWebSocketLogsOpenAndClose: the open line is in the log while the
// WebSocket is open, and the close line says what went each way and why
// it ended.
func TestWebSocketLogsOpenAndClose(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		h := newHarness(t, "")
		c, br := h.wsOpen(t, "ws.test", overTLS)
		open := h.waitEntry("open line", func(e audit.Entry) bool {
			return e.Status == 101 && strings.HasPrefix(e.Reason, "WebSocket opened by route")
		})
		if open.Decision != audit.Allow || open.Route == "" || open.Host != "ws.test" || open.Path != "/ws" {
			t.Errorf("open line %+v", open)
		}
		c.Write(wsFrameBytes(false, opText, []byte("hel")))
		c.Write(wsFrameBytes(true, opContinuation, []byte("lo")))
		hdr := make([]byte, 7)
		io.ReadFull(br, hdr)
		c.Write(wsFrameBytes(true, 0x9, []byte("p")))
		c.Write(wsFrameBytes(true, opClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}))
		io.ReadAll(br)
		e := h.waitEntry("close line", func(e audit.Entry) bool { return strings.HasPrefix(e.Reason, "WebSocket closed") })
		want := "WebSocket closed: the agent closed it (code 1000); 4 frames (11 bytes) up, 1 frames (5 bytes) down"
		if e.Reason != want || e.Decision != audit.Allow || e.BytesUp != 11 || e.BytesDown != 5 || e.Route != open.Route {
			t.Errorf("close line %+v\nwant reason %q", e, want)
		}
		n := 0
		for _, e := range h.entries() {
			if e.Path == "/ws" {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%d log lines, want the open and the close line:\n%s", n, h.dump())
		}
	}
}

// TestWebSocketTokenSplitByUpstream: an upstream that echoes the injected
// token, split where the agent chooses (by padding what it makes the
// upstream echo): across the fragments of a message no byte of the token
// reaches the agent; across messages or into a close frame, the piece
// that completes it never does, and the connection is cut and logged.
func TestWebSocketTokenSplitByUpstream(t *testing.T) {
	h := newHarness(t, defaultRoutes+`
- host: wsapi.test
  ports: [{{TLS}}]
  websocket: true
  inject: {header: Authorization, token: API, format: "Bearer {token}"}
`)
	at := len("Bearer ")
	for _, cmd := range []string{"split-frames", "split-bytes", "split-messages", "split-close"} {
		for _, k := range []int{at + 1, at + 4, at + len(apiToken)/2, at + len(apiToken) - 1} {
			c, br := h.wsOpen(t, "wsapi.test", true)
			c.Write(wsFrameBytes(true, opText, []byte(fmt.Sprintf("%s %d", cmd, k))))
			rest, _ := io.ReadAll(br)
			h.bodies = append(h.bodies, string(rest))
			last := apiToken[k-at:]
			switch {
			case bytes.Contains(rest, []byte(last)):
				t.Errorf("%s at %d: the agent got the token's last piece %q: %q", cmd, k, last, rest)
			case (cmd == "split-frames" || cmd == "split-bytes") && bytes.Contains(payloads(rest), []byte("Bearer "+apiToken[:1])):
				t.Errorf("%s at %d: the agent got a byte of the token: %q", cmd, k, rest)
			}
		}
		h.waitEntry(cmd, func(e audit.Entry) bool {
			return e.Decision == audit.Block && e.Secret == "API" && strings.Contains(e.Reason, "WebSocket closed")
		})
	}
}

// TestWebSocketsOpenAreCharged: every open WebSocket is charged its fixed
// buffers: past the budget a new one is refused (503, logged) rather than
// the sidecar growing, and a closed one gives its share back.
func TestWebSocketsOpenAreCharged(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.MaxWSBuffered = 3 * wsConnCost })
	var open []net.Conn
	for range 3 {
		c, _ := h.wsOpen(t, "ws.test", true)
		open = append(open, c)
	}
	_, _, status := h.wsDial(t, "ws.test", false)
	if !strings.HasPrefix(status, "503") || !strings.Contains(status, "too many WebSockets") {
		t.Errorf("a fourth WebSocket over the budget: %s", status)
	}
	h.waitEntry("refused", func(e audit.Entry) bool { return e.Status == 503 && strings.Contains(e.Reason, "too many WebSockets") })
	open[0].Close()
	h.waitEntry("close line", func(e audit.Entry) bool { return strings.HasPrefix(e.Reason, "WebSocket closed") })
	h.wsOpen(t, "ws.test", false)
}

// deflated is p compressed as permessage-deflate sends it: raw deflate,
// flushed, without the sync tail.
func deflated(t *testing.T, p []byte) []byte {
	var b bytes.Buffer
	zw, err := flate.NewWriter(&b, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(p)
	zw.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// TestWebSocketRefusedFramesNameTheCanary: a frame refused for breaking
// the protocol still has its payload scanned, so the canary in it is a
// block in the log, not only a protocol error: plain, compressed with
// the never negotiated permessage-deflate, or beside invalid UTF-8.
func TestWebSocketRefusedFramesNameTheCanary(t *testing.T) {
	h := newHarness(t, "")
	canary := []byte(h.canary)
	unmasked := append([]byte{0x82, byte(len(canary))}, canary...)
	cases := []struct {
		name   string
		frames [][]byte
	}{
		{"compressed (RSV1)", [][]byte{wsFrameRaw(0xc2, 7, uint64(len(deflated(t, canary))), deflated(t, canary))}},
		{"compressed, padded", [][]byte{wsFrameRaw(0xc2, 16, uint64(len(deflated(t, append(bytes.Repeat([]byte("z"), 5000), canary...)))), deflated(t, append(bytes.Repeat([]byte("z"), 5000), canary...)))}},
		{"RSV2 raw", [][]byte{wsFrameRaw(0xa2, 7, uint64(len(canary)), canary)}},
		{"reserved opcode", [][]byte{wsFrameRaw(0x83, 7, uint64(len(canary)), canary)}},
		{"unmasked", [][]byte{unmasked}},
		{"ping of 126", [][]byte{wsFrameRaw(0x89, 16, 126, append(canary, bytes.Repeat([]byte("p"), 126-len(canary))...))}},
		{"text not UTF-8", [][]byte{wsFrameBytes(true, opText, append(canary, 0xff))}},
		{"close reason not UTF-8", [][]byte{wsFrameBytes(true, opClose, append(append([]byte{0x03, 0xe8}, canary...), 0xff))}},
	}
	var seq uint64
	for _, tc := range cases {
		c, br := h.wsOpen(t, "ws.test", true)
		for _, f := range tc.frames {
			c.Write(f)
		}
		rest, _ := io.ReadAll(br)
		h.bodies = append(h.bodies, string(rest))
		if code, reason := closeOf(rest); code != 1008 {
			t.Errorf("%s: close %d %q, want 1008", tc.name, code, reason)
		}
		e := h.waitEntry(tc.name, func(e audit.Entry) bool {
			return e.Decision == audit.Block && e.Seq > seq
		})
		seq = e.Seq
		if !e.Canary || e.Secret != "CANARY" {
			t.Errorf("%s: block line %+v", tc.name, e)
		}
	}
	if bytes.Contains(h.up.got(), canary[:6]) {
		t.Error("the canary reached the upstream")
	}
}

// failOn fails the writes that contain a string.
type failOn string

func (f failOn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(f)) {
		return 0, errors.New("no space left on device")
	}
	return len(p), nil
}

// TestWebSocketUnloggedIsNotRelayed: when the open line cannot be
// written, the agent gets a 503, not a WebSocket.
func TestWebSocketUnloggedIsNotRelayed(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.Audit = audit.NewStreamWriter(failOn("WebSocket opened")) })
	_, _, status := h.wsDial(t, "ws.test", false)
	if !strings.HasPrefix(status, "503") || !strings.Contains(status, "audit log") {
		t.Errorf("with the open line unwritten: %s", status)
	}
}

// TestWebSocketClosedAtShutdownIsLogged: a WebSocket still open when the
// sidecar stops gets its close line before Serve returns.
func TestWebSocketClosedAtShutdownIsLogged(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.DrainTimeout = 200 * time.Millisecond })
	c, br := h.wsOpen(t, "ws.test", true)
	c.Write(wsFrameBytes(true, opText, []byte("before")))
	readMessage(br)
	h.stop()
	var closed *audit.Entry
	for _, e := range h.entries() {
		if strings.HasPrefix(e.Reason, "WebSocket closed") {
			closed = &e
		}
	}
	if closed == nil || closed.BytesUp != 6 {
		t.Errorf("after shutdown, close line %+v in:\n%s", closed, h.dump())
	}
	h.done <- nil // for cleanup
}
