package docker

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/image"
	"github.com/bb-bottles/bb/lib/state"
)

// The shape of the embedded agent Dockerfiles: a BASE argument defaulting
// to a registry image, which the offline base stands in for.
const agentDockerfile = `ARG BASE=debian:bookworm-slim
FROM ${BASE}
COPY hello.sh /usr/local/bin/hello
RUN hello > /greeting && test "$(cat /greeting)" = "hello from $(id -un)"
USER agent
WORKDIR /home/agent
`

func TestAgentImage(t *testing.T) {
	c := needBase(t)
	ctx := t.Context()
	spec := AgentImageSpec{
		Repo:       "bb-agent-test",
		Dockerfile: []byte(agentDockerfile),
		Files: map[string]image.File{
			"hello.sh": {Data: []byte("#!/bin/sh\necho \"hello from $(id -un)\"\n"), Mode: 0o755},
			// A file of this run's own, so the tag is new and it builds.
			"nonce": {Data: []byte(rand.Text())},
		},
		BuildArgs: map[string]string{"BASE": BaseImage},
		Labels:    map[string]string{"bb.provider": "test"},
	}
	api := &countingImages{Images: c}
	var out bytes.Buffer
	start := time.Now()
	ref, built, err := EnsureAgentImage(ctx, api, spec, &out)
	if err != nil {
		t.Fatalf("EnsureAgentImage: %v\n%s", err, out.String())
	}
	removeImage(t, c, ref)
	t.Logf("built %s in %v", ref, time.Since(start).Round(time.Millisecond))
	if !built || api.builds != 1 {
		t.Errorf("built = %v after %d builds, want true after 1", built, api.builds)
	}
	repo, tag, _ := strings.Cut(ref, ":")
	if repo != "bb-agent-test" || len(tag) != 12 || strings.Trim(tag, "0123456789abcdef") != "" {
		t.Errorf("ref = %q, want bb-agent-test:<12 hex>", ref)
	}
	if !strings.Contains(out.String(), " : RUN hello > /greeting") {
		t.Errorf("progress does not show the steps:\n%s", out.String())
	}

	res, err := c.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if res.Config.User != "agent" {
		t.Errorf("user = %q, want agent", res.Config.User)
	}
	for k, v := range map[string]string{LabelRole: "image", "bb.provider": "test", LabelTest: "1"} {
		if res.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, res.Config.Labels[k], v)
		}
	}
	if h := res.Config.Labels[LabelImageHash]; !strings.HasPrefix(h, tag) || len(h) != 64 {
		t.Errorf("label %s = %q, want the hash the tag starts", LabelImageHash, h)
	}

	t.Run("unchanged is not rebuilt", func(t *testing.T) {
		start := time.Now()
		again, built, err := EnsureAgentImage(ctx, api, spec, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if again != ref || built || api.builds != 1 {
			t.Errorf("second call: %q built=%v after %d builds; want %q built=false after 1", again, built, api.builds, ref)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("second call took %v", d)
		}
	})

	t.Run("a changed build arg is a new image", func(t *testing.T) {
		changed := spec
		changed.BuildArgs = map[string]string{"BASE": BaseImage, "UNUSED": "1"}
		s2 := changed
		s2.Dockerfile = []byte(agentDockerfile + "ARG UNUSED\n")
		ref2, built, err := EnsureAgentImage(ctx, api, s2, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		removeImage(t, c, ref2)
		if ref2 == ref || !built {
			t.Errorf("changed spec: %q built=%v; want a new tag, built", ref2, built)
		}
	})
}

func TestAgentImageBuildFails(t *testing.T) {
	c := needBase(t)
	spec := AgentImageSpec{
		Repo: "bb-agent-test",
		// No step before the failing one commits an image, so the failed
		// build leaves no untagged image behind.
		Dockerfile: []byte("ARG BASE=debian:bookworm-slim\nFROM ${BASE}\nRUN echo the last words >&2 && false\n"),
		Files:      map[string]image.File{"nonce": {Data: []byte(rand.Text())}},
		BuildArgs:  map[string]string{"BASE": BaseImage},
	}
	var out bytes.Buffer
	ref, built, err := EnsureAgentImage(t.Context(), c, spec, &out)
	if err == nil {
		removeImage(t, c, ref)
		t.Fatalf("EnsureAgentImage of a failing Dockerfile: %s built=%v, no error", ref, built)
	}
	msg := err.Error()
	for _, want := range []string{"building image bb-agent-test:", "Step 3/", ": RUN echo the last words >&2 && false: ", "returned a non-zero code: 1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if code := exit.CodeOf(err); code != exit.CodeBackend {
		t.Errorf("exit code = %d, want %d", code, exit.CodeBackend)
	}
	var be *BuildError
	if !errors.As(err, &be) || !slicesContain(be.Output, "the last words") {
		t.Errorf("BuildError output = %q, want the step's last words", be)
	}
	if !strings.Contains(out.String(), "the last words") {
		t.Errorf("progress does not show the failing step's output:\n%s", out.String())
	}
}

func TestAgentImageMissingBase(t *testing.T) {
	c := needEngine(t)
	spec := AgentImageSpec{
		Repo:       "bb-agent-test",
		Dockerfile: []byte("ARG BASE\nFROM ${BASE}\n"),
		BuildArgs:  map[string]string{"BASE": "bb-base-absent:" + strings.ToLower(rand.Text()[:8])},
	}
	_, _, err := EnsureAgentImage(t.Context(), c, spec, io.Discard)
	if err == nil {
		t.Fatal("no error")
	}
	var e *exit.Error
	if !errors.As(err, &e) || len(e.Hints) == 0 || !strings.Contains(strings.Join(e.Hints, "\n"), "scripts/base-image") {
		t.Errorf("error %v: want a hint naming scripts/base-image", err)
	}
}

func TestAgentImageBadRepo(t *testing.T) {
	_, _, err := EnsureAgentImage(t.Context(), nil, AgentImageSpec{Repo: "Bad Repo"}, nil)
	if exit.CodeOf(err) != exit.CodeUsage {
		t.Errorf("err = %v, want a usage error", err)
	}
}

func slicesContain(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// With no registry, an image whose base cannot be pulled fails at its FROM;
// the hint names the offline base this engine has, and how to use it.
func TestLaunchHintsOfflineBase(t *testing.T) {
	c := needBase(t)
	slug := newSlug("nobase")
	p, raw := shellPlan(t, slug, nil)
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	o := launchOptions(t, p, raw, st)
	o.BaseImage = "" // the Dockerfile's own FROM: a registry's debian
	_, err := Launch(t.Context(), c, o)
	if err == nil {
		t.Skip("this engine can pull from a registry: nothing to hint")
	}
	hints := strings.Join(exit.Hints(err), "\n")
	if exit.CodeOf(err) != exit.CodeBackend || !strings.Contains(hints, "BB_BASE_IMAGE="+BaseImage) ||
		!strings.Contains(hints, "offline base "+BaseImage) {
		t.Errorf("a base that cannot be pulled: %v\nhints: %s", err, hints)
	}
}
