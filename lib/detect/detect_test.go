package detect_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/detect"
)

// tokens are secrets shaped like real ones.
var tokens = []detect.Secret{
	{"ANTHROPIC", "sk-ant-api03-Xq7vR2mKpL9sT4wYbN8cZ1dF6gH3jA5e"},
	{"GITHUB", "ghp_R8kT2mWq9Xv4LpN7sB3cY6dZ1fH5jG0aE2uK"},
	{"ODD", "p@ss/w0rd+with spaces&\"quotes\"<tag>é"},
	{"CANARY", "Zm9vYmFyYmF6cXV4LWNhbmFyeS12YWx1ZS0xMjM0NTY3"},
}

func mustNew(t testing.TB, secrets []detect.Secret) *detect.Detector {
	t.Helper()
	d, err := detect.New(secrets)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []detect.Secret
		want    string
	}{
		{"empty name", []detect.Secret{{"", "longenoughvalue"}}, "secret #1 has no name"},
		{"duplicate", []detect.Secret{{"A", "longenoughvalue"}, {"A", "othervalue123"}}, "secret A is given twice"},
		{"short", []detect.Secret{{"A", "longenoughvalue"}, {"B", "1234567"}}, "secret B is 7 bytes long, shorter than the minimum of 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := detect.New(tc.secrets)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("New: got %v, want %q", err, tc.want)
			}
			for _, s := range tc.secrets {
				if strings.Contains(err.Error(), s.Value) {
					t.Errorf("error %q reveals a value", err)
				}
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	d := mustNew(t, nil)
	if h, ok := d.FindString("anything at all, " + tokens[0].Value); ok {
		t.Errorf("Find: got %v with no secrets", h)
	}
	if d.MaxLen() != 0 || len(d.Names()) != 0 {
		t.Errorf("MaxLen %d, Names %v; want 0 and none", d.MaxLen(), d.Names())
	}
	got, err := io.ReadAll(d.Guard(strings.NewReader("hello")))
	if err != nil || string(got) != "hello" {
		t.Errorf("Guard: got %q, %v", got, err)
	}
	sc := d.NewScanner()
	sc.Write([]byte("hello"))
	if sc.Found() {
		t.Errorf("Scanner found %v", sc.Hits())
	}
}

func TestNames(t *testing.T) {
	d := mustNew(t, tokens)
	if diff := cmp.Diff([]string{"ANTHROPIC", "GITHUB", "ODD", "CANARY"}, d.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
}

func b64(e *base64.Encoding, prefix int, v string) string {
	return e.EncodeToString(append(bytes.Repeat([]byte{0xA5}, prefix), v+"!!"...))
}

// b64At returns where v's stable characters start in b64(e, prefix, v).
func b64At(prefix int) int64 { return int64((8*prefix + 5) / 6) }

func TestEncodings(t *testing.T) {
	d := mustNew(t, tokens)
	odd := tokens[2].Value
	ant := tokens[0].Value
	pctAll := func(v, digits string) string {
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			b.WriteString("%" + string(digits[v[i]>>4]) + string(digits[v[i]&15]))
		}
		return b.String()
	}
	type tc struct {
		name   string
		text   string
		secret string
		offset int64
		enc    string
	}
	cases := []tc{
		{"raw", "x=" + ant, "ANTHROPIC", 2, "raw"},
		{"raw at start", ant + " trailing", "ANTHROPIC", 0, "raw"},
		{"raw at end", "Authorization: Bearer " + ant, "ANTHROPIC", 22, "raw"},
		{"query escape", "?q=" + url.QueryEscape(odd), "ODD", 3, "url"},
		{"query escape lower", "?q=" + strings.ToLower(url.QueryEscape(odd)), "ODD", 3, "url"},
		{"query escape upper", "?q=" + strings.ToUpper(url.QueryEscape(odd)), "", 0, ""}, // upper-casing letters too is not the secret
		{"path escape", "/p/" + url.PathEscape(odd), "ODD", 3, "url"},
		{"percent upper", "z" + pctAll(ant, "0123456789ABCDEF"), "ANTHROPIC", 1, "percent"},
		{"percent lower", "z" + pctAll(ant, "0123456789abcdef"), "ANTHROPIC", 1, "percent"},
		{"hex lower", "h:" + hex.EncodeToString([]byte(ant)), "ANTHROPIC", 2, "hex"},
		{"hex upper", "h:" + strings.ToUpper(hex.EncodeToString([]byte(ant))), "ANTHROPIC", 2, "hex"},
		{"json slash", `{"p":"p@ss\/w0rd+with spaces&\"quotes\"<tag>é"}`, "ODD", 6, "json"},
		{"json html", `{"p":"p@ss/w0rd+with spaces\u0026\"quotes\"\u003ctag\u003eé"}`, "ODD", 6, "json"},
		{"json ascii", `{"p":"p@ss/w0rd+with spaces&\"quotes\"<tag>\u00e9"}`, "ODD", 6, "json"},
		{"canary raw", "BOT_BOTTLE_CANARY=" + tokens[3].Value, "CANARY", 18, "raw"},
		{"nothing", "just some ordinary text that mentions sk-ant-api03 and ghp_ prefixes", "", 0, ""},
	}
	// Mixed-case percent hex: upper-case form with one escape lowered.
	mixed := url.QueryEscape(odd)
	i := strings.Index(mixed, "%2F")
	cases = append(cases, tc{"query escape mixed case", mixed[:i] + "%2f" + mixed[i+3:], "", 0, ""})
	for _, e := range []struct {
		name string
		enc  *base64.Encoding
	}{{"base64", base64.StdEncoding}, {"base64 raw", base64.RawStdEncoding}, {"base64url", base64.URLEncoding}, {"base64url raw", base64.RawURLEncoding}} {
		for prefix := range 6 {
			// Where the URL alphabet gives the same text, it is named base64.
			want := "base64"
			if b64(e.enc, prefix, odd) != b64(base64.StdEncoding, prefix, odd)[:len(b64(e.enc, prefix, odd))] {
				want = "base64url"
			}
			cases = append(cases, tc{fmt.Sprintf("%s prefix=%d", e.name, prefix),
				"data:" + b64(e.enc, prefix, odd), "ODD", 5 + b64At(prefix%3) + int64(prefix/3*4), want})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want []detect.Hit
			if tc.secret != "" {
				want = []detect.Hit{{Secret: tc.secret, Offset: tc.offset, Encoding: tc.enc}}
			}
			got := d.FindAll([]byte(tc.text))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("FindAll(%q) (-want +got):\n%s", tc.text, diff)
			}
			h, ok := d.FindString(tc.text)
			if ok != (len(want) > 0) || ok && h != want[0] {
				t.Errorf("FindString(%q) = %v, %v; want %v", tc.text, h, ok, want)
			}
		})
	}
}

