package macoscontainer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/image"
)

// An agent image is built once per content: the same spec again finds it by
// its tag and hash label; a change rebuilds under another tag.
func TestEnsureAgentImage(t *testing.T) {
	f := newFake(t)
	im := &images{tool: &f.Tool, testLabels: map[string]string{"bb.test": "1"}}
	spec := AgentImageSpec{Repo: "bb-agent-shell", Dockerfile: []byte("ARG BASE=debian\nFROM $BASE\nCOPY run.sh /run.sh\n"),
		Files: map[string]image.File{"run.sh": {Data: []byte("#!/bin/sh\n"), Mode: 0o755}}, BuildArgs: map[string]string{"BASE": "bb-base:bookworm"}}
	var progress strings.Builder
	ref, built, err := im.ensureAgent(t.Context(), spec, &progress)
	if err != nil || !built || !strings.HasPrefix(ref, "bb-agent-shell:") {
		t.Fatalf("first = %q %v %v", ref, built, err)
	}
	if !strings.Contains(progress.String(), "load build definition") {
		t.Errorf("the build's progress did not reach progress: %q", progress.String())
	}
	again, built, err := im.ensureAgent(t.Context(), spec, nil)
	if err != nil || built || again != ref {
		t.Errorf("second = %q %v %v; want %q found, not built", again, built, err, ref)
	}
	spec.Files["run.sh"] = image.File{Data: []byte("#!/bin/sh\necho changed\n"), Mode: 0o755}
	other, built, err := im.ensureAgent(t.Context(), spec, nil)
	if err != nil || !built || other == ref {
		t.Errorf("changed = %q %v %v", other, built, err)
	}
	builds := 0
	for _, c := range f.calls(t) {
		if c[0] == "build" {
			builds++
			if !strings.Contains(strings.Join(c, " "), "--label bb.test=1") || !strings.Contains(strings.Join(c, " "), "--build-arg BASE=bb-base:bookworm") {
				t.Errorf("build line %q", c)
			}
		}
	}
	if builds != 2 {
		t.Errorf("%d builds, want 2", builds)
	}
	if _, _, err := im.ensureAgent(t.Context(), AgentImageSpec{Repo: "Bad Repo"}, nil); err == nil {
		t.Error("a bad repository name was built")
	}
	f.fault(t, map[string]any{"match": "build", "exit": 1, "stderr": "Error: failed to solve: process \"/bin/sh -c exit 1\" did not complete successfully: exit code: 1"})
	spec.Files["run.sh"] = image.File{Data: []byte("x"), Mode: 0o755}
	if _, _, err := im.ensureAgent(t.Context(), spec, nil); err == nil || !strings.Contains(err.Error(), "did not complete successfully") {
		t.Errorf("a failing build: %v", err)
	}
}

// The sidecar's image holds the binary and its socket's folder, the
// person's; its tag follows the binary and the user.
func TestEnsureSidecarImage(t *testing.T) {
	f := newFake(t)
	im := &images{tool: &f.Tool}
	bin := staticEgress(t)
	notStatic := filepath.Join(t.TempDir(), "bb-egress")
	os.WriteFile(notStatic, []byte("#!/bin/sh\n"), 0o755)
	if _, err := im.ensureSidecar(t.Context(), notStatic, 501, 20, nil); err == nil || !strings.Contains(err.Error(), "not a linux executable") {
		t.Errorf("a script for the sidecar: %v", err)
	}
	ref, err := im.ensureSidecar(t.Context(), bin, 501, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := im.ensureSidecar(t.Context(), bin, 501, 20, nil); err != nil || again != ref {
		t.Errorf("again = %q %v", again, err)
	}
	other, err := im.ensureSidecar(t.Context(), bin, 502, 20, nil)
	if err != nil || other == ref {
		t.Errorf("another user's = %q %v; want another tag", other, err)
	}
	var df string
	for _, c := range f.calls(t) {
		if c[0] == "build" && strings.Contains(strings.Join(c, " "), ref) {
			df = strings.Join(c, " ")
		}
	}
	if !strings.Contains(df, "--label bb.role=egress") {
		t.Errorf("sidecar build %q", df)
	}
	if err := im.remove(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	if err := im.remove(t.Context(), ref); err != nil {
		t.Errorf("removing a missing image: %v", err)
	}
	if got, _ := im.find(t.Context(), ref); got != nil {
		t.Error("the image is still listed")
	}
}

func TestSidecarDockerfile(t *testing.T) {
	want := "FROM scratch\nCOPY bb-egress /bb-egress\nCOPY --chown={{UID}}:{{GID}} sock /bb/sock\nENTRYPOINT [\"/bb-egress\", \"serve\"]\n"
	if sidecarDockerfile != want {
		t.Errorf("the sidecar's Dockerfile changed; bump sidecarLayout and this test:\n%s", sidecarDockerfile)
	}
	if !strings.HasPrefix(SidecarSocket, "/bb/sock/") {
		t.Errorf("SidecarSocket %s is not in the image's socket folder", SidecarSocket)
	}
}
