package detect_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/bb-bottles/bb/lib/detect"
)

// viewForms are ways to write v that only a view of the text reveals:
// one byte escaped (in each escape decode knows), every byte escaped
// twice, and base64 wrapped with escaped line breaks.
func viewForms(v string) map[string]string {
	k := len(v) / 2
	one := func(esc string) string { return v[:k] + esc + v[k+1:] }
	c := v[k]
	var twice strings.Builder
	for i := 0; i < len(v); i++ {
		fmt.Fprintf(&twice, "%%25%02X", v[i])
	}
	b64 := base64.StdEncoding.EncodeToString([]byte("token=" + v + "\n"))
	return map[string]string{
		"percent one":     one(fmt.Sprintf("%%%02X", c)),
		"html one":        one(fmt.Sprintf("&#%d;", c)),
		"html hex one":    one(fmt.Sprintf("&#x%x;", c)),
		"json one":        one(fmt.Sprintf(`\u%04x`, c)),
		"qp one":          one(fmt.Sprintf("=%02X", c)),
		"percent twice":   twice.String(),
		"json in percent": url1(one(fmt.Sprintf(`\u%04x`, c))),
		"spaced":          v[:k] + "\r\n  " + v[k:],
		"b64 %0A":         wrap(b64, 8, "%0A"),
		"b64 json \\r\\n": wrap(b64, 8, `\r\n`),
		"b64 &#10;":       wrap(b64, 8, "&#10;"),
		"b64 =\\r\\n":     wrap(b64, 8, "=\r\n"),
	}
}

// url1 percent-escapes every "\" and "%" of s once.
func url1(s string) string {
	return strings.NewReplacer(`\`, "%5C", "%", "%25").Replace(s)
}

// fillers are texts around a secret: plain, full of escapes that decode
// to nothing secret, and whitespace.
var fillers = []string{"ab cd ", "%41%2f&#65;\\u0041=3D ", "\n\n\t  ", "&amp;%%\\\\==&#"}

// TestGuardViewsHoldBack: whatever view reveals a secret, and however the
// stream is cut, the guard returns no byte from where the secret's
// encoded form starts, and finds it as Search does.
func TestGuardViewsHoldBack(t *testing.T) {
	rnd := rand.New(rand.NewPCG(9, 9))
	for _, fold := range []bool{false, true} {
		d := mustNew(t, tokens)
		if fold {
			d = mustFolded(t, tokens)
		}
		for _, s := range tokens {
			if strings.ContainsAny(s.Value, " +") {
				continue // "+" is a space in a view: no view of it has the secret
			}
			for name, enc := range viewForms(s.Value) {
				if _, ok := d.FindString(enc); ok {
					continue // a form, no view needed
				}
				if _, ok := d.SearchString(enc); !ok {
					t.Errorf("%s %s: Search misses %q", s.Name, name, enc)
					continue
				}
				for _, padN := range []int{0, 1, 15, 16, 17, 4095, 4096, 4097, 32 << 10, 100 << 10} {
					fill := fillers[rnd.IntN(len(fillers))]
					pad := strings.Repeat(fill, padN/len(fill)+1)[:padN]
					text := pad + enc + strings.Repeat("z", rnd.IntN(50))
					for ri, rd := range []func(io.Reader) io.Reader{
						func(r io.Reader) io.Reader { return r }, iotest.OneByteReader,
						func(r io.Reader) io.Reader { return &randReader{r: r, rnd: rnd} },
					} {
						if ri == 1 && padN > 5000 {
							continue // one byte at a time: slow, and cut like the others
						}
						got, err := io.ReadAll(d.GuardViews(rd(strings.NewReader(text))))
						h, ok := detect.IsHit(err)
						if !ok || h.Secret != s.Name {
							t.Errorf("fold %v %s %s after %d bytes of %q, reader %d: %v", fold, s.Name, name, padN, fill, ri, err)
						}
						if len(got) > padN {
							t.Errorf("fold %v %s %s after %d bytes of %q, reader %d: released %d bytes", fold, s.Name, name, padN, fill, ri, len(got))
						}
					}
				}
			}
		}
	}
}

// TestGuardViewsLikeSearch: on random texts of escapes, a guard finds a
// secret when Search does, and a clean text passes whole.
func TestGuardViewsLikeSearch(t *testing.T) {
	d := mustFolded(t, tokens)
	rnd := rand.New(rand.NewPCG(5, 5))
	parts := []string{"%", "%2", "%25", "%0A", "&#", "&#1", "0;", "\\u00", "\\", "n", "=", "\r\n", " ", "x", "4", "1", ";", "&#x"}
	for range 3000 {
		var b strings.Builder
		for range rnd.IntN(60) {
			b.WriteString(parts[rnd.IntN(len(parts))])
		}
		if rnd.IntN(2) == 0 {
			fs := viewForms(tokens[[]int{0, 1, 3}[rnd.IntN(3)]].Value)
			for _, f := range fs {
				b.WriteString(f)
				break
			}
		}
		for range rnd.IntN(60) {
			b.WriteString(parts[rnd.IntN(len(parts))])
		}
		text := b.String()
		_, want := d.SearchString(text)
		got, err := io.ReadAll(d.GuardViews(&randReader{r: strings.NewReader(text), rnd: rnd}))
		_, hit := detect.IsHit(err)
		if hit != want || !hit && string(got) != text {
			t.Fatalf("%q: Search %v, guard %v (%v, %d of %d bytes)", text, want, hit, err, len(got), len(text))
		}
	}
}

// TestGuardViewsMemory: a 64 MiB stream of escapes or with no line break
// goes through a guard without growing the heap.
func TestGuardViewsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB streams")
	}
	d := mustFolded(t, tokens)
	for _, unit := range []string{"%41", "x", " ", "&#x000041;", "%2541", "=\r\n"} {
		src := io.LimitReader(&repeatReader{unit: []byte(strings.Repeat(unit, 4096))}, 64<<20)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		n, err := io.Copy(io.Discard, d.GuardViews(src))
		runtime.ReadMemStats(&after)
		if err != nil || n != 64<<20 {
			t.Fatalf("%q: %d bytes, %v", unit, n, err)
		}
		if grown := after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc); grown > 8<<20 {
			t.Errorf("%q: the heap grew by %d bytes", unit, grown)
		}
		if total := after.TotalAlloc - before.TotalAlloc; total > 16<<20 {
			t.Errorf("%q: allocated %d bytes for a 64 MiB stream", unit, total)
		}
	}
}

type repeatReader struct {
	unit []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.unit[r.off:])
		n += k
		r.off = (r.off + k) % len(r.unit)
	}
	return n, nil
}
