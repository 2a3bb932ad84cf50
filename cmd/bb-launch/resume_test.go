package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/names"
)

// resume restarts a stopped agent container with what it holds; --discard
// throws that away and boots the image.
func TestResumeRestartsStoppedAgent(t *testing.T) {
	c := needEngine(t)
	env := map[string]string{"BB_STATE_DIR": t.TempDir(), "BB_BASE_IMAGE": docker.BaseImage,
		"GH_TEST_TOKEN": "tok-not-in-the-agent", "HOME": t.TempDir()}
	slug := "restart-" + strings.ToLower(time.Now().Format("150405")) + "r"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		docker.Stop(ctx, c, slug)
	})
	if code, _, errs := bbLaunch(t, env, shellPlanJSON(t, slug, "GH_TEST_TOKEN"), "--detach", "--build-arg", "INSTALL_CLI=0"); code != 0 {
		t.Fatalf("launch: exit %d\n%s", code, errs)
	}
	stopAgent := func() {
		t.Helper()
		if code, _, errs := bbLaunch(t, env, "", "exec", slug, "sh", "-c", "echo work > $HOME/work.txt"); code != 0 {
			t.Fatalf("exec: %s", errs)
		}
		if _, err := c.ContainerKill(t.Context(), names.Agent(slug), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
			t.Fatal(err)
		}
	}
	stopAgent()
	code, _, errs := bbLaunch(t, env, "", "resume", "--detach", slug)
	if code != 0 || !strings.Contains(errs, "restarting bottle "+slug+"'s stopped agent container") {
		t.Fatalf("resume: exit %d\n%s", code, errs)
	}
	if code, out, _ := bbLaunch(t, env, "", "exec", slug, "cat", "/home/agent/work.txt"); code != 0 || out != "work\n" {
		t.Errorf("after the restart: exit %d %q", code, out)
	}
	stopAgent()
	code, _, errs = bbLaunch(t, env, "", "resume", "--detach", "--discard", slug)
	if code != 0 || !strings.Contains(errs, "discarding bottle "+slug+"'s stopped agent container") {
		t.Fatalf("resume --discard: exit %d\n%s", code, errs)
	}
	if code, _, _ := bbLaunch(t, env, "", "exec", slug, "test", "-e", "/home/agent/work.txt"); code == 0 {
		t.Error("--discard kept the container's work")
	}
	if code, _, errs := bbLaunch(t, env, "", "stop", "--rm", slug); code != 0 {
		t.Errorf("stop --rm: %s", errs)
	}
}
