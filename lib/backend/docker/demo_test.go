package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// TestDemo runs the offline demo (scripts/demo, what `make demo` and `bb
// demo` run) end to end, so that the README's first command is tested
// wherever the engine is, and checks it left nothing of its bottle behind.
func TestDemo(t *testing.T) {
	c := needEngine(t)
	if testing.Short() {
		t.Skip("the demo builds bb and launches a bottle")
	}
	slug := "demo-test-" + strings.ToLower(rand.Text()[:6])
	t.Cleanup(func() { sweepSlug(t, c, slug) })

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../../scripts/demo")
	// Interrupted, it still cleans up after itself.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	// Its images are this test run's (swept when the package's tests end).
	cmd.Env = append(os.Environ(), "BB_DEMO_SLUG="+slug, "NO_COLOR=1", TestRunEnv+"="+testRun)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	t.Logf("scripts/demo took %v", time.Since(start).Round(100*time.Millisecond))
	if err != nil || !strings.Contains(out.String(), "every expectation held") {
		t.Fatalf("scripts/demo: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"ok      the allowed request got 200", "ok      the denied request got 403",
		"ok      the canary was blocked", "ok      the file written before the snapshot survived"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the summary lacks %q:\n%s", want, out.String())
		}
	}
	for _, want := range []string{"host denied.demo.internal is not in this bottle's routes", "CANARY!", "tunnel intercepted"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("the narration lacks %q", want)
		}
	}
	assertGone(t, c, slug)
	im, err := c.ImageList(t.Context(), client.ImageListOptions{Filters: client.Filters{}.Add("label", LabelSlug+"="+slug)})
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Items) > 0 {
		t.Errorf("the demo left %d images of bottle %s", len(im.Items), slug)
	}
}

// sweepSlug removes what a bottle left on the engine: containers, networks
// and images labelled with slug.
func sweepSlug(t *testing.T, c *client.Client, slug string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Stop(ctx, c, slug); err != nil {
		t.Errorf("removing what bottle %s left: %v", slug, err)
	}
	f := client.Filters{}.Add("label", LabelSlug+"="+slug)
	if im, err := c.ImageList(ctx, client.ImageListOptions{Filters: f}); err == nil {
		for _, i := range im.Items {
			c.ImageRemove(ctx, i.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
	}
}
