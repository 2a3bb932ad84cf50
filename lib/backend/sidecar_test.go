package backend

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

var (
	egressOnce sync.Once
	egressBin  string
	egressErr  error
)

// staticEgress builds ./cmd/bb-egress once per test run, static, for linux.
func staticEgress(t testing.TB) string {
	t.Helper()
	egressOnce.Do(func() {
		egressBin = filepath.Join(t.TempDir(), "bb-egress")
		egressErr = BuildSidecarBinary(context.Background(), "../..", "linux", runtime.GOARCH, egressBin)
	})
	if egressErr != nil {
		t.Fatal(egressErr)
	}
	return egressBin
}

func TestSidecarBinary(t *testing.T) {
	static := staticEgress(t)
	bin, err := os.ReadFile(static)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("beside the executable, through a symlink", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "bb-launch"), []byte("#!/bin/sh\n"))
		write(t, filepath.Join(dir, "bb-egress"), bin)
		link := filepath.Join(t.TempDir(), "bb-launch")
		if err := os.Symlink(filepath.Join(dir, "bb-launch"), link); err != nil {
			t.Fatal(err)
		}
		got, err := SidecarBinary(link)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, "bb-egress"); got != want {
			t.Errorf("SidecarBinary = %q, want %q", got, want)
		}
	})
	t.Run("the cross-compiled one first", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "bb-egress"), []byte("not a linux binary"))
		write(t, filepath.Join(dir, "bb-egress-linux-"+runtime.GOARCH), bin)
		got, err := SidecarBinary(filepath.Join(dir, "bb-launch"))
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, "bb-egress-linux-"+runtime.GOARCH); got != want {
			t.Errorf("SidecarBinary = %q, want %q", got, want)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for name, files := range map[string]map[string][]byte{
			"none":         {},
			"not ELF":      {"bb-egress": []byte("#!/bin/sh\necho hi\n")},
			"dynamic only": {"bb-egress": dynamicELF(t)},
		} {
			dir := t.TempDir()
			for n, data := range files {
				write(t, filepath.Join(dir, n), data)
			}
			_, err := SidecarBinary(filepath.Join(dir, "bb-launch"))
			if err == nil {
				t.Errorf("%s: no error", name)
				continue
			}
			if name == "dynamic only" && !strings.Contains(err.Error(), "CGO_ENABLED=0") {
				t.Errorf("%s: error %q does not say how to build a static binary", name, err)
			}
		}
	})
}

// dynamicELF returns a dynamically linked executable of this machine.
func dynamicELF(t *testing.T) []byte {
	t.Helper()
	for _, p := range []string{"/bin/sh", "/bin/ls", "/usr/bin/env"} {
		if b, err := os.ReadFile(p); err == nil && CheckStatic(p, b) != nil && slices.Equal(b[:4], []byte("\x7fELF")) {
			return b
		}
	}
	t.Skip("no dynamically linked ELF executable on this machine")
	return nil
}

func write(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
}
