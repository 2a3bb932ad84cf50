package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/cli"
)

// apply reloads through `bb-launch reload SLUG`, whichever backend runs the
// bottle: here a fake bb-launch on PATH answers as the real one does
// (bb-launch's own reload is tested with it, on the engine).
const fakeLaunch = `#!/bin/sh
[ "$1 $2" = "reload --" ] || { echo "bb-launch: bad args: $*" >&2; exit 2; }
echo "$3" >> "$(dirname "$0")/reloads"
case $3 in
s-ok) exit 0 ;;
s-stopped) echo "bb-launch: bottle s-stopped has no running sidecar; it reads its routes when it starts" >&2; exit 1 ;;
s-nosignal) printf 'bb-launch: bottle s-nosignal runs on smolvm, which cannot signal its sidecar; it picks the change up by watching the file\033]0;x\n' >&2; exit 1 ;;
*) echo "bb-launch: connecting to docker: engine down" >&2; exit 3 ;;
esac
`

func TestApplyReloads(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "bb-launch"), []byte(fakeLaunch), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	tests := []struct {
		name       string
		slug       string
		args       []string
		wantCode   int
		wantOut    string
		wantErr    string
		wantReload []string
	}{
		{"reloaded", "s-ok", []string{"apply", "s-ok", "-"}, 0,
			`"reloaded": true`, "bb-egress: wrote 1 route(s) to STATE/s-ok/egress/routes.yaml and reloaded the sidecar\n", []string{"s-ok"}},
		{"allow reloads too", "s-ok", []string{"allow", "s-ok", "example.org"}, 0,
			`"reloaded": true`, "bb-egress: wrote 1 route(s) to STATE/s-ok/egress/routes.yaml and reloaded the sidecar\n", []string{"s-ok"}},
		{"not running", "s-stopped", []string{"apply", "s-stopped", "-"}, 0,
			`"reloaded": false`, "bb-egress: wrote 1 route(s) to STATE/s-stopped/egress/routes.yaml; bottle s-stopped has no running sidecar; it reads its routes when it starts\n", []string{"s-stopped"}},
		{"no signal on this backend", "s-nosignal", []string{"apply", "s-nosignal", "-"}, 0,
			`"reloaded": false`, "bb-egress: wrote 1 route(s) to STATE/s-nosignal/egress/routes.yaml; bottle s-nosignal runs on smolvm, which cannot signal its sidecar; it picks the change up by watching the file?]0;x\n", []string{"s-nosignal"}},
		{"reload fails", "s-broken", []string{"apply", "s-broken", "-"}, cli.ExitBackend,
			`"reloaded": false`, "bb-egress: reloading the sidecar of bottle s-broken: bb-launch reload s-broken: connecting to docker: engine down\n" +
				"hint: the routes were written; a running sidecar picks them up by watching the file\n", []string{"s-broken"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(filepath.Join(bin, "reloads"))
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, tt.slug), 0o700); err != nil {
				t.Fatal(err)
			}
			md := `{"slug":"` + tt.slug + `","agent":"a","template":"shell","label":"a","color":"","backend":"docker",` +
				`"created":"2030-05-01T12:00:00Z","preserved":false,"images":[]}`
			if err := os.WriteFile(filepath.Join(dir, tt.slug, "metadata.json"), []byte(md), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			s := cli.Streams{In: strings.NewReader("- host: example.org\n"), Out: &out, Err: &errb,
				Env: func(k string) string {
					if k == "BB_STATE_DIR" {
						return dir
					}
					return ""
				},
				Environ: func() []string { return nil }}
			code := cli.Run(context.Background(), newApp(), s, append([]string{"bb-egress"}, tt.args...))
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("stdout = %s, want it to contain %s", out.String(), tt.wantOut)
			}
			if diff := cmp.Diff(tt.wantErr, strings.ReplaceAll(errb.String(), dir, "STATE")); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
			b, _ := os.ReadFile(filepath.Join(bin, "reloads"))
			if diff := cmp.Diff(tt.wantReload, strings.Fields(string(b))); diff != "" {
				t.Errorf("reloads (-want +got):\n%s", diff)
			}
			if _, err := os.Stat(filepath.Join(dir, tt.slug, "egress", "routes.yaml")); err != nil {
				t.Errorf("routes not written: %v", err)
			}
		})
	}
}