// TestBase64Everywhere puts every token at every alignment inside random
// base64 blobs of both alphabets, padded and not.
func TestBase64Everywhere(t *testing.T) {
	d := mustNew(t, tokens)
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range tokens {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			for pre := range 7 {
				for post := range 4 {
					blob := make([]byte, pre+len(s.Value)+post)
					for i := range blob {
						blob[i] = byte(r.Uint32())
					}
					copy(blob[pre:], s.Value)
					text := "x " + enc.EncodeToString(blob) + " y"
					h, ok := d.FindString(text)
					if !ok || h.Secret != s.Name || !strings.HasPrefix(h.Encoding, "base64") {
						t.Errorf("%s pre=%d post=%d: got %v, %v in %q", s.Name, pre, post, h, ok, text)
					}
				}
			}
		}
	}
}

func TestNearMisses(t *testing.T) {
	d := mustNew(t, tokens)
	for _, s := range tokens {
		v := s.Value
		for i := 0; i < len(v); i++ {
			changed := []byte(v)
			changed[i] ^= 0x01
			texts := []string{
				string(changed),
				v[:i] + v[i+1:], // one byte gone
				hex.EncodeToString(changed),
				url.QueryEscape(string(changed)),
			}
			// The low bits of the last byte can share a base64 character
			// with whatever follows, so they are not part of the pattern.
			if i < len(v)-1 {
				texts = append(texts, base64.StdEncoding.EncodeToString(changed))
			}
			for _, text := range texts {
				if h, ok := d.FindString(text); ok {
					t.Errorf("%s changed at %d: false hit %v in %q", s.Name, i, h, text)
				}
			}
		}
		if h, ok := d.FindString(v[1:] + " " + v[:len(v)-1]); ok {
			t.Errorf("%s in two halves: false hit %v", s.Name, h)
		}
	}
}

func TestFindAllMany(t *testing.T) {
	d := mustNew(t, tokens)
	text := "a " + tokens[1].Value + " b " + hex.EncodeToString([]byte(tokens[0].Value)) + " c " + tokens[1].Value
	want := []detect.Hit{
		{Secret: "GITHUB", Offset: 2, Encoding: "raw"},
		{Secret: "ANTHROPIC", Offset: int64(2 + len(tokens[1].Value) + 3), Encoding: "hex"},
		{Secret: "GITHUB", Offset: int64(len(text) - len(tokens[1].Value)), Encoding: "raw"},
	}
	if diff := cmp.Diff(want, d.FindAll([]byte(text))); diff != "" {
		t.Errorf("FindAll (-want +got):\n%s", diff)
	}
	h, _ := d.FindString(text)
	if h != want[0] {
		t.Errorf("Find: got %v, want the lowest offset %v", h, want[0])
	}
}

