package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/terminal"
	"github.com/bb-bottles/bb/lib/terminal/ptytest"
)

var lsCreated = time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)

var lsList = []backend.Listed{
	{Slug: "claude-implementer-x1y2", Agent: "claude-implementer", Template: "claude", Label: "bob", Color: "red",
		Display: "bob (claude-implementer)", Status: backend.ListRunning, Created: lsCreated},
	{Slug: "codex-ab12", Agent: "codex", Template: "codex", Label: "fix #42", Color: "#00ff80",
		Display: "fix #42 (codex)", Status: backend.ListExited, ExitCode: &exited, Preserved: true, Images: 2, Created: lsCreated},
	// Hand-edited metadata: no colour, and a tab in the label.
	{Slug: "odd-cd34", Agent: "odd", Template: "shell", Label: "a\tb", Display: "a\tb (odd)",
		Status: backend.ListStopped, Created: lsCreated},
}

var exited = 137

const lsPlain = "SLUG                     BOTTLE                    TEMPLATE  STATUS        PRESERVED  IMAGES  CREATED\n" +
	"claude-implementer-x1y2  bob (claude-implementer)  claude    running       no         0       2026-01-02 03:04:05\n" +
	"codex-ab12               fix #42 (codex)           codex     exited (137)  yes        2       2026-01-02 03:04:05\n" +
	"odd-cd34                 ab (odd)                  shell     stopped       no         0       2026-01-02 03:04:05\n"

var sgr = regexp.MustCompile("\x1b\\[[0-9;]*m")

func TestLsTable(t *testing.T) {
	for _, tc := range []struct {
		depth terminal.Depth
		bob   string
		fix   string
	}{
		{terminal.NoColor, "bob (claude-implementer)", "fix #42 (codex)"},
		{terminal.Color256, "\x1b[38;5;167mbob (claude-implementer)\x1b[39m", "\x1b[38;5;48mfix #42 (codex)\x1b[39m"},
		{terminal.TrueColor, "\x1b[38;2;229;72;77mbob (claude-implementer)\x1b[39m", "\x1b[38;2;0;255;128mfix #42 (codex)\x1b[39m"},
	} {
		t.Run(fmt.Sprint(tc.depth), func(t *testing.T) {
			var out bytes.Buffer
			if err := writeTable(&out, lsList, tc.depth); err != nil {
				t.Fatal(err)
			}
			got := out.String()
			// The colours change no column.
			if plain := sgr.ReplaceAllString(got, ""); plain != lsPlain {
				t.Errorf("the table without colours =\n%s\nwant\n%s", plain, lsPlain)
			}
			for _, want := range []string{"claude-implementer-x1y2  " + tc.bob + "  claude", "codex-ab12               " + tc.fix + "           codex"} {
				if !strings.Contains(got, want) {
					t.Errorf("the table has no %q:\n%q", want, got)
				}
			}
			if tc.depth == terminal.NoColor && strings.Contains(got, "\x1b") {
				t.Errorf("plain text has escapes: %q", got)
			}
		})
	}
}

// bb-launch ls on a terminal: a coloured table; with NO_COLOR, plain; not
// on a terminal, JSON, with display as plain text.
func TestLsTerminal(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	if err := st.WriteMetadata("claude-implementer-x1y2", state.Metadata{Agent: "claude-implementer", Template: "claude",
		Label: "bob", Color: "red", Backend: "smolvm", Created: lsCreated}); err != nil {
		t.Fatal(err)
	}
	ls := func(out *os.File, env ...string) {
		t.Helper()
		m := map[string]string{"TERM": "xterm-256color"}
		for i := 0; i+1 < len(env); i += 2 {
			m[env[i]] = env[i+1]
		}
		var errb bytes.Buffer
		d := &deps{Streams: cli.Streams{Out: out, Err: &errb, Env: func(k string) string { return m[k] }}, store: st}
		if err := runLs(t.Context(), d, lsOptions{}); err != nil {
			t.Fatalf("ls: %v\n%s", err, errb.String())
		}
	}
	ptmx, tty := openPTY(t)
	read := func() string {
		t.Helper()
		buf := make([]byte, 8192)
		ptmx.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := ptmx.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		// The pty's output processing: \n became \r\n.
		return strings.ReplaceAll(string(buf[:n]), "\r\n", "\n")
	}
	ls(tty)
	if got := read(); !strings.Contains(got, "\x1b[38;5;167mbob (claude-implementer)\x1b[39m") {
		t.Errorf("ls on a terminal:\n%q", got)
	}
	ls(tty, "COLORTERM", "truecolor")
	if got := read(); !strings.Contains(got, "\x1b[38;2;229;72;77mbob (claude-implementer)\x1b[39m") {
		t.Errorf("ls on a true-colour terminal:\n%q", got)
	}
	ls(tty, "NO_COLOR", "1")
	if got := read(); strings.Contains(got, "\x1b") || !strings.Contains(got, "  bob (claude-implementer)  ") {
		t.Errorf("ls on a terminal with NO_COLOR:\n%q", got)
	}

	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	ls(f)
	b, _ := os.ReadFile(f.Name())
	for _, want := range []string{`"label": "bob",`, `"color": "red",`, `"display": "bob (claude-implementer)",`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("ls JSON has no %s:\n%s", want, b)
		}
	}
	if bytes.Contains(b, []byte("\x1b")) {
		t.Errorf("ls JSON has escapes:\n%q", b)
	}
}

// openPTY returns a new pseudo-terminal's controller and its terminal.
func openPTY(t *testing.T) (ptmx, tty *os.File) { return ptytest.Open(t, 0, 0) }
