package terminal

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestTintSequences(t *testing.T) {
	red := RGB{0xe5, 0x48, 0x4d}
	tint := Tint{Title: "bob (claude-implementer) — claude-implementer-x1y2", Color: red, Colors: true}
	// Background: 15% of red into black. Palette 7: 8% into #d0d0d0; 8: 25%
	// into #808080; 15 and the foreground: 8% into #f4f4f4.
	want := "\x1b[22;0t" +
		"\x1b]0;bob (claude-implementer) — claude-implementer-x1y2\x1b\\" +
		"\x1b]4;0;rgb:22/0b/0c;7;rgb:d2/c5/c6;8;rgb:99/72/73;15;rgb:f3/e6/e7\x1b\\" +
		"\x1b]10;rgb:f3/e6/e7\x1b\\" +
		"\x1b]11;rgb:22/0b/0c\x1b\\"
	if got := tint.Sequence(); got != want {
		t.Errorf("Sequence =\n%q\nwant\n%q", got, want)
	}
	wantReset := "\x1b]104\x1b\\\x1b]110\x1b\\\x1b]111\x1b\\\x1b]0;\x1b\\\x1b[23;0t"
	if got := tint.Reset(); got != wantReset {
		t.Errorf("Reset =\n%q\nwant\n%q", got, wantReset)
	}

	// NO_COLOR: the title only, and its reset only.
	plain := Tint{Title: "bob (shell) — s-1", Color: red}
	if got, want := plain.Sequence(), "\x1b[22;0t\x1b]0;bob (shell) — s-1\x1b\\"; got != want {
		t.Errorf("title-only Sequence = %q, want %q", got, want)
	}
	if got, want := plain.Reset(), "\x1b]0;\x1b\\\x1b[23;0t"; got != want {
		t.Errorf("title-only Reset = %q, want %q", got, want)
	}
	if got := (Tint{}).Sequence() + (Tint{}).Reset(); got != "" {
		t.Errorf("an empty tint writes %q", got)
	}
}

func TestTintTitleClean(t *testing.T) {
	// A label cannot end the sequence early or smuggle another one in.
	seq := Tint{Title: "evil\x07\x1b]11;rgb:ff/ff/ff\x1b\\\u009cx" + strings.Repeat("y", 300)}.Sequence()
	title := strings.TrimSuffix(strings.TrimPrefix(seq, "\x1b[22;0t\x1b]0;"), "\x1b\\")
	if strings.ContainsAny(title, "\x07\x1b\u009c") {
		t.Errorf("title keeps control characters: %q", title)
	}
	if n := len([]rune(title)); n != maxTitle {
		t.Errorf("title is %d runes, want %d", n, maxTitle)
	}
	if !strings.HasPrefix(title, "evil]11;rgb:ff/ff/ff\\xyyy") {
		t.Errorf("title = %q", title[:40])
	}
}

// The terminal gets the tint, then its reset exactly once however often
// untint is called.
func TestTerminalTint(t *testing.T) {
	ptmx, tty := openPTY(t)
	term, err := New(tty)
	if err != nil {
		t.Fatal(err)
	}
	// Raw, as when attached: no output processing.
	if err := term.MakeRaw(); err != nil {
		t.Fatal(err)
	}
	defer term.Restore()
	tint := Tint{Title: "t", Color: RGB{1, 2, 3}, Colors: true}
	untint := term.Tint(tint)
	for range 3 {
		if err := untint(); err != nil {
			t.Fatal(err)
		}
	}
	tty.Close()
	got := readAll(t, ptmx)
	if want := tint.Sequence() + tint.Reset(); got != want {
		t.Errorf("the terminal got\n%q\nwant\n%q", got, want)
	}
}

// readAll reads what the controller has until the terminal side is closed.
func readAll(t *testing.T, ptmx io.Reader) string {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				done <- sb.String()
				return
			}
		}
	}()
	select {
	case s := <-done:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("reading the pty did not end")
		return ""
	}
}