// Short secrets make short patterns: the filter's stride shrinks, and
// overlapping occurrences are all found.
func TestShortSecret(t *testing.T) {
	d := mustNew(t, []detect.Secret{{"S", "aaaaaaaa"}})
	got := d.FindAll([]byte("xaaaaaaaaax"))
	want := []detect.Hit{{"S", 1, "raw"}, {"S", 2, "raw"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FindAll (-want +got):\n%s", diff)
	}
}

func scanChunks(d *detect.Detector, text []byte, sizes func() int) []detect.Hit {
	sc := d.NewScanner()
	for len(text) > 0 {
		n := min(len(text), sizes())
		if nw, err := sc.Write(text[:n]); nw != n || err != nil {
			panic("Scanner.Write failed")
		}
		text = text[n:]
	}
	return sc.Hits()
}

func TestScannerSplits(t *testing.T) {
	d := mustNew(t, tokens)
	text := []byte("GET /?t=" + url.QueryEscape(tokens[2].Value) + " and " + base64.StdEncoding.EncodeToString([]byte("x"+tokens[3].Value)) + " end")
	want := d.FindAll(text)
	if len(want) != 2 {
		t.Fatalf("FindAll: got %v, want 2 hits", want)
	}
	for split := 0; split <= len(text); split++ {
		for split2 := split; split2 <= len(text); split2 += 7 {
			sc := d.NewScanner()
			sc.Write(text[:split])
			sc.Write(text[split:split2])
			sc.Write(text[split2:])
			if diff := cmp.Diff(want, sc.Hits()); diff != "" {
				t.Fatalf("splits at %d, %d (-want +got):\n%s", split, split2, diff)
			}
		}
	}
	one := func() int { return 1 }
	if diff := cmp.Diff(want, scanChunks(d, text, one)); diff != "" {
		t.Errorf("one byte at a time (-want +got):\n%s", diff)
	}
}

func TestScannerStreamOffsets(t *testing.T) {
	d := mustNew(t, tokens)
	var text []byte
	var want []detect.Hit
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 50 {
		text = append(text, bytes.Repeat([]byte("lorem ipsum "), r.IntN(5000))...)
		s := tokens[i%len(tokens)]
		want = append(want, detect.Hit{Secret: s.Name, Offset: int64(len(text)), Encoding: "raw"})
		text = append(text, s.Value...)
	}
	sizes := func() int { return 1 + r.IntN(40000) }
	if diff := cmp.Diff(want, scanChunks(d, text, sizes)); diff != "" {
		t.Errorf("Scanner (-want +got):\n%s", diff)
	}
}

func TestGuard(t *testing.T) {
	d := mustNew(t, tokens)
	clean := strings.Repeat("nothing to see here; ", 5000)
	for _, tc := range []struct {
		name string
		text string
		hit  *detect.Hit
	}{
		{"clean", clean, nil},
		{"clean short", "hi", nil},
		{"empty", "", nil},
		{"secret at start", tokens[0].Value + clean, &detect.Hit{"ANTHROPIC", 0, "raw"}},
		{"secret at end", clean + tokens[1].Value, &detect.Hit{"GITHUB", int64(len(clean)), "raw"}},
		{"secret is all", tokens[3].Value, &detect.Hit{"CANARY", 0, "raw"}},
		{"hex in middle", clean + hex.EncodeToString([]byte(tokens[0].Value)) + clean, &detect.Hit{"ANTHROPIC", int64(len(clean)), "hex"}},
	} {
		for _, rd := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{{"plain", func(r io.Reader) io.Reader { return r }}, {"onebyte", iotest.OneByteReader}, {"half", iotest.HalfReader}, {"dataerr", iotest.DataErrReader}} {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				g := d.Guard(rd.wrap(strings.NewReader(tc.text)))
				got, err := io.ReadAll(iotest.OneByteReader(g))
				if tc.hit == nil {
					if err != nil || string(got) != tc.text {
						t.Fatalf("got %d bytes, %v; want all %d bytes and no error", len(got), err, len(tc.text))
					}
					return
				}
				h, ok := detect.IsHit(err)
				if !ok || h != *tc.hit {
					t.Fatalf("got error %v, want a hit %v", err, *tc.hit)
				}
				if int64(len(got)) > tc.hit.Offset {
					t.Errorf("released %d bytes, past the match at %d", len(got), tc.hit.Offset)
				}
				if string(got) != tc.text[:len(got)] {
					t.Errorf("released bytes differ from the input")
				}
				if _, err2 := g.Read(make([]byte, 10)); err2 != err {
					t.Errorf("second Read: got %v, want the same %v", err2, err)
				}
			})
		}
	}
}

