package main

import (
	"strings"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/terminal"
)

// What the tint writes for a bottle: the title and colour from its
// metadata; the title only with NO_COLOR; nothing on a dumb terminal; the
// slug as title for a bottle without metadata. The reset is written once.
func TestTint(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	if err := st.WriteMetadata("tester-ab12", state.Metadata{Agent: "tester", Template: "shell",
		Label: "bob", Color: "blue", Backend: "docker", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	blue, _ := terminal.ParseRGB("#0090ff")
	for _, tc := range []struct {
		name, slug string
		env        map[string]string
		want       terminal.Tint
	}{
		{"colour", "tester-ab12", map[string]string{"TERM": "xterm"},
			terminal.Tint{Title: "bob (tester) — tester-ab12", Color: blue, Colors: true}},
		{"NO_COLOR", "tester-ab12", map[string]string{"TERM": "xterm", "NO_COLOR": "1"},
			terminal.Tint{Title: "bob (tester) — tester-ab12", Color: blue}},
		{"dumb", "tester-ab12", map[string]string{"TERM": "dumb"}, terminal.Tint{}},
		{"no metadata", "gone-cd34", map[string]string{"TERM": "xterm"}, terminal.Tint{Title: "gone-cd34"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ptmx, tty := openPTY(t)
			term, err := terminal.New(tty)
			if err != nil {
				t.Fatal(err)
			}
			term.MakeRaw()
			d := &deps{Streams: cli.Streams{Env: func(k string) string { return tc.env[k] }}, store: st}
			untint := tint(d, term, tc.slug)
			untint()
			untint()
			term.Restore()
			tty.Close()
			var sb strings.Builder
			buf := make([]byte, 4096)
			for {
				ptmx.SetReadDeadline(time.Now().Add(time.Second))
				n, err := ptmx.Read(buf)
				sb.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if got, want := sb.String(), tc.want.Sequence()+tc.want.Reset(); got != want {
				t.Errorf("the terminal got\n%q\nwant\n%q", got, want)
			}
		})
	}
}
