package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/backend/docker/freezetest"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/state"
)

// TestCommitLaunchedBottle commits a bottle that bb-launch started (the
// real agent container, its sidecar and networks), and resumes it from the
// snapshot with bb-launch resume.
func TestCommitLaunchedBottle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and launches a bottle")
	}
	c := freezetest.Engine(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator),
		"../bb-manifest", "../bb-plan", "../bb-launch", "../bb-egress")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // the sidecar image needs a static bb-egress
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building bb-launch and its pipeline: %v\n%s", err, out)
	}
	before := imageRefs(t, c)
	stateDir := t.TempDir()
	run := fmt.Sprintf("freeze-launch-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := docker.RemoveLabelled(ctx, c, names.LabelTestRun, run); err != nil {
			t.Errorf("removing what the test made: %v", err)
		}
	})
	env := append(os.Environ(), "BB_STATE_DIR="+stateDir, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		docker.TestRunEnv+"="+run)
	sh := func(script string) string {
		t.Helper()
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, stderr.String())
		}
		return string(out)
	}

	out := sh("bb-manifest --file ../../examples/bb.yaml demo | bb-plan | bb-launch --detach --build-arg BASE=bb-base:bookworm")
	var launched struct {
		Slug         string `json:"slug"`
		AgentImage   string `json:"agent_image"`
		SidecarImage string `json:"sidecar_image"`
	}
	if err := json.Unmarshal([]byte(out), &launched); err != nil || launched.Slug == "" {
		t.Fatalf("launch record %q: %v", out, err)
	}
	t.Cleanup(func() { removeIfNew(t, c, before, launched.AgentImage, launched.SidecarImage) })
	slug := launched.Slug
	t.Cleanup(func() {
		cmd := exec.Command(filepath.Join(bin, "bb-launch"), "stop", "--rm", slug)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("bb-launch stop: %v\n%s", err, out)
		}
		freezetest.Clean(t, c, slug)
	})
	sh("bb-launch exec " + slug + " -- sh -c 'echo kept > /home/agent/note.txt'")

	st := &state.Store{Dir: stateDir}
	d, stdout, stderr := testDeps(st, dockerFreezer(c))
	if err := runCommit(t.Context(), d, commitOptions{slug: slug}); err != nil {
		t.Fatalf("commit: %v\n%s", err, stderr)
	}
	var rec freeze.Record
	if err := json.Unmarshal(stdout.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if got := freezetest.Run(t, c, rec.Image, "cat", "/home/agent/note.txt"); got != "kept\n" {
		t.Errorf("the snapshot's note = %q, want kept", got)
	}
	if s := freezetest.State(t, c, names.Agent(slug)); !s.Running || s.Paused {
		t.Errorf("the bottle is running=%v paused=%v after the commit", s.Running, s.Paused)
	}

	sh("bb-launch stop " + slug + " && bb-launch resume --detach " + slug)
	if got := sh("bb-launch exec " + slug + " -- cat /home/agent/note.txt"); got != "kept\n" {
		t.Errorf("after resume the note = %q, want kept", got)
	}
}

func imageRefs(t *testing.T, c *client.Client) map[string]bool {
	t.Helper()
	res, err := c.ImageList(context.Background(), client.ImageListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]bool{}
	for _, im := range res.Items {
		for _, tag := range im.RepoTags {
			refs[tag] = true
		}
	}
	return refs
}

// removeIfNew removes the images the launch built (they were not there
// before). Other tests on the engine may have started using them since:
// an image in use stays.
func removeIfNew(t *testing.T, c *client.Client, before map[string]bool, refs ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ref := range refs {
		if ref == "" || before[ref] {
			continue
		}
		_, err := c.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			t.Errorf("removing %s: %v", ref, err)
		}
	}
}
