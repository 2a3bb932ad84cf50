package detect_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/detect"
)

// wrap cuts s into lines of n characters joined by br.
func wrap(s string, n int, br string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += n {
		b.WriteString(s[i:min(i+n, len(s))])
		if i+n < len(s) {
			b.WriteString(br)
		}
	}
	return b.String()
}

// escapedBreaks are the ways a line break is written escaped: in a form
// upload, a JSON string, XML, each as LF and as CRLF.
var escapedBreaks = []string{
	"%0A", "%0D%0A", "%0a", `\n`, `\r\n`, "&#10;", "&#13;&#10;", "&#xA;", `\u000a`, "form",
}

// TestEscapedBreaks: base64 of a file wrapped at 60 or 76 columns with its
// line breaks escaped is found, in the shapes real uploads have.
func TestEscapedBreaks(t *testing.T) {
	for _, fold := range []bool{false, true} {
		d := mustNew(t, tokens)
		if fold {
			d = mustFolded(t, tokens)
		}
		for _, s := range tokens {
			file := "#!/bin/sh\nexport TOKEN='" + s.Value + "'\n" + strings.Repeat("echo padding line\n", 5)
			b64 := base64.StdEncoding.EncodeToString([]byte(file))
			for _, cols := range []int{60, 76} {
				for _, br := range escapedBreaks {
					body := wrap(b64, cols, br)
					if br == "form" { // a whole file form-encoded: "+" and "/" escaped too
						body = url.QueryEscape(wrap(b64, cols, "\r\n"))
					}
					for _, shape := range []string{
						`{"message":"add","content":"%s"}`,
						"file=%s&name=x.sh",
						"<data>%s</data>",
					} {
						text := fmt.Sprintf(shape, body)
						h, ok := d.SearchString(text)
						if !ok || h.Secret != s.Name {
							t.Errorf("fold %v %s at %d columns, breaks %q, in %.12q: %v %v", fold, s.Name, cols, br, shape, h, ok)
						}
						if !ok {
							continue
						}
						if g := streamHit(d, text); g == nil || g.Secret != s.Name {
							t.Errorf("fold %v %s at %d columns, breaks %q streamed: %v", fold, s.Name, cols, br, g)
						}
					}
				}
			}
		}
	}
}

func streamHit(d *detect.Detector, text string) *detect.Hit {
	_, err := readAllGuard(d, text)
	if h, ok := detect.IsHit(err); ok {
		return &h
	}
	return nil
}

func readAllGuard(d *detect.Detector, text string) ([]byte, error) {
	return io.ReadAll(d.GuardFlat(strings.NewReader(text)))
}

// TestNamedEntities: a secret with the characters HTML and XML escape by
// name, written so, is found in a buffer and in a stream.
func TestNamedEntities(t *testing.T) {
	d := mustFolded(t, []detect.Secret{{Name: "MARKUP", Value: `a<b>c&d"e'f-0123456789`}})
	for _, text := range []string{
		`<v>a&lt;b&gt;c&amp;d&quot;e&apos;f-0123456789</v>`,
		`<v>a&lt;b&gt;c&amp;d&quot;e&#39;f-0123456789</v>`,
		`<v>a&LT;b&gt;c&amp;d&quot;e&apos;f-0123456789</v>`,
	} {
		if h, ok := d.SearchString(text); !ok || h.Secret != "MARKUP" {
			t.Errorf("%q: %v %v", text, h, ok)
		}
		if _, ok := d.SearchString(text); ok != (streamHit(d, text) != nil) {
			t.Errorf("%q: Search and a guard disagree", text)
		}
	}
}
