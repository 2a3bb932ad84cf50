package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/cli"
)

// The reload hook cannot be reached from the scripts, where no backend in
// the binary registers one; here a fake backend does.
var reloads []string

func init() {
	backend.RegisterReloader("fake-ok", backend.ReloaderFunc(func(_ context.Context, slug string) error {
		reloads = append(reloads, slug)
		return nil
	}))
	backend.RegisterReloader("fake-broken", backend.ReloaderFunc(func(context.Context, string) error {
		return errors.New("container bb-egress-x not running")
	}))
}

func TestApplyReloads(t *testing.T) {
	tests := []struct {
		name       string
		backend    string
		args       []string
		wantCode   int
		wantOut    string
		wantErr    string
		wantReload []string
	}{
		{"reloaded", "fake-ok", []string{"apply", "s1", "-"}, 0,
			`"reloaded": true`, "bb-egress: wrote 1 route(s) to STATE/s1/egress/routes.yaml and reloaded the sidecar\n", []string{"s1"}},
		{"allow reloads too", "fake-ok", []string{"allow", "s1", "example.org"}, 0,
			`"reloaded": true`, "bb-egress: wrote 1 route(s) to STATE/s1/egress/routes.yaml and reloaded the sidecar\n", []string{"s1"}},
		{"reload fails", "fake-broken", []string{"apply", "s1", "-"}, cli.ExitBackend,
			`"reloaded": false`, "bb-egress: reloading the sidecar of bottle s1: container bb-egress-x not running\n" +
				"hint: the routes were written; a running sidecar picks them up by watching the file\n", nil},
		{"no reloader", "smolvm", []string{"apply", "s1", "-"}, 0,
			`"reloaded": false`, "bb-egress: wrote 1 route(s) to STATE/s1/egress/routes.yaml; the sidecar picks the change up by watching the file\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reloads = nil
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "s1"), 0o700); err != nil {
				t.Fatal(err)
			}
			md := `{"slug":"s1","agent":"a","template":"shell","label":"a","color":"","backend":"` + tt.backend +
				`","created":"2030-05-01T12:00:00Z","preserved":false,"images":[]}`
			if err := os.WriteFile(filepath.Join(dir, "s1", "metadata.json"), []byte(md), 0o600); err != nil {
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
			if diff := cmp.Diff(tt.wantReload, reloads); diff != "" {
				t.Errorf("reloads (-want +got):\n%s", diff)
			}
			if _, err := os.Stat(filepath.Join(dir, "s1", "egress", "routes.yaml")); err != nil {
				t.Errorf("routes not written: %v", err)
			}
		})
	}
}
