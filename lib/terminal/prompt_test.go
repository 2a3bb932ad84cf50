package terminal

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseKeys(t *testing.T) {
	r := func(c rune) key { return key{r: c} }
	n := func(k keyName) key { return key{name: k} }
	for _, tc := range []struct {
		in   string
		want []key
		rest string
	}{
		{"ab\r", []key{r('a'), r('b'), n(keyEnter)}, ""},
		{"é€\n", []key{r('é'), r('€'), n(keyEnter)}, ""},
		{"\x7f\x08\x03\x15", []key{n(keyBackspace), n(keyBackspace), n(keyInterrupt), n(keyKill)}, ""},
		{"\x1b[A\x1b[B\x1b[C\x1b[D", []key{n(keyUp), n(keyDown), n(keyRight), n(keyLeft)}, ""},
		{"\x1bOA\x1b[1;5B", []key{n(keyUp), n(keyDown)}, ""},
		// Keys a prompt ignores: Home, F5, Alt+x, Tab, a lone Escape.
		{"\x1b[H\x1b[15~\x1bx\tz\x1b", []key{n(keyOther), n(keyOther), n(keyOther), n(keyOther), r('z'), n(keyOther)}, ""},
		// Cut in the middle: kept for the next read.
		{"a\x1b[1;", []key{r('a')}, "\x1b[1;"},
		{"a\xc3", []key{r('a')}, "\xc3"},
		// C1 controls and bad UTF-8 are not text.
		{"\u0085\xff", []key{n(keyOther), n(keyOther)}, ""},
	} {
		keys, rest := parseKeys([]byte(tc.in))
		if !slices.Equal(keys, tc.want) || string(rest) != tc.rest {
			t.Errorf("parseKeys(%q) = %v, %q; want %v, %q", tc.in, keys, rest, tc.want, tc.rest)
		}
	}
}

// promptPTY is a Prompter on a new pty, what it shows, and a way to type.
func promptPTY(t *testing.T, ctx context.Context, depth Depth) (p *Prompter, typ func(string), shown func() string, tty *Terminal) {
	t.Helper()
	ptmx, f := openPTY(t)
	unix.IoctlSetWinsize(int(ptmx.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: 80, Row: 24})
	term, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	var out screenBuf
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			out.write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	p, err = NewPrompter(ctx, term, depth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, func(s string) { ptmx.Write([]byte(s)) }, out.String, term
}

type screenBuf struct {
	ch chan struct{}
	sb strings.Builder
}

func (s *screenBuf) write(b []byte) {
	if s.ch == nil {
		s.ch = make(chan struct{}, 1)
		s.ch <- struct{}{}
	}
	<-s.ch
	s.sb.Write(b)
	s.ch <- struct{}{}
}

func (s *screenBuf) String() string {
	if s.ch == nil {
		return ""
	}
	<-s.ch
	defer func() { s.ch <- struct{}{} }()
	return s.sb.String()
}

func TestLabel(t *testing.T) {
	for _, tc := range []struct {
		name, keys, want string
		err              error
	}{
		{"Enter keeps the default", "\r", "claude-implementer", nil},
		{"the first key replaces it", "bob\r", "bob", nil},
		{"Backspace edits it", "\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7fwriter\r", "claude-writer", nil},
		{"an arrow edits it", "\x1b[D-2\r", "claude-implementer-2", nil},
		{"Ctrl-U clears it", "\x15fix #42\r", "fix #42", nil},
		{"blank is the default", "  \r", "claude-implementer", nil},
		{"text", "é 🐱\r", "é 🐱", nil},
		{"Ctrl-C cancels", "bo\x03", "", ErrInterrupted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, typ, shown, _ := promptPTY(t, t.Context(), Color256)
			typ(tc.keys)
			got, err := p.Label("Label", "claude-implementer")
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Errorf("Label = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
			if err == nil {
				waitShown(t, shown, "Label: "+tc.want+"\r\n")
			}
		})
	}
}

func waitShown(t *testing.T, shown func() string, text string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(shown(), text) {
			return
		}
	}
	t.Errorf("the terminal never showed %q; it shows %q", text, shown())
}

