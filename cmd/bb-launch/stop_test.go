package main

import (
	"context"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/names"
)

// stop of a bottle whose state is gone still removes what the engine has
// of it, found by its labels, and says so.
func TestStopWithoutState(t *testing.T) {
	c := needEngine(t)
	slug := "nostate-" + strings.ToLower(t.Name()[len(t.Name())-4:]) + "1"
	labels := map[string]string{names.LabelSlug: slug, names.LabelTest: "1"}
	res, err := c.ContainerCreate(t.Context(), client.ContainerCreateOptions{Image: docker.BaseImage,
		Config: &container.Config{Cmd: []string{"true"}, Labels: labels}, HostConfig: &container.HostConfig{NetworkMode: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true}) })
	if _, err := c.NetworkCreate(t.Context(), "bb-test-"+slug, client.NetworkCreateOptions{Labels: labels}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker.Stop(context.Background(), c, slug) })
	env := map[string]string{"BB_STATE_DIR": t.TempDir()}
	code, _, errs := bbLaunch(t, env, "", "stop", slug)
	if code != 0 || !strings.Contains(errs, "warning: bottle "+slug+" has no state") {
		t.Errorf("stop: exit %d\n%s", code, errs)
	}
	if left, _, err := docker.Leftovers(t.Context(), c, slug); err != nil || left {
		t.Errorf("stop left containers or networks (%v)", err)
	}
	// Now the engine has nothing of it either: no bottle, as a typo is.
	if code, _, errs := bbLaunch(t, env, "", "stop", slug); code != 2 || !strings.Contains(errs, "no bottle") {
		t.Errorf("a second stop: exit %d %s", code, errs)
	}
	if code, _, errs := bbLaunch(t, env, "", "attach", slug); code != 2 || !strings.Contains(errs, "no bottle") {
		t.Errorf("attach still wants the state: exit %d %s", code, errs)
	}
}