func TestGuardReadError(t *testing.T) {
	d := mustNew(t, tokens)
	boom := errors.New("boom")
	text := strings.Repeat("x", 1000) + tokens[0].Value[:20]
	got, err := io.ReadAll(d.Guard(io.MultiReader(strings.NewReader(text), iotest.ErrReader(boom))))
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if want := len(text) - (d.MaxLen() - 1); len(got) != want {
		t.Errorf("released %d bytes, want %d (all but the held-back ones)", len(got), want)
	}
}

func TestHitError(t *testing.T) {
	err := &detect.HitError{Hit: detect.Hit{Secret: "CANARY", Offset: 9, Encoding: "base64"}}
	if got, want := err.Error(), "found secret CANARY (base64)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if h, ok := detect.IsHit(fmt.Errorf("scanning body: %w", err)); !ok || h.Offset != 9 {
		t.Errorf("IsHit of a wrapped error: %v, %v", h, ok)
	}
}

// A detector is shared by every request of the sidecar.
func TestConcurrent(t *testing.T) {
	d := mustNew(t, tokens)
	text := []byte(strings.Repeat("x", 5000) + hex.EncodeToString([]byte(tokens[1].Value)))
	want := []detect.Hit{{Secret: "GITHUB", Offset: 5000, Encoding: "hex"}}
	errs := make(chan string, 8)
	for range 8 {
		go func() {
			for range 50 {
				if diff := cmp.Diff(want, d.FindAll(text)); diff != "" {
					errs <- diff
					return
				}
				if _, err := io.ReadAll(d.Guard(bytes.NewReader(text))); err == nil {
					errs <- "Guard let the secret through"
					return
				}
			}
			errs <- ""
		}()
	}
	for range 8 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}

// Short and long patterns are filtered apart; their hits merge by offset.
func TestShortAndLong(t *testing.T) {
	d := mustNew(t, append([]detect.Secret{{"PIN", "Qz7#kP2!"}}, tokens...))
	text := "a " + tokens[1].Value + " b " + hex.EncodeToString([]byte("Qz7#kP2!")) + " c Qz7#kP2! " + base64.StdEncoding.EncodeToString([]byte(tokens[0].Value))
	want := []detect.Hit{
		{Secret: "GITHUB", Offset: 2, Encoding: "raw"},
		{Secret: "PIN", Offset: 45, Encoding: "hex"},
		{Secret: "PIN", Offset: 64, Encoding: "raw"},
		{Secret: "ANTHROPIC", Offset: 73, Encoding: "base64"},
	}
	if diff := cmp.Diff(want, d.FindAll([]byte(text))); diff != "" {
		t.Errorf("FindAll (-want +got):\n%s", diff)
	}
	for i, w := range want {
		if h, ok := d.FindString(text[w.Offset:]); !ok || h.Secret != w.Secret || h.Offset != 0 {
			t.Errorf("FindString from hit %d: got %v, %v; want %s at 0", i, h, ok, w.Secret)
		}
	}
	if diff := cmp.Diff(want, scanChunks(d, []byte(text), func() int { return 3 })); diff != "" {
		t.Errorf("Scanner (-want +got):\n%s", diff)
	}
}

func TestScannerTake(t *testing.T) {
	d := mustNew(t, tokens)
	sc := d.NewScanner()
	g := tokens[1].Value
	sc.Write([]byte("1 " + g[:10]))
	if got := sc.Take(); len(got) != 0 || sc.Found() {
		t.Fatalf("before the secret: Take %v, Found %v", got, sc.Found())
	}
	sc.Write([]byte(g[10:] + " 2 " + g))
	want := []detect.Hit{{"GITHUB", 2, "raw"}, {"GITHUB", 45, "raw"}}
	if diff := cmp.Diff(want, sc.Take()); diff != "" {
		t.Errorf("Take (-want +got):\n%s", diff)
	}
	sc.Write([]byte(" clean"))
	if got := sc.Take(); len(got) != 0 || !sc.Found() || len(sc.Hits()) != 0 {
		t.Errorf("after Take: Take %v, Found %v, Hits %v; want none, true, none", got, sc.Found(), sc.Hits())
	}
}
