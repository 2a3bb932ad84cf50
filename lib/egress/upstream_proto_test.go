package egress

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// An agent's request goes upstream in the HTTP version it came in, and on
// HTTP/1.1 (its own transport, since the change) the large-body path still
// holds back every byte of a secret at every size around MaxScanBody, raw
// and escaped, with the token injected and nothing of it logged.
func TestUpstreamSpeaksTheAgentsVersion(t *testing.T) {
	h := newHarness(t, "")
	limit := int(h.srv.cfg.MaxScanBody)
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		want := 1
		if h2 {
			want = 2
		}
		st, body := h.get(c, h.tlsURL("api.test", "/proto"))
		h.up.mu.Lock()
		got := h.up.last.ProtoMajor
		h.up.mu.Unlock()
		if st != 200 || got != want {
			t.Errorf("h2=%v: %d %q, upstream spoke HTTP/%d, want HTTP/%d", h2, st, body, got, want)
		}
		if h.up.lastAuth() != "Bearer "+apiToken {
			t.Errorf("h2=%v: the token was not injected (%q)", h2, h.up.lastAuth())
		}
		for _, size := range []int{limit - 1, limit, limit + 1, limit + 32<<10, 3 * limit} {
			for _, form := range []struct{ name, secret string }{
				{"raw", h.canary},
				{"one byte escaped", h.canary[:10] + fmt.Sprintf("%%%02X", h.canary[10]) + h.canary[11:]},
				{"wrapped in JSON", h.canary[:20] + `\n` + h.canary[20:]},
			} {
				// The secret ends exactly at the body's end: the last bytes
				// the guard would be tempted to release.
				pad := size - len(form.secret)
				b := append(bytes.Repeat([]byte("a"), pad), form.secret...)
				before := h.up.got()
				req := mustReq("POST", h.tlsURL("api.test", "/up"), bytes.NewReader(b))
				st, _, _ := h.do(c, req)
				if st == 200 {
					t.Errorf("h2=%v size %d %s: the body went through", h2, size, form.name)
				}
				sent := h.up.got()[len(before):]
				if bytes.Contains(sent, []byte(h.canary[:16])) || bytes.Contains(sent, []byte(form.secret[:16])) {
					t.Errorf("h2=%v size %d %s: the upstream received the start of the canary", h2, size, form.name)
				}
			}
		}
	}
	for _, e := range h.entries() {
		line := fmt.Sprintf("%+v", e)
		if strings.Contains(line, h.canary) || strings.Contains(line, apiToken) {
			t.Errorf("a log line holds a secret's value: %s", line)
		}
	}
}
