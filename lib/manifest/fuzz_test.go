package manifest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bb-bottles/bb/lib/yamlx"
)

// FuzzLoad: whatever the bytes, loading never panics, every error is a
// *yamlx.Error that names the file and a line, and what loads resolves into
// Manifests that encode as JSON.
func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "bb.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(resolveYAML))
	for _, tt := range loadErrorTests {
		f.Add([]byte(tt.yaml))
	}
	dir := f.TempDir()
	env := func(k string) string {
		if k == "HOME" {
			return "/home/u"
		}
		return ""
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ix := &ManifestIndex{Source: "bb.yaml", base: dir, home: env("HOME"), files: map[string]string{}}
		err := ix.loadData(data, "bb.yaml")
		if err == nil {
			err = ix.validate(env)
		}
		if err != nil {
			positioned(t, err)
			return
		}
		for _, a := range ix.List() {
			m, err := ix.Resolve(a.Name)
			if err != nil {
				positioned(t, err)
				continue
			}
			if _, err := json.Marshal(m); err != nil {
				t.Errorf("encoding the manifest of %q: %v", a.Name, err)
			}
		}
	})
}

func positioned(t *testing.T, err error) {
	t.Helper()
	var ye *yamlx.Error
	if !errors.As(err, &ye) || ye.File != "bb.yaml" || ye.Line < 1 {
		t.Errorf("error without a position: %v (%T)", err, err)
	}
}
