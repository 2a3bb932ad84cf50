package image

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type entry struct {
	Name string
	Mode int64
	Data string
}

func readTar(t *testing.T, b []byte) []entry {
	t.Helper()
	var got []entry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.ModTime.Unix() != 0 {
			t.Errorf("%s: uid %d gid %d mtime %v, want root at the epoch", hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime)
		}
		got = append(got, entry{hdr.Name, hdr.Mode, string(data)})
	}
}

func TestTar(t *testing.T) {
	c := Context{
		Dockerfile: []byte("FROM scratch\n"),
		Files: map[string]File{
			"z/run.sh": {Data: []byte("#!/bin/sh\n"), Mode: 0o755},
			"a.txt":    {Data: []byte("a")},
		},
	}
	b, err := c.Tar()
	if err != nil {
		t.Fatal(err)
	}
	want := []entry{
		{"Dockerfile", 0o644, "FROM scratch\n"},
		{"a.txt", 0o644, "a"},
		{"z/run.sh", 0o755, "#!/bin/sh\n"},
	}
	if diff := cmp.Diff(want, readTar(t, b)); diff != "" {
		t.Errorf("tar entries (-want +got):\n%s", diff)
	}
	again, err := c.Tar()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, again) {
		t.Error("two tars of one context differ")
	}
}

func TestTarRejectsBadPaths(t *testing.T) {
	for _, name := range []string{"", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "Dockerfile", ".dockerignore", `a\b`} {
		c := Context{Dockerfile: []byte("FROM scratch\n"), Files: map[string]File{name: {Data: []byte("x")}}}
		if _, err := c.Tar(); err == nil {
			t.Errorf("Tar with file %q: no error", name)
		}
		if _, err := Hash(c, nil, nil); err == nil {
			t.Errorf("Hash with file %q: no error", name)
		}
	}
}

func TestHash(t *testing.T) {
	base := func() (Context, map[string]string, map[string]string) {
		return Context{
				Dockerfile: []byte("ARG BASE\nFROM ${BASE}\n"),
				Files:      map[string]File{"a": {Data: []byte("a")}},
			},
			map[string]string{"BASE": "bb-base:bookworm"},
			map[string]string{"bb.role": "image"}
	}
	c, args, labels := base()
	h0, err := Hash(c, args, labels)
	if err != nil {
		t.Fatal(err)
	}
	if len(h0) != 64 || strings.Trim(h0, "0123456789abcdef") != "" {
		t.Fatalf("Hash = %q, want 64 hex digits", h0)
	}
	if Tag(h0) != h0[:12] {
		t.Errorf("Tag = %q", Tag(h0))
	}

	tests := []struct {
		name   string
		change func(c *Context, args, labels map[string]string)
		same   bool
	}{
		{"unchanged", func(*Context, map[string]string, map[string]string) {}, true},
		{"0644 is the default mode", func(c *Context, _, _ map[string]string) { c.Files["a"] = File{Data: []byte("a"), Mode: 0o644} }, true},
		{"dockerfile", func(c *Context, _, _ map[string]string) { c.Dockerfile = append(c.Dockerfile, '\n') }, false},
		{"file data", func(c *Context, _, _ map[string]string) { c.Files["a"] = File{Data: []byte("b")} }, false},
		{"file mode", func(c *Context, _, _ map[string]string) { c.Files["a"] = File{Data: []byte("a"), Mode: 0o755} }, false},
		{"file name", func(c *Context, _, _ map[string]string) { c.Files = map[string]File{"b": {Data: []byte("a")}} }, false},
		{"extra file", func(c *Context, _, _ map[string]string) { c.Files["b"] = File{} }, false},
		{"build arg", func(_ *Context, args, _ map[string]string) { args["BASE"] = "debian:bookworm-slim" }, false},
		{"arg moved to label", func(_ *Context, args, labels map[string]string) {
			delete(args, "BASE")
			labels["BASE"] = "bb-base:bookworm"
		}, false},
		{"label", func(_ *Context, _, labels map[string]string) { labels["bb.test"] = "1" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, args, labels := base()
			tt.change(&c, args, labels)
			h, err := Hash(c, args, labels)
			if err != nil {
				t.Fatal(err)
			}
			if (h == h0) != tt.same {
				t.Errorf("hash same = %v, want %v", h == h0, tt.same)
			}
		})
	}
}
