// Package freezetest holds what the freeze tests share: the real engine (or
// a skip, or a failure under BB_REQUIRE_DOCKER=1), bottle-like containers
// with their state, and the removal of everything a test made.
package freezetest

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/state"
)

// Labels go on everything the tests make.
var Labels = map[string]string{names.LabelTest: "1"}

// Engine returns the real engine with the offline base image, or skips t
// (fails it when BB_REQUIRE_DOCKER=1).
func Engine(t testing.TB) *client.Client {
	t.Helper()
	required := os.Getenv("BB_REQUIRE_DOCKER") == "1"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := docker.Connect(ctx)
	if err != nil {
		if required {
			t.Fatalf("BB_REQUIRE_DOCKER=1 but the docker engine is unreachable: %v", err)
		}
		t.Skipf("no docker engine (BB_REQUIRE_DOCKER=1 fails instead): %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.ImageInspect(ctx, docker.BaseImage); err != nil {
		if required {
			t.Fatalf("BB_REQUIRE_DOCKER=1 but the base image %s is missing (%v): run scripts/base-image first", docker.BaseImage, err)
		}
		t.Skipf("the base image %s is absent: run scripts/base-image (BB_REQUIRE_DOCKER=1 fails instead)", docker.BaseImage)
	}
	return c
}

// Bottle makes a bottle-like container, bot-bottle-<slug> running sleep
// infinity on the base image with the labels bb-launch gives an agent,
// and the bottle's metadata in st. Both, and every image of bb/<slug>, are
// removed when t ends.
func Bottle(t testing.TB, c *client.Client, st *state.Store, slug string) string {
	t.Helper()
	ctx := context.Background()
	name := names.Agent(slug)
	t.Cleanup(func() { Clean(t, c, slug) })
	res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:  docker.BaseImage,
			Cmd:    []string{"sleep", "infinity"},
			Labels: map[string]string{names.LabelSlug: slug, names.LabelRole: names.RoleAgent, names.LabelAgent: "demo", names.LabelTest: "1"},
		},
		HostConfig: &container.HostConfig{Init: ptr(true)},
	})
	if err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	if _, err := c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	err = st.WriteMetadata(slug, state.Metadata{Agent: "demo", Template: "shell", Label: "demo " + slug,
		Backend: names.Docker, Created: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func ptr[T any](v T) *T { return &v }

// Clean removes bottle slug's container and every image of bb/<slug>.
func Clean(t testing.TB, c *client.Client, slug string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.ContainerRemove(ctx, names.Agent(slug), client.ContainerRemoveOptions{Force: true})
	if err != nil && !strings.Contains(err.Error(), "No such container") {
		t.Errorf("removing the container of %s: %v", slug, err)
	}
	f := client.Filters{}.Add("label", names.LabelSlug+"="+slug).Add("label", names.LabelTest+"=1")
	ims, err := c.ImageList(ctx, client.ImageListOptions{All: true, Filters: f})
	if err != nil {
		t.Errorf("listing the images of %s: %v", slug, err)
		return
	}
	for _, im := range ims.Items {
		if _, err := c.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil &&
			!strings.Contains(err.Error(), "No such image") {
			t.Errorf("removing image %s of %s: %v", im.ID, slug, err)
		}
	}
}

// WriteFile writes a file into a container.
func WriteFile(t testing.TB, c *client.Client, ctr, dir, name, content string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: time.Now()})
	io.WriteString(tw, content)
	tw.Close()
	_, err := c.CopyToContainer(context.Background(), ctr, client.CopyToContainerOptions{DestinationPath: dir, Content: &buf})
	if err != nil {
		t.Fatalf("writing %s/%s into %s: %v", dir, name, ctr, err)
	}
}

// Run runs cmd in a new container of image and returns its output.
func Run(t testing.TB, c *client.Client, image string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Cmd: cmd, Tty: true, Labels: Labels},
	})
	if err != nil {
		t.Fatalf("creating a container of %s: %v", image, err)
	}
	defer c.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	wait := c.ContainerWait(ctx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("starting a container of %s: %v", image, err)
	}
	select {
	case <-wait.Result:
	case err := <-wait.Error:
		t.Fatalf("waiting for a container of %s: %v", image, err)
	}
	logs, err := c.ContainerLogs(ctx, res.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	out, _ := io.ReadAll(logs)
	return strings.ReplaceAll(string(out), "\r\n", "\n")
}

// State returns the container's state.
func State(t testing.TB, c *client.Client, ctr string) *container.State {
	t.Helper()
	res, err := c.ContainerInspect(context.Background(), ctr, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Container.State
}

// Store returns a fresh state directory.
func Store(t testing.TB) *state.Store {
	return &state.Store{Dir: t.TempDir()}
}
