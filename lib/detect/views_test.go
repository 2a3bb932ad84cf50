package detect_test

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/bb-bottles/bb/lib/detect"
)

func mustFolded(t testing.TB, secrets []detect.Secret) *detect.Detector {
	t.Helper()
	d, err := detect.NewFolded(secrets)
	if err != nil {
		t.Fatalf("NewFolded: %v", err)
	}
	return d
}

// TestBase32 finds a secret base32-encoded at every alignment, in upper
// and lower case, padded or not.
func TestBase32(t *testing.T) {
	d := mustNew(t, tokens)
	for _, s := range tokens {
		for prefix := range 10 {
			blob := append(bytes.Repeat([]byte{0xA5}, prefix), s.Value+"!!"...)
			enc := base32.StdEncoding.EncodeToString(blob)
			for _, text := range []string{enc, strings.ToLower(enc), strings.TrimRight(enc, "=")} {
				h, ok := d.FindString("dns " + text + " end")
				if !ok || h.Secret != s.Name || h.Encoding != detect.Base32 {
					t.Errorf("%s at prefix %d in %q: %v %v", s.Name, prefix, text, h, ok)
				}
			}
		}
	}
}

// TestFolded: a folding detector finds every form with its letters in
// any case, and says when the case was changed.
func TestFolded(t *testing.T) {
	d := mustFolded(t, tokens)
	ant := tokens[0].Value
	mixedHex := []byte(hex.EncodeToString([]byte(ant)))
	for i := range mixedHex {
		if i%3 == 0 {
			mixedHex[i] = bytes.ToUpper(mixedHex[i : i+1])[0]
		}
	}
	var mixedPct strings.Builder
	for i := 0; i < len(ant); i++ {
		f := "%%%02x"
		if i%2 == 0 {
			f = "%%%02X"
		}
		fmt.Fprintf(&mixedPct, f, ant[i])
	}
	for _, tc := range []struct{ text, enc string }{
		{"k=" + ant, "raw"},
		{"k=" + strings.ToUpper(ant), "case-folded raw"},
		{"k=" + string(mixedHex), "case-folded hex"},
		{"k=" + strings.ToUpper(hex.EncodeToString([]byte(ant))), "hex"},
		{"k=" + mixedPct.String(), "case-folded percent"},
		{"k=" + strings.ToLower(base64.StdEncoding.EncodeToString([]byte(ant))), "case-folded base64"},
	} {
		h, ok := d.FindString(tc.text)
		if !ok || h.Secret != "ANTHROPIC" || h.Encoding != tc.enc || h.Offset != 2 {
			t.Errorf("Find(%q) = %+v %v, want ANTHROPIC (%s) at 2", tc.text, h, ok, tc.enc)
		}
		sc := d.NewScanner()
		for i := 0; i < len(tc.text); i += 7 {
			sc.Write([]byte(tc.text[i:min(i+7, len(tc.text))]))
		}
		if hs := sc.Hits(); len(hs) == 0 || hs[0] != h {
			t.Errorf("Scanner in pieces of %q = %+v, want %+v", tc.text, hs, h)
		}
	}
	if h, ok := d.FindString(strings.Repeat("nothing TO See here ", 100)); ok {
		t.Errorf("clean text: %v", h)
	}
}

// TestSearchViews: the escapes the forms do not cover, undone by Search.
func TestSearchViews(t *testing.T) {
	d := mustFolded(t, tokens)
	c := tokens[3].Value
	qp := func(s string) string {
		var b bytes.Buffer
		w := quotedprintable.NewWriter(&b)
		io.WriteString(w, s)
		w.Close()
		return b.String()
	}
	spaced := func(s string, every int, sep string) string {
		var b strings.Builder
		for i := 0; i < len(s); i += every {
			b.WriteString(s[i:min(i+every, len(s))] + sep)
		}
		return b.String()
	}
	b64 := base64.StdEncoding.EncodeToString([]byte("BOT_BOTTLE_CANARY=" + c))
	for _, tc := range []struct {
		name, text, secret, enc string
	}{
		{"one percent escape", fmt.Sprintf("note=%%%02X%s", c[0], c[1:]), "CANARY", "decoded raw"},
		{"one lower percent escape", fmt.Sprintf("note=%%%02x%s", c[0], c[1:]), "CANARY", "decoded raw"},
		{"escaped twice", fmt.Sprintf("note=%%25%02X%s", c[0], c[1:]), "CANARY", "decoded raw"},
		{"json one \\u", fmt.Sprintf(`{"note":"\u%04x%s"}`, c[0], c[1:]), "CANARY", "decoded raw"},
		{"json \\u upper hex", fmt.Sprintf(`{"note":"\u%04X%s"}`, c[1], c[:1]+c[2:]), "", ""},
		{"json \\/", `{"p":"p@ss\/w0rd+with spaces&\"quotes\"<tag>é"}`, "ODD", "json"},
		{"html decimal", fmt.Sprintf("&#%d;%s", c[0], c[1:]), "CANARY", "decoded raw"},
		{"html hex no semicolon", fmt.Sprintf("&#X%x%s", c[0], c[1:]), "CANARY", "decoded raw"},
		{"quoted-printable soft break", qp(strings.Repeat("x", 60) + c), "CANARY", "flattened raw"},
		{"quoted-printable one escape", fmt.Sprintf("=%02X%s", c[0], c[1:]), "CANARY", "flattened raw"},
		{"base64 spaced", spaced(b64, 8, " "), "CANARY", "flattened base64"},
		{"base64 wrapped", spaced(b64, 20, "\r\n"), "CANARY", "flattened base64"},
		{"base64 indented", spaced(b64, 20, "\n            "), "CANARY", "flattened base64"},
		{"reversed", reverse(c), "", ""},
	} {
		h, ok := d.SearchString(tc.text)
		if tc.secret == "" {
			if tc.name == "json \\u upper hex" {
				// \u with the wrong character: not the canary.
				if ok {
					t.Errorf("%s: %+v", tc.name, h)
				}
				continue
			}
			if ok {
				t.Errorf("%s: %+v, want nothing (a documented limitation)", tc.name, h)
			}
			continue
		}
		if !ok || h.Secret != tc.secret || h.Encoding != tc.enc {
			t.Errorf("%s: Search(%q) = %+v %v, want %s (%s)", tc.name, tc.text, h, ok, tc.secret, tc.enc)
		}
		if _, ok := d.FindString(tc.text); ok && strings.HasPrefix(tc.enc, "decoded") {
			t.Errorf("%s: Find alone finds it: the case tests nothing", tc.name)
		}
	}
}