func TestLabelShowsDefault(t *testing.T) {
	p, typ, shown, _ := promptPTY(t, t.Context(), Color256)
	typ("\r")
	if _, err := p.Label("Label", "bob"); err != nil {
		t.Fatal(err)
	}
	// Pre-filled: shown selected (reverse video), with how to answer.
	waitShown(t, shown, "Label: \x1b[7mbob\x1b[0m\x1b[2m  (Enter keeps it, typing replaces it)\x1b[0m")

	// No colour: no attributes either, the hint still.
	p, typ, shown, _ = promptPTY(t, t.Context(), NoColor)
	typ("\r")
	if _, err := p.Label("Label", "bob"); err != nil {
		t.Fatal(err)
	}
	waitShown(t, shown, "\r\x1b[KLabel: bob  (Enter keeps it, typing replaces it)")
}

var choices = []Choice{{"red", RGB{0xe5, 0x48, 0x4d}}, {"green", RGB{0x30, 0xa4, 0x6c}}, {"blue", RGB{0x00, 0x90, 0xff}}}

func TestColor(t *testing.T) {
	for _, tc := range []struct {
		name, keys string
		def, want  int
		err        error
	}{
		{"Enter picks the default", "\r", 1, 1, nil},
		{"down", "\x1b[B\r", 0, 1, nil},
		{"up wraps", "\x1b[A\r", 0, 2, nil},
		{"down wraps", "\x1b[B\x1b[B\x1b[B\r", 0, 0, nil},
		{"j and k", "jjk\r", 0, 1, nil},
		{"a number", "3\r", 0, 2, nil},
		{"a number out of range is ignored", "9x\r", 1, 1, nil},
		{"Ctrl-C cancels", "\x1b[B\x03", 0, 0, ErrInterrupted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, typ, shown, _ := promptPTY(t, t.Context(), TrueColor)
			typ(tc.keys)
			got, err := p.Color("Colour", choices, tc.def)
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Errorf("Color = %d, %v; want %d, %v", got, err, tc.want, tc.err)
			}
			if err == nil {
				c := choices[tc.want]
				waitShown(t, shown, "Colour: "+TrueColor.Paint(c.Name, c.Color)+"\r\n")
			}
		})
	}
}

func TestColorShown(t *testing.T) {
	p, typ, shown, _ := promptPTY(t, t.Context(), Color256)
	typ("\r")
	if _, err := p.Color("Colour", choices, 2); err != nil {
		t.Fatal(err)
	}
	// Each name in its colour, the default marked.
	waitShown(t, shown, "\x1b[K    1 \x1b[38;5;167mred\x1b[39m\r\n"+
		"\x1b[K    2 \x1b[38;5;71mgreen\x1b[39m\r\n"+
		"\x1b[K  > 3 \x1b[1m\x1b[38;5;33mblue\x1b[39m\x1b[0m")
}

// Keys typed ahead of the second question are its; the terminal is cooked
// again after Close.
func TestPrompterTypeAhead(t *testing.T) {
	p, typ, _, term := promptPTY(t, t.Context(), NoColor)
	typ("bob\r3\r")
	label, err := p.Label("Label", "x")
	if err != nil || label != "bob" {
		t.Fatalf("Label = %q, %v", label, err)
	}
	i, err := p.Color("Colour", choices, 0)
	if err != nil || i != 2 {
		t.Fatalf("Color = %d, %v", i, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	attrs, err := unix.IoctlGetTermios(int(term.File().Fd()), ioctlGetTermios)
	if err != nil {
		t.Fatal(err)
	}
	if attrs.Lflag&unix.ICANON == 0 || attrs.Lflag&unix.ECHO == 0 {
		t.Error("the terminal is still raw after Close")
	}
}

// A signal (the context's end) ends a question being asked.
func TestPromptCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	p, _, _, _ := promptPTY(t, ctx, NoColor)
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := p.Label("Label", "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Label after cancel: %v", err)
	}
}
