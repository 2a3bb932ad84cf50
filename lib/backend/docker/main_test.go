package docker

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// engine is the real Docker engine the tests run against, or nil when
// there is none (then tests skip, unless BB_REQUIRE_DOCKER=1).
var (
	engine    *client.Client
	engineErr error
	required  = os.Getenv("BB_REQUIRE_DOCKER") == "1"
)

func TestMain(m *testing.M) {
	// Other packages' tests run at the same time on the same engine: this
	// binary marks what it makes with its own run label and sweeps only that.
	testLabels = map[string]string{LabelTest: "1", labelTestRun: testRun}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	engine, engineErr = Connect(ctx)
	if engineErr == nil && required {
		if ok, _, err := imageExists(ctx, engine, BaseImage); err != nil || !ok {
			fmt.Fprintf(os.Stderr, "BB_REQUIRE_DOCKER=1 but the base image %s is missing (%v): run scripts/base-image first\n", BaseImage, err)
			os.Exit(1)
		}
	}
	cancel()
	if engineErr != nil && required {
		fmt.Fprintf(os.Stderr, "BB_REQUIRE_DOCKER=1 but the docker engine is unreachable: %v\n", engineErr)
		os.Exit(1)
	}
	code := m.Run()
	if egressDir != "" {
		os.RemoveAll(egressDir)
	}
	if engine != nil {
		if err := removeTestObjects(context.Background(), engine); err != nil {
			fmt.Fprintf(os.Stderr, "removing test objects: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		engine.Close()
	}
	os.Exit(code)
}

// needEngine skips t when there is no engine (TestMain already failed when
// one is required).
func needEngine(t *testing.T) *client.Client {
	t.Helper()
	if engine == nil {
		t.Skipf("no docker engine (set BB_REQUIRE_DOCKER=1 to fail instead): %v", engineErr)
	}
	return engine
}

// needBase skips t when the offline base image is absent.
func needBase(t *testing.T) *client.Client {
	t.Helper()
	c := needEngine(t)
	ok, _, err := imageExists(t.Context(), c, BaseImage)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Skipf("the base image %s is absent: run scripts/base-image (BB_REQUIRE_DOCKER=1 fails instead)", BaseImage)
	}
	return c
}

// labelTestRun names the test binary that made an object.
const labelTestRun = LabelTestRun

var testRun = fmt.Sprintf("docker-%d-%d", os.Getpid(), time.Now().UnixNano())

// removeTestObjects removes every container, network and image this test
// binary made, however its tests ended, and nothing another binary made.
func removeTestObjects(ctx context.Context, c *client.Client) error {
	return RemoveLabelled(ctx, c, labelTestRun, testRun)
}

// countingImages counts the builds it passes to the engine.
type countingImages struct {
	Images
	builds int
}

func (c *countingImages) ImageBuild(ctx context.Context, r io.Reader, o client.ImageBuildOptions) (client.ImageBuildResult, error) {
	c.builds++
	return c.Images.ImageBuild(ctx, r, o)
}

// removeImage removes ref when t ends, and the untagged parents only it used.
func removeImage(t *testing.T, c *client.Client, ref string) {
	t.Cleanup(func() {
		_, err := c.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !isNotFound(err) {
			t.Errorf("removing image %s: %v", ref, err)
		}
	})
}
