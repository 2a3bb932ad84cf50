package docker

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/state"
)

// benchEngine is needBase for benchmarks.
func benchEngine(b *testing.B) *client.Client {
	b.Helper()
	if engine == nil {
		b.Skipf("no docker engine: %v", engineErr)
	}
	if ok, _, err := imageExists(b.Context(), engine, BaseImage); err != nil || !ok {
		b.Skipf("the base image %s is absent: run scripts/base-image", BaseImage)
	}
	return engine
}

// BenchmarkLaunchWarm is a launch with its images present, to an agent
// that answers exec: what a person waits for at 'bb start' the second time.
// Stopping is not timed.
func BenchmarkLaunchWarm(b *testing.B) {
	c := benchEngine(b)
	ctx := b.Context()
	st := &state.Store{Dir: b.TempDir()}
	launchOnce := func() string {
		slug := newSlug("bench")
		p, raw := shellPlan(b, slug, nil)
		o := LaunchOptions{Plan: p, PlanJSON: raw, Store: st, SidecarBinary: staticEgress(b),
			BaseImage: BaseImage, BuildArgs: map[string]string{"INSTALL_CLI": "0"},
			Env: testEnv, Dir: b.TempDir(), UID: os.Getuid(), GID: os.Getgid()}
		if os.Getenv("BB_LAUNCH_TRACE") != "" {
			o.Trace = os.Stderr
		}
		if _, err := Launch(ctx, c, o); err != nil {
			Stop(context.Background(), c, slug)
			b.Fatal(err)
		}
		if code, err := Exec(ctx, c, slug, []string{"true"}, io.Discard, io.Discard); err != nil || code != 0 {
			b.Fatalf("exec: %d %v", code, err)
		}
		return slug
	}
	stop := func(slug string) {
		if err := Stop(context.Background(), c, slug); err != nil {
			b.Fatal(err)
		}
		if err := New(c).Remove(context.Background(), slug); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(st.BottleDir(slug))
	}
	stop(launchOnce()) // builds the images: not timed
	b.ResetTimer()
	for b.Loop() {
		slug := launchOnce()
		b.StopTimer()
		stop(slug)
		b.StartTimer()
	}
}

// BenchmarkDockerRunBare is `docker run -d` of the same agent image on the
// default bridge, to a container that answers exec: the floor a launch is
// measured against.
func BenchmarkDockerRunBare(b *testing.B) {
	c := benchEngine(b)
	ctx := b.Context()
	p, _ := shellPlan(b, newSlug("bare"), nil)
	spec, err := AgentSpec(p, BaseImage, map[string]string{"INSTALL_CLI": "0"})
	if err != nil {
		b.Fatal(err)
	}
	ref, _, err := EnsureAgentImage(ctx, c, spec, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		slug := newSlug("bare")
		res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{Image: ref,
			Config: &container.Config{Cmd: []string{"/bin/bash", "-l"}, Tty: true, OpenStdin: true,
				Labels: withTestLabels(map[string]string{LabelSlug: slug, LabelRole: RoleAgent})}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
			b.Fatal(err)
		}
		if code, err := Exec(ctx, c, slug, []string{"true"}, io.Discard, io.Discard); err != nil || code != 0 {
			b.Fatalf("exec: %d %v", code, err)
		}
		b.StopTimer()
		removeContainer(context.Background(), c, res.ID)
		b.StartTimer()
	}
}

// BenchmarkResumeStopped is bb resume of a bottle whose two containers
// stopped (its agent exited, its sidecar with it): what a person waits for
// at 'bb resume' of a preserved bottle. Stopping is not timed.
func BenchmarkResumeStopped(b *testing.B) {
	c := benchEngine(b)
	ctx := b.Context()
	st := &state.Store{Dir: b.TempDir()}
	slug := newSlug("bench")
	p, raw := shellPlan(b, slug, nil)
	o := LaunchOptions{Plan: p, PlanJSON: raw, Store: st, SidecarBinary: staticEgress(b),
		BaseImage: BaseImage, BuildArgs: map[string]string{"INSTALL_CLI": "0"},
		Env: testEnv, Dir: b.TempDir(), UID: os.Getuid(), GID: os.Getgid()}
	if os.Getenv("BB_LAUNCH_TRACE") != "" {
		o.Trace = os.Stderr
	}
	if _, err := Launch(ctx, c, o); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		Stop(context.Background(), c, slug)
		New(c).Remove(context.Background(), slug)
	})
	stopBoth := func() {
		for _, name := range []string{p.Docker.AgentContainer, p.Docker.SidecarContainer} {
			if _, err := c.ContainerStop(context.Background(), name, client.ContainerStopOptions{Timeout: new(int)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	bk := New(c)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		stopBoth()
		md, err := st.ReadMetadata(slug)
		if err != nil {
			b.Fatal(err)
		}
		ro := o
		ro.Resume = true
		b.StartTimer()
		if _, err := backend.Resume(ctx, bk, ro, md, false); err != nil {
			b.Fatal(err)
		}
		if code, err := Exec(ctx, c, slug, []string{"true"}, io.Discard, io.Discard); err != nil || code != 0 {
			b.Fatalf("exec: %d %v", code, err)
		}
	}
}

// BenchmarkDockerStartTwo is docker start of two stopped containers (the
// agent's image and the sidecar's), the agent's to one that answers exec:
// the floor a resume is measured against.
func BenchmarkDockerStartTwo(b *testing.B) {
	c := benchEngine(b)
	ctx := b.Context()
	p, _ := shellPlan(b, newSlug("bare"), nil)
	spec, err := AgentSpec(p, BaseImage, map[string]string{"INSTALL_CLI": "0"})
	if err != nil {
		b.Fatal(err)
	}
	agentRef, _, err := EnsureAgentImage(ctx, c, spec, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	sidecarRef, err := EnsureSidecarImage(ctx, c, staticEgress(b), io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	slug := newSlug("bare")
	var ids []string
	for _, spec := range []struct {
		ref string
		cmd []string
		ep  []string
		lbl string
	}{{agentRef, []string{"/bin/bash", "-l"}, nil, RoleAgent}, {sidecarRef, []string{"--help"}, []string{"/bb-egress", "serve", "--listen", ":3128", "--routes", "/tmp/r", "--ca-dir", "/tmp"}, RoleEgress}} {
		res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{Image: spec.ref,
			Config: &container.Config{Cmd: spec.cmd, Entrypoint: spec.ep, Tty: spec.lbl == RoleAgent, OpenStdin: spec.lbl == RoleAgent,
				Labels: withTestLabels(map[string]string{LabelSlug: slug, LabelRole: spec.lbl})}})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	b.Cleanup(func() {
		for _, id := range ids {
			removeContainer(context.Background(), c, id)
		}
	})
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		for _, id := range ids {
			c.ContainerStop(context.Background(), id, client.ContainerStopOptions{Timeout: new(int)})
		}
		b.StartTimer()
		for _, id := range ids {
			if _, err := c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		if code, err := Exec(ctx, c, slug, []string{"true"}, io.Discard, io.Discard); err != nil || code != 0 {
			b.Fatalf("exec: %d %v", code, err)
		}
	}
}
