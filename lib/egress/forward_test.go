package egress

import (
	"encoding/base32"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/detect"
)

const headSecret = "Real-Api-Token-0123456789abcdef"

func headDetector(t testing.TB) *detect.Detector {
	t.Helper()
	det, err := detect.NewFolded([]detect.Secret{{Name: "API", Value: headSecret}})
	if err != nil {
		t.Fatal(err)
	}
	return det
}

// TestScanHead covers every part of the head and each form it is scanned
// in, and that one request's text never shows up in the next one's scan.
func TestScanHead(t *testing.T) {
	det := headDetector(t)
	twice := url.QueryEscape(url.QueryEscape(headSecret))
	tests := []struct {
		name   string
		target string
		header map[string]string
		want   string // encoding of the hit; "" for none
	}{
		{"clean", "https://api.test/v1/x?page=2", map[string]string{"Accept": "application/json"}, ""},
		{"header value", "https://api.test/", map[string]string{"Authorization": "Bearer " + headSecret}, "raw"},
		{"header name", "https://api.test/", map[string]string{"X-" + headSecret: "1"}, "raw"},
		{"upper-cased", "https://api.test/", map[string]string{"X-Key": strings.ToUpper(headSecret)}, "case-folded raw"},
		{"lower-cased after non-ASCII", "https://api.test/", map[string]string{"X-Note": "Ärger " + strings.ToLower(headSecret)}, "case-folded raw"},
		{"upper-cased after invalid UTF-8", "https://api.test/", map[string]string{"X-Note": "\xff " + strings.ToUpper(headSecret)}, "case-folded raw"},
		{"path", "https://api.test/v1/" + headSecret, nil, "raw"},
		{"query", "https://api.test/?k=" + headSecret, nil, "raw"},
		{"query escaped twice", "https://api.test/?k=" + twice, nil, "raw"},
		{"fragment", "https://api.test/#" + headSecret, nil, "raw"},
		{"cookie, one char escaped", "https://api.test/", map[string]string{"Cookie": "s=%52" + headSecret[1:]}, "decoded raw"},
		{"header, mixed-case hex", "https://api.test/", map[string]string{"X-Trace": mixedHex(headSecret)}, "case-folded hex"},
		{"header, spaced base64", "https://api.test/", map[string]string{"X-Blob": spaced(base64.StdEncoding.EncodeToString([]byte(headSecret)), 6)}, "flattened base64"},
		{"header, base32", "https://api.test/", map[string]string{"X-Id": base32.StdEncoding.EncodeToString([]byte(headSecret))}, "base32"},
		{"user info", "https://u:" + headSecret + "@api.test/", nil, "raw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.target, nil)
			for k, v := range tt.header {
				r.Header[k] = []string{v} // as sent, not canonicalised
			}
			hit, ok := scanHead(det, r)
			switch {
			case tt.want == "" && ok:
				t.Fatalf("hit %+v in a clean head", hit)
			case tt.want != "" && !ok:
				t.Fatal("no hit")
			case ok && (hit.Secret != "API" || hit.Encoding != tt.want):
				t.Fatalf("hit %+v, want API (%s)", hit, tt.want)
			}
			// The pooled buffer carries nothing over.
			if hit, ok := scanHead(det, httptest.NewRequest("GET", "https://api.test/"+headSecret[10:], nil)); ok {
				t.Fatalf("a clean head after this one hit %+v", hit)
			}
		})
	}
}

func BenchmarkScanHead(b *testing.B) {
	det := headDetector(b)
	r := httptest.NewRequest("GET", "https://api.example.com/v1/repos/x/y?page=2&per_page=100", nil)
	r.Header.Set("User-Agent", "hey/0.0.1")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Authorization", "Bearer bb-placeholder-api-00000000")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := scanHead(det, r); ok {
			b.Fatal("hit")
		}
	}
}

func TestHopHeadersCanonical(t *testing.T) {
	for _, k := range hopHeaders {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("hop header %q is not canonical (%q): a map delete would miss it", k, c)
		}
	}
}
