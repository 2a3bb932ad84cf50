package docker

import (
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/state"
)

// A stopped agent container restarts with what its filesystem holds, its
// stopped sidecar with it, and the way out works again.
func TestRestartKeepsUncommittedWork(t *testing.T) {
	c := needBase(t)
	slug := newSlug("restart")
	p, raw := shellPlan(t, slug, nil)
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	if _, err := Launch(t.Context(), c, launchOptions(t, p, raw, st)); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := execIn(t, c, slug, "sh", "-c", "echo uncommitted > $HOME/work.txt"); code != 0 {
		t.Fatalf("writing the work: %s", errs)
	}
	// The agent exits (its container stays: preserved), and the sidecar
	// stops with the machine.
	for _, name := range []string{p.Docker.AgentContainer, p.Docker.SidecarContainer} {
		if _, err := c.ContainerKill(t.Context(), name, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
			t.Fatal(err)
		}
	}
	o := launchOptions(t, p, raw, st)
	o.Resume, o.Attach = true, true
	rec, err := Restart(t.Context(), c, o)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Session == nil {
		t.Error("no session")
	} else {
		rec.Session.Close()
	}
	if code, out, _ := execIn(t, c, slug, "cat", "/home/agent/work.txt"); code != 0 || out != "uncommitted\n" {
		t.Errorf("the work after the restart: exit %d %q", code, out)
	}
	// bb.egress answers (a denial is the sidecar's 403).
	if code, out, errs := execIn(t, c, slug, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://denied.test.invalid/"); out != "403" {
		t.Errorf("through the sidecar after the restart: exit %d %q %s", code, out, errs)
	}
	// A running bottle does not restart.
	if _, err := Restart(t.Context(), c, o); exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "is running") {
		t.Errorf("Restart of a running bottle = %v", err)
	}
}
