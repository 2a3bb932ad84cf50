package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/image"
)

// The static bb-egress is built once per run into egressDir, which
// TestMain removes.
var (
	egressOnce sync.Once
	egressDir  string
	egressBin  string
	egressErr  error
)

// staticEgress builds ./cmd/bb-egress once per test run, static, for the
// engine's linux.
func staticEgress(t testing.TB) string {
	t.Helper()
	egressOnce.Do(func() {
		egressDir, egressErr = os.MkdirTemp("", "bb-egress-test-")
		if egressErr != nil {
			return
		}
		egressBin = filepath.Join(egressDir, "bb-egress")
		egressErr = backend.BuildSidecarBinary(context.Background(), "../../..", "linux", runtime.GOARCH, egressBin)
	})
	if egressErr != nil {
		t.Fatal(egressErr)
	}
	return egressBin
}

// uniqueEgress copies the static bb-egress with random bytes appended (the
// kernel ignores them), so its hash and tag are this test's own.
func uniqueEgress(t *testing.T) string {
	t.Helper()
	bin, err := os.ReadFile(staticEgress(t))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bb-egress")
	if err := os.WriteFile(p, append(bin, []byte(rand.Text())...), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSidecarImage(t *testing.T) {
	c := needEngine(t)
	ctx := t.Context()
	bin := uniqueEgress(t)
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := image.FileHash(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	api := &countingImages{Images: c}
	var out bytes.Buffer
	ref, err := EnsureSidecarImage(ctx, api, bin, &out)
	if err != nil {
		t.Fatalf("EnsureSidecarImage: %v\n%s", err, out.String())
	}
	removeImage(t, c, ref)
	if want := "bb-egress:" + sidecarTag(sum); ref != want {
		t.Errorf("ref = %q, want %q", ref, want)
	}
	if api.builds != 1 {
		t.Errorf("builds = %d, want 1", api.builds)
	}
	if !strings.Contains(out.String(), "Step 1/") {
		t.Errorf("progress does not show the build's steps:\n%s", out.String())
	}

	res, err := c.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.RootFS.Layers); n != 1 {
		t.Errorf("image has %d layers, want 1", n)
	}
	cfg := res.Config
	if cfg.User != "65532:65532" {
		t.Errorf("user = %q, want 65532:65532", cfg.User)
	}
	if diff := cmp.Diff([]string{"/bb-egress", "serve"}, cfg.Entrypoint); diff != "" {
		t.Errorf("entrypoint (-want +got):\n%s", diff)
	}
	for k, v := range map[string]string{LabelRole: "egress", LabelEgressSHA256: sum, LabelTest: "1"} {
		if cfg.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
		}
	}

	t.Run("runs as non-root with no libc", func(t *testing.T) {
		id := createContainer(t, c, ref, []string{"--help"})
		if _, err := c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
		wait := c.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
		select {
		case err := <-wait.Error:
			t.Fatal(err)
		case st := <-wait.Result:
			if st.StatusCode != 0 {
				t.Errorf("bb-egress serve --help exited %d, want 0", st.StatusCode)
			}
		}
	})

	t.Run("holds only the binary", func(t *testing.T) {
		id := createContainer(t, c, ref, nil)
		rc, err := c.ContainerExport(ctx, id, client.ContainerExportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var files []string
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			// The engine adds these to every container (its init layer).
			if !initLayer[strings.TrimSuffix(hdr.Name, "/")] {
				files = append(files, hdr.Name)
			}
		}
		if diff := cmp.Diff([]string{"bb-egress"}, files); diff != "" {
			t.Errorf("exported files (-want +got):\n%s", diff)
		}
	})

	t.Run("not rebuilt when unchanged", func(t *testing.T) {
		again, err := EnsureSidecarImage(ctx, api, bin, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if again != ref || api.builds != 1 {
			t.Errorf("second call: ref %q, %d builds; want %q, 1 build", again, api.builds, ref)
		}
	})
}

var initLayer = map[string]bool{
	".dockerenv": true, "dev": true, "dev/console": true, "dev/pts": true, "dev/shm": true,
	"etc": true, "etc/hostname": true, "etc/hosts": true, "etc/mtab": true, "etc/resolv.conf": true,
	"proc": true, "sys": true,
}

// createContainer creates a container of ref, labelled as a test's, and
// removes it when t ends.
func createContainer(t *testing.T, c *client.Client, ref string, cmd []string) string {
	t.Helper()
	res, err := c.ContainerCreate(t.Context(), client.ContainerCreateOptions{
		Image: ref,
		Config: &container.Config{Cmd: cmd, Labels: map[string]string{
			LabelTest: "1", LabelSlug: "test-" + strings.ToLower(rand.Text()[:8])}},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := c.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("removing container: %v", err)
		}
	})
	return res.ID
}

// A product sidecar image is tagged by its binary alone; a test run's by
// the binary and the run's labels, so that sweeping it harms no other run.
func TestSidecarTag(t *testing.T) {
	saved := testLabels
	t.Cleanup(func() { testLabels = saved })
	sum := strings.Repeat("ab", 32)
	testLabels = nil
	if got := sidecarTag(sum); got != sum[:12] {
		t.Errorf("without test labels: %q, want %q", got, sum[:12])
	}
	testLabels = map[string]string{LabelTest: "1", LabelTestRun: "a"}
	a := sidecarTag(sum)
	testLabels = map[string]string{LabelTest: "1", LabelTestRun: "b"}
	b := sidecarTag(sum)
	if a == sum[:12] || b == sum[:12] || a == b {
		t.Errorf("test runs share a tag: %q, %q (product %q)", a, b, sum[:12])
	}
}