// TestSearchPlus: "+" stands for a space only for a detector with a
// secret that has one.
func TestSearchPlus(t *testing.T) {
	d := mustFolded(t, []detect.Secret{{"PASS", "open sesame 0123456789"}})
	if h, ok := d.SearchString("q=open+sesame%200123456789"); !ok || h.Encoding != "decoded raw" {
		t.Errorf("plus for a space: %+v %v", h, ok)
	}
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// TestGuardFlat: wrapped base64 is caught in a stream, no byte of it
// released, and a long whitespace run holds nothing back.
func TestGuardFlat(t *testing.T) {
	d := mustFolded(t, tokens)
	b64 := base64.StdEncoding.EncodeToString([]byte("BOT_BOTTLE_CANARY=" + tokens[3].Value))
	var wrapped strings.Builder
	for i := 0; i < len(b64); i += 20 {
		wrapped.WriteString(b64[i:min(i+20, len(b64))] + "\r\n    ")
	}
	pad := strings.Repeat("x y\n", 300000)
	text := pad + wrapped.String() + "end"
	for _, rd := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r }, iotest.OneByteReader, iotest.HalfReader,
	} {
		got, err := io.ReadAll(d.GuardFlat(rd(strings.NewReader(text))))
		h, ok := detect.IsHit(err)
		if !ok || h.Secret != "CANARY" || h.Encoding != "flattened base64" {
			t.Fatalf("GuardFlat: %v", err)
		}
		if len(got) > len(pad) {
			t.Errorf("released %d bytes, past the start of the base64 at %d", len(got), len(pad))
		}
	}
	// A long run of whitespace holds back no more than maxFlatHold.
	block := chanReader(make(chan []byte)) // then nothing, not even an end
	defer close(block)
	g := d.GuardFlat(io.MultiReader(strings.NewReader("abc"+strings.Repeat(" ", 200<<10)), block))
	if n, err := io.ReadAll(io.LimitReader(g, 100<<10)); err != nil || len(n) != 100<<10 {
		t.Errorf("clean text with a long run: released %d, %v", len(n), err)
	}
	// Split by whitespace, even much of it, a secret is still found.
	c := tokens[3].Value
	for _, sep := range []string{"\n  ", "=\r\n", strings.Repeat(" \t", 50<<10)} {
		if _, err := io.ReadAll(d.GuardFlat(strings.NewReader(c[:20] + sep + c[20:]))); err == nil {
			t.Errorf("a secret split by %d bytes of whitespace was not caught", len(sep))
		}
	}
}

// chanReader returns one queued piece per Read, blocking until there is one.
type chanReader chan []byte

func (c chanReader) Read(p []byte) (int, error) {
	b, ok := <-c
	if !ok {
		return 0, io.EOF
	}
	return copy(p, b), nil
}

// TestGuardTight: a stream's event is released as soon as it arrives,
// unless its end could begin a secret; a secret split across reads is
// never released.
func TestGuardTight(t *testing.T) {
	d := mustNew(t, tokens[:2])
	src := make(chanReader, 1)
	g := d.GuardTight(src)
	buf := make([]byte, 1024)
	src <- []byte("data: {\"x\":1}\n\n")
	if n, err := g.Read(buf); err != nil || string(buf[:n]) != "data: {\"x\":1}\n\n" {
		t.Fatalf("first event: %q %v", buf[:n], err)
	}
	tok := tokens[1].Value
	src <- []byte("data: " + tok[:10])
	if n, err := g.Read(buf); err != nil || string(buf[:n]) != "data: " {
		t.Fatalf("event ending in the start of a token: released %q %v", buf[:n], err)
	}
	src <- []byte(tok[10:] + "\n\n")
	if n, err := g.Read(buf); err == nil {
		t.Fatalf("the token's end: released %q", buf[:n])
	}
	// Random texts and cuts: never a byte of the first match.
	r := rand.New(rand.NewPCG(3, 3))
	for range 200 {
		pre := strings.Repeat("ab ", r.IntN(50))
		text := pre + []string{tok, hex.EncodeToString([]byte(tok)), base64.StdEncoding.EncodeToString([]byte("x" + tok))}[r.IntN(3)] + "zz"
		got, err := io.ReadAll(d.GuardTight(&randReader{r: strings.NewReader(text), rnd: r}))
		if _, ok := detect.IsHit(err); !ok || len(got) > len(pre)+2 {
			t.Fatalf("%q: released %d bytes, %v", text, len(got), err)
		}
	}
}

type randReader struct {
	r   io.Reader
	rnd *rand.Rand
}

func (c *randReader) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), 1+c.rnd.IntN(40))])
}
