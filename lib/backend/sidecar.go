package backend

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/bb-bottles/bb/lib/exit"
)

// SidecarBinary finds the bb-egress to put in the sidecar image beside the
// running executable selfExe (following symlinks): first the linux binary
// `make images` cross-compiles (bb-egress-linux-<arch>), then bb-egress
// itself. It must be static, as the image has no libc.
func SidecarBinary(selfExe string) (string, error) {
	exe, err := filepath.EvalSymlinks(selfExe)
	if err != nil {
		exe = selfExe
	}
	dir := filepath.Dir(exe)
	var errs []error
	for _, name := range []string{"bb-egress-linux-" + runtime.GOARCH, "bb-egress"} {
		p := filepath.Join(dir, name)
		bin, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil {
			err = CheckStatic(p, bin)
		}
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		errs = append(errs, fmt.Errorf("no bb-egress in %s", dir))
	}
	return "", exit.Usage(fmt.Errorf("finding the sidecar binary: %w", errors.Join(errs...)),
		"run 'make images' to build a static linux bb-egress beside the bb binaries")
}

// CheckStatic checks that bin is a Linux ELF executable with no dynamic
// loader, so it runs in an image FROM scratch.
func CheckStatic(path string, bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("%s is not a linux executable: %w", path, err)
	}
	defer f.Close()
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return fmt.Errorf("%s is not a linux executable (ELF OS ABI %v)", path, f.OSABI)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// BuildSidecarBinary compiles ./cmd/bb-egress of the module at repoRoot as
// a static binary for goos/goarch, written to out. It is what 'make images'
// runs where the host is not the engine's linux.
func BuildSidecarBinary(ctx context.Context, repoRoot, goos, goarch, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w", "-o", out, "./cmd/bb-egress")
	cmd.Dir = repoRoot
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("building bb-egress for %s/%s: %s", goos, goarch, msg)
	}
	return nil
}
