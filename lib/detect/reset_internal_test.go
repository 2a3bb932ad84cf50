package detect

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// A pooled guard goes from one answer to the next: after Reset, nothing it
// kept of an answer that carried a token (its buffer, history, views,
// scanner tails) may still hold a byte of it.
func TestResetForgetsTheStream(t *testing.T) {
	const tok = "ghp_Zq8vT3xW0mLkP4rN7sYbC2dE6fGhJ1aUi9Oo"
	d, err := NewFolded([]Secret{{Name: "GITHUB", Value: tok}})
	if err != nil {
		t.Fatal(err)
	}
	// The token raw, escaped and wrapped, cut across reads, and the stream
	// stopped on it: every view and hold has had a piece.
	text := strings.Repeat("x", 40<<10) + tok[:20] + "%" + tok[20:] + " &#" + "103;" + tok[1:] + "\n" + tok[:30]
	g := d.GuardTight(strings.NewReader(text))
	buf := make([]byte, 7<<10)
	for {
		if _, err := g.Read(buf); err != nil {
			break
		}
	}
	g.Reset(nil)
	for name, b := range map[string][]byte{
		"buf": g.buf, "tv.hist": g.tv.hist, "tv.decHist": g.tv.decHist, "tv.join": g.tv.join, "tv.low": g.tv.low,
		"tv.scratch0": g.tv.scratch[0], "tv.scratch1": g.tv.scratch[1], "sc.tail": g.sc.tail, "sc.win": g.sc.win,
		"sc.low": g.sc.low, "sc.wlow": g.sc.wlow,
	} {
		if kept := b[:cap(b)]; bytes.Contains(kept, []byte(tok[:8])) || bytes.Contains(bytes.ToLower(kept), []byte(strings.ToLower(tok[8:16]))) {
			t.Errorf("after Reset, the guard's %s still holds part of the token", name)
		}
	}
	if g.views != nil {
		for _, v := range []*viewStream{g.views.dec, g.views.dec2, g.views.flat} {
			for name, b := range map[string][]byte{"pend": v.pend, "buf": v.buf} {
				if kept := b[:cap(b)]; bytes.Contains(bytes.ToLower(kept), []byte(strings.ToLower(tok[8:16]))) {
					t.Errorf("after Reset, a view's %s still holds part of the token", name)
				}
			}
		}
	}
	// And it guards the next stream as a new one.
	g.Reset(strings.NewReader("clean answer"))
	if out, err := io.ReadAll(g); err != nil || string(out) != "clean answer" {
		t.Errorf("after Reset: %q, %v", out, err)
	}
}
