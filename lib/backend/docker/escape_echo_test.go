package docker

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/state"
)

// TestEscapeEcho: an agent in a real bottle asks an upstream that echoes
// its request's headers for the echo compressed — as curl --compressed
// does, as raw gzip or deflate it decodes itself, as a gzip file — over
// HTTP/1.1 and HTTP/2. The upstream received the injected token; the
// agent must get no form of it, whatever it asked for, and the log must
// name the token and hold no value of it.
func TestEscapeEcho(t *testing.T) {
	c := needBase(t)
	b := setupEscape(t, c)
	cases := []struct {
		name  string
		args  []string
		query string
	}{
		{"curl --compressed", []string{"--compressed"}, ""},
		{"gzip, decoded by the agent", []string{"-H", "Accept-Encoding: gzip"}, ""},
		{"deflate, decoded by the agent", []string{"-H", "Accept-Encoding: deflate"}, ""},
		{"br first", []string{"-H", "Accept-Encoding: br, gzip;q=0.1"}, ""},
		{"a gzip file", []string{"--compressed"}, "&as=file"},
	}
	for _, proto := range []string{"--http1.1", "--http2"} {
		for _, tc := range cases {
			t.Run(proto+" "+tc.name, func(t *testing.T) {
				m := marker("echo")
				since := b.count(t)
				r := b.curl(t, append([]string{proto, "https://" + allowedHost + "/echo/headers?m=" + m + tc.query}, tc.args...)...)
				if strings.Contains(r.stderr, "option") && strings.Contains(r.stderr, "unknown") {
					t.Skipf("the agent's curl lacks %s: %s", proto, r.stderr)
				}
				if r.status == 0 {
					t.Fatalf("no answer: %v", r)
				}
				if got := b.allowed.saw(t, m); len(got) == 0 || got[0].Headers["Authorization"][0] != "Bearer "+b.token {
					t.Fatalf("the upstream did not get the token: %+v", got)
				}
				for i, v := range agentViews([]byte(r.body)) {
					for _, f := range b.tokenForms() {
						if bytes.Contains(v, []byte(f)) {
							t.Errorf("ESCAPE: the agent got the token (view %d, status %d)", i, r.status)
						}
					}
				}
				e := b.logged(t, since, "the echo "+m, func(e audit.Entry) bool {
					return e.Host == allowedHost && e.Path == "/echo/headers" && e.Method == "GET"
				})
				if e.Decision != audit.Block || (e.Secret != "GITHUB" && !strings.Contains(e.Reason, "cannot")) {
					t.Errorf("logged %s %d secret %q %q; want a block naming GITHUB", e.Decision, e.Status, e.Secret, e.Reason)
				}
			})
		}
	}
	data, err := os.ReadFile(filepath.Join(b.st.EgressDir(b.slug), state.AuditLogFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range b.tokenForms() {
		if bytes.Contains(data, []byte(f)) {
			t.Errorf("the audit log holds the token")
		}
	}
}

// agentViews are the bytes the agent got and what they decompress to.
func agentViews(b []byte) [][]byte {
	out := [][]byte{b}
	if r, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
		d, _ := io.ReadAll(r)
		out = append(out, d)
	}
	if r, err := zlib.NewReader(bytes.NewReader(b)); err == nil {
		d, _ := io.ReadAll(r)
		out = append(out, d)
	}
	return out
}
