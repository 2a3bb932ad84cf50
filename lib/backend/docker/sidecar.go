package docker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/image"
	"github.com/bb-bottles/bb/lib/names"
)

// SidecarRepo is the repository of the sidecar's images; each is tagged with
// the first 12 hex digits of its binary's SHA-256.
const SidecarRepo = "bb-egress"

// LabelEgressSHA256 holds the full SHA-256 of the image's bb-egress binary,
// so a tag made by anything else is not mistaken for ours.
const LabelEgressSHA256 = "bb.egress.sha256"

// sidecarDockerfile is all the sidecar image is: one static binary, no
// shell, run as an unprivileged user. The tag hashes only the binary, so a
// change here must also change sidecarLayout.
const sidecarDockerfile = `FROM scratch
COPY bb-egress /bb-egress
USER 65532:65532
ENTRYPOINT ["/bb-egress", "serve"]
`

// LabelEgressLayout versions sidecarDockerfile: an image of another layout
// is rebuilt.
const LabelEgressLayout = "bb.egress.layout"

const sidecarLayout = "1"

// EnsureSidecarImage returns the sidecar image for the static bb-egress
// binary at binPath, building it FROM scratch when its tag is absent.
func EnsureSidecarImage(ctx context.Context, api Images, binPath string, progress io.Writer) (string, error) {
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return "", fmt.Errorf("reading the sidecar binary: %w", err)
	}
	if err := checkStatic(binPath, bin); err != nil {
		return "", err
	}
	sum, err := image.FileHash(bytes.NewReader(bin))
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", binPath, err)
	}
	ref := SidecarRepo + ":" + sidecarTag(sum)
	labels := map[string]string{
		names.LabelRole:   "egress",
		LabelEgressSHA256: sum,
		LabelEgressLayout: sidecarLayout,
	}
	ok, have, err := imageExists(ctx, api, ref)
	if err != nil {
		return "", err
	}
	if ok && have[LabelEgressSHA256] == sum && have[LabelEgressLayout] == sidecarLayout {
		return ref, nil
	}
	c := image.Context{
		Dockerfile: []byte(sidecarDockerfile),
		Files:      map[string]image.File{"bb-egress": {Data: bin, Mode: 0o755}},
	}
	if err := buildImage(ctx, api, ref, c, nil, withTestLabels(labels), progress); err != nil {
		return "", err
	}
	return ref, nil
}

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
			err = checkStatic(p, bin)
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

// checkStatic checks that bin is a Linux ELF executable with no dynamic
// loader, so it runs in an image FROM scratch.
func checkStatic(path string, bin []byte) error {
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

// sidecarTag names the sidecar image of the binary whose SHA-256 is sum:
// its first 12 hex digits. Test runs add labels of their own, and then the
// tag also covers them, as agent images' tags cover theirs: a test binary
// sweeping its own images must never remove one that another, running
// beside it, shares.
func sidecarTag(sum string) string {
	if len(testLabels) == 0 {
		return image.Tag(sum)
	}
	keys := slices.Sorted(maps.Keys(testLabels))
	h := sha256.New()
	io.WriteString(h, sum)
	for _, k := range keys {
		fmt.Fprintf(h, "\n%s=%s", k, testLabels[k])
	}
	return image.Tag(hex.EncodeToString(h.Sum(nil)))
}
