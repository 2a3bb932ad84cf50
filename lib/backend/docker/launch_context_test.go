package docker

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/state"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The build context honours .dockerignore, as docker build does: what it
// excludes never reaches a layer.
func TestContextFilesDockerignore(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile":      "FROM scratch\n",
		".dockerignore":   "# secrets stay home\nsecrets\n*.pem\n!public.pem\n**/*.key\n",
		"install.sh":      "echo hi\n",
		"secrets/token":   "tok-in-the-context\n",
		"ca-key.pem":      "key\n",
		"public.pem":      "cert\n",
		"sub/deep/id.key": "key\n",
		"sub/keep.txt":    "kept\n",
		".git/config":     "[core]\n",
	})
	files, err := contextFiles(dir, filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for name := range files {
		got = append(got, name)
	}
	slices.Sort(got)
	if want := []string{"install.sh", "public.pem", "sub/keep.txt"}; !slices.Equal(got, want) {
		t.Errorf("context = %q, want %q", got, want)
	}
}

// A context past MaxContext is refused with a hint, before it is read.
func TestContextFilesCap(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "big.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxContext + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	_, err = contextFiles(dir, filepath.Join(dir, "Dockerfile"))
	if err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "is over 256 MiB") {
		t.Errorf("contextFiles of a big context = %v, want exit 2, over 256 MiB", err)
	}
	os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("*.img\n"), 0o644)
	if _, err := contextFiles(dir, filepath.Join(dir, "Dockerfile")); err != nil {
		t.Errorf("with the big file ignored: %v", err)
	}
}

// A bottle Dockerfile the agent can change, or a context that would bake
// a token or bb's state into a layer, is refused before anything is made.
func TestLaunchRefusesBuildContext(t *testing.T) {
	c := needEngine(t)
	root := t.TempDir()
	ws := filepath.Join(root, "project")
	stateDir := filepath.Join(root, "bottles", "state")
	writeFiles(t, root, map[string]string{
		"project/Dockerfile":        "ARG BASE\nFROM ${BASE}\n",
		"bottles/Dockerfile":        "ARG BASE\nFROM ${BASE}\n",
		"bottles/state/.keep":       "",
		"withtoken/Dockerfile":      "ARG BASE\nFROM ${BASE}\n",
		"withtoken/secrets/gh":      "tok-in-the-context\n",
		"withtoken/.dockerignore":   "secrets\n",
		"ok/Dockerfile":             "ARG BASE\nFROM ${BASE}\n",
		"project/.bb/Dockerfile.ok": "ARG BASE\nFROM ${BASE}\n",
	})
	for _, tc := range []struct {
		name, dockerfile, context string
		token                     string // the GITHUB token's file, if any
		want                      string
	}{
		{name: "Dockerfile in the workspace", dockerfile: "project/.bb/Dockerfile.ok", context: "ok",
			want: "refusing the Dockerfile " + root + "/project/.bb/Dockerfile.ok: it is in the workspace"},
		{name: "context is the workspace", dockerfile: "project/Dockerfile", want: "refusing the Dockerfile"},
		{name: "context in the workspace", dockerfile: "ok/Dockerfile", context: "project",
			want: "refusing the build context " + ws + ": it is in the workspace"},
		{name: "context holds the workspace", dockerfile: "ok/Dockerfile", context: ".",
			want: "refusing the build context " + root + ": it holds the workspace"},
		{name: "context holds the state", dockerfile: "bottles/Dockerfile",
			want: "holds bb's state folder (the bottles' routes and CA keys) (" + stateDir + "), which would be baked into the image"},
		// Even one its .dockerignore leaves out: one edit from a leak.
		{name: "context holds a token file", dockerfile: "withtoken/Dockerfile", token: "withtoken/secrets/gh",
			want: "holds the file of token GITHUB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slug := newSlug("ctx")
			p, raw := shellPlan(t, slug, func(m *manifest.Manifest) {
				m.Bottle.Workspace = ws
				m.Bottle.Dockerfile = filepath.Join(root, tc.dockerfile)
				if tc.token != "" {
					m.Bottle.Tokens["GITHUB"] = manifest.TokenSource{File: filepath.Join(root, tc.token)}
				}
			})
			if tc.context != "" {
				p.Agent.Dockerfile.Context = filepath.Join(root, tc.context)
			}
			st := &state.Store{Dir: stateDir}
			_, err := Launch(t.Context(), c, launchOptions(t, p, raw, st))
			if err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v (exit %d), want exit 2 and %q", err, exit.CodeOf(err), tc.want)
			}
			assertGone(t, c, slug)
		})
	}
}
