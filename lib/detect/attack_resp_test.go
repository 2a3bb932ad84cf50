package detect_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/detect"
)

// escapeAll writes every byte of s as an escape of one kind.
func escapeAll(s, kind string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch kind {
		case "html":
			fmt.Fprintf(&b, "&#%d;", s[i])
		case "json":
			fmt.Fprintf(&b, "\\u%04x", s[i])
		case "pct":
			fmt.Fprintf(&b, "%%%02X", s[i])
		case "qp":
			fmt.Fprintf(&b, "=%02X", s[i])
		}
	}
	return b.String()
}

// TestAttackRespTightViews: the tight guard (an answer's) finds a token
// however the upstream escaped or wrapped it, read in pieces of any size,
// and releases no byte of it first.
func TestAttackRespTightViews(t *testing.T) {
	d := mustNew(t, tokens[:2])
	tok := tokens[0].Value
	forms := map[string]string{
		"one html":  tok[:5] + "&#" + fmt.Sprint(tok[5]) + ";" + tok[6:],
		"one json":  tok[:5] + fmt.Sprintf("\\u%04x", tok[5]) + tok[6:],
		"one pct":   tok[:5] + fmt.Sprintf("%%%02x", tok[5]) + tok[6:],
		"html":      escapeAll(tok, "html"),
		"json":      escapeAll(tok, "json"),
		"pct":       escapeAll(tok, "pct"),
		"pct twice": url.QueryEscape(escapeAll(tok, "pct")),
		"wrapped":   tok[:20] + "\n" + tok[20:],
		"wrapped2":  tok[:20] + "\\n" + tok[20:],
		"wrapped3":  tok[:20] + "&#10;" + tok[20:],
		"qp soft":   tok[:20] + "=\r\n" + tok[20:],
		"hex ent":   hexEnt(tok),
	}
	r := rand.New(rand.NewPCG(9, 9))
	for name, f := range forms {
		for range 100 {
			pre := strings.Repeat("ab ", r.IntN(40))
			text := pre + f + " zz"
			got, err := io.ReadAll(d.GuardTight(&randReader{r: strings.NewReader(text), rnd: r}))
			if _, ok := detect.IsHit(err); !ok {
				t.Fatalf("%s: %q: no hit (%v), released %q", name, text, err, got)
			}
			if len(got) > len(pre) {
				t.Fatalf("%s: released %q past the %d bytes before the token", name, got, len(pre))
			}
		}
	}
}

// TestAttackRespTightEvents: events whose ends hold escapes (JSON's \n,
// an entity, a percent escape) are released whole as they arrive.
func TestAttackRespTightEvents(t *testing.T) {
	d := mustNew(t, tokens[:3])
	src := make(chanReader, 1)
	g := d.GuardTight(src)
	buf := make([]byte, 4096)
	for _, ev := range []string{
		"data: {\"x\":1}\n\n",
		"data: {\"text\":\"line\\n\"}\n\n",
		"data: {\"text\":\"caf\\u00e9\"}\n\n",
		"data: a &amp; b&#10;\n\n",
		"data: 100%25 done\n\n",
		"data: =\n\n",
		"data: {\"t\":\"\\\\\"}\n\n",
		"event: ping\ndata: =3D\n\n",
		"data: hello\n\n",
		"data: sk-ant\n\n",
		"data: ghp_R8kT2mWq\r\n\r\n",
	} {
		src <- []byte(ev)
		if n, err := g.Read(buf); err != nil || string(buf[:n]) != ev {
			t.Fatalf("event %q: released %q %v", ev, buf[:n], err)
		}
	}
}

func hexEnt(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "&#X0%x;", s[i])
	}
	return b.String()
}

// TestAttackRespTightMemory: a guarded answer held open costs a bounded,
// small amount; a stream with no line break or all escapes too.
func TestAttackRespTightMemory(t *testing.T) {
	d := mustNew(t, tokens[:2])
	for _, text := range []string{strings.Repeat("hello world {\"a\":1} \\n ", 2000), strings.Repeat("%41", 20000), strings.Repeat(" ", 200000)} {
		gs := make([]*detect.Guard, 200)
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		buf := make([]byte, 32<<10)
		for i := range gs {
			gs[i] = d.GuardTight(strings.NewReader(text))
			for range 3 {
				gs[i].Read(buf)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		per := (int64(m1.HeapAlloc) - int64(m0.HeapAlloc)) / int64(len(gs))
		runtime.KeepAlive(gs)
		if per > 200<<10 {
			t.Errorf("%.10q...: %d KiB per open guard", text, per>>10)
		}
		t.Logf("%.10q...: %d KiB per open guard", text, per>>10)
	}
}

// TestAttackRespTightRandom: random text full of escape starts and
// whitespace before a token in a random form, read in random pieces: the
// tight guard finds it and releases nothing of it, as GuardViews does.
func TestAttackRespTightRandom(t *testing.T) {
	d := mustNew(t, tokens[:2])
	tok := tokens[1].Value
	forms := escapeFormsOf(tok)
	r := rand.New(rand.NewPCG(5, 5))
	const alphabet = "%\\&=+;#xu0aF9 \n\r\t\"{}ghp_"
	for i := range 3000 {
		var pre strings.Builder
		for range r.IntN(80) {
			pre.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		form := forms[r.IntN(len(forms))]
		text := pre.String() + form + "\n\nzz"
		got, err := io.ReadAll(d.GuardTight(&randReader{r: strings.NewReader(text), rnd: r}))
		if _, ok := detect.IsHit(err); !ok {
			if _, found := d.SearchString(text); found {
				t.Fatalf("%d: %q: no hit (%v), Search finds one", i, text, err)
			}
			continue
		}
		if len(got) > pre.Len() {
			t.Fatalf("%d: %q: released %q, past the %d bytes before the token", i, text, got, pre.Len())
		}
	}
}

func escapeFormsOf(tok string) []string {
	return []string{tok, escapeAll(tok, "html"), escapeAll(tok, "json"), escapeAll(tok, "pct"), escapeAll(tok, "qp"),
		tok[:9] + "\n" + tok[9:], tok[:9] + "\\n" + tok[9:], tok[:3] + "%" + fmt.Sprintf("%02x", tok[3]) + tok[4:], hexEnt(tok)}
}
