package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/state"
)

// The neutral half of a launch is tested here with a backend that keeps
// its bottles in memory; the Docker backend's tests run it on the real
// engine, and try to get out.

// memBackend is a backend whose engine is a map. It records what its steps
// saw and did.
type memBackend struct {
	mu      sync.Mutex
	name    string
	failAt  string // the step that fails
	block   chan struct{}
	steps   []string
	running map[string]bool // slug -> agent running; absent: no agent
	tokens  []string
	undone  []string
	stopped []string
}

func newMem() *memBackend { return &memBackend{name: "mem", running: map[string]bool{}} }

func (b *memBackend) Name() string { return b.name }
func (b *memBackend) Close() error { return nil }

func (b *memBackend) record(what string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.steps = append(b.steps, what)
}

func (b *memBackend) Prepare(l *Launching) (LaunchSteps, error) {
	if l.Plan.Agent.Image == "refused" {
		return nil, exit.Usagef("plan mem section refused")
	}
	return &memLaunch{b: b, l: l}, nil
}

func (b *memBackend) Status(_ context.Context, slug string) (Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	running, ok := b.running[slug]
	switch {
	case !ok:
		return Status{Agent: StatusMissing}, nil
	case running:
		return Status{Agent: StatusRunning, AgentName: "mem-" + slug, Leftovers: true, SidecarRunning: true}, nil
	}
	return Status{Agent: StatusStopped, AgentName: "mem-" + slug, Leftovers: true}, nil
}

func (b *memBackend) Stop(_ context.Context, slug string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.running, slug)
	b.stopped = append(b.stopped, slug)
	return nil
}

func (b *memBackend) Exec(context.Context, string, []string, io.Writer, io.Writer) (int, error) {
	return 0, nil
}

type memLaunch struct {
	b *memBackend
	l *Launching
}

func (m *memLaunch) step(name string) Step {
	return Step{Name: name, Run: func(ctx context.Context) error {
		if name == "starting the agent" && m.b.block != nil {
			close(m.b.block)
			<-ctx.Done()
			return ctx.Err()
		}
		m.b.record(name)
		if name == m.b.failAt {
			return exit.Backend(errors.New("the engine said no"))
		}
		if name == "starting the sidecar" {
			m.b.mu.Lock()
			m.b.tokens = m.l.Tokens
			m.b.mu.Unlock()
		}
		return nil
	}}
}

func (m *memLaunch) Stages() []Stage {
	return []Stage{
		{{m.step("building the images")}},
		{{m.step("starting the sidecar")}, {m.step("creating the agent")}},
		{{m.step("starting the agent")}},
	}
}

func (m *memLaunch) Undo(_ context.Context, interrupted bool) {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	m.b.undone = append(m.b.undone, fmt.Sprintf("%s interrupted=%v", m.l.Plan.Slug, interrupted))
}

func (m *memLaunch) Result() Record {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	m.b.running[m.l.Plan.Slug] = true
	return Record{AgentContainer: "mem-" + m.l.Plan.Slug, AgentImage: cmpOr(m.l.Image, "mem-image:1"), AgentID: "id-1"}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func memPlan(t *testing.T, slug string) (*plan.Plan, []byte) {
	t.Helper()
	canary, err := plan.MintCanary(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{Kind: manifest.Kind, Version: manifest.Version, Source: "test",
		Agent: manifest.Agent{Name: "tester", Template: "shell", Bottle: "dev"},
		Bottle: manifest.Bottle{Name: "dev", Workspace: t.TempDir(),
			Egress: manifest.Egress{Routes: []routes.Route{{Host: "allowed.test.invalid",
				Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB"}}}},
			Tokens: map[string]manifest.TokenSource{"GITHUB": {Env: "MEM_TOKEN"}}}}
	p, err := plan.New(m, plan.Options{Slug: slug, Canary: canary})
	if err != nil {
		t.Fatal(err)
	}
	p.Backend = "mem"
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, raw
}

func memOptions(t *testing.T, p *plan.Plan, raw []byte, st *state.Store) LaunchOptions {
	return LaunchOptions{Plan: p, PlanJSON: raw, Store: st, Dir: t.TempDir(),
		Env: func(k string) string {
			return map[string]string{"MEM_TOKEN": "tok-for-the-sidecar-only", "HOME": "/nonexistent"}[k]
		}}
}

func TestLaunchRunsTheStages(t *testing.T) {
	b := newMem()
	st := &state.Store{Dir: t.TempDir()}
	p, raw := memPlan(t, "mem-a1b2")
	rec, err := Launch(t.Context(), b, memOptions(t, p, raw, st))
	if err != nil {
		t.Fatal(err)
	}
	want := &Record{Slug: "mem-a1b2", Backend: "mem", AgentContainer: "mem-mem-a1b2", AgentImage: "mem-image:1", AgentID: "id-1"}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	// The lanes of a stage in either order; the stages in theirs.
	if len(b.steps) != 4 || b.steps[0] != "building the images" || b.steps[3] != "starting the agent" {
		t.Errorf("steps %q", b.steps)
	}
	if diff := cmp.Diff([]string{"EGRESS_TOKEN_CANARY=" + p.Canary, "EGRESS_TOKEN_GITHUB=tok-for-the-sidecar-only"}, b.tokens); diff != "" {
		t.Errorf("the sidecar's tokens (-want +got):\n%s", diff)
	}
	md, err := st.ReadMetadata("mem-a1b2")
	if err != nil || md.Backend != "mem" || md.Agent != "tester" {
		t.Errorf("metadata %+v, %v", md, err)
	}
	ld, err := ReadLaunched(st, "mem-a1b2")
	if err != nil || ld.AgentImage != "mem-image:1" || ld.Workspace == "" {
		t.Errorf("launch record %+v, %v", ld, err)
	}
	for _, f := range []string{state.PlanFile, LaunchFile, filepath.Join(state.EgressDirName, state.RoutesFile),
		filepath.Join(state.EgressDirName, state.CACertFile)} {
		if _, err := os.Stat(filepath.Join(st.BottleDir("mem-a1b2"), f)); err != nil {
			t.Errorf("the state lacks %s: %v", f, err)
		}
	}
	// No token value is in the state.
	filepath.WalkDir(st.BottleDir("mem-a1b2"), func(path string, d os.DirEntry, err error) error {
		if b, _ := os.ReadFile(path); err == nil && !d.IsDir() && strings.Contains(string(b), "tok-for-the-sidecar-only") {
			t.Errorf("%s holds the token's value", path)
		}
		return nil
	})
	if len(b.undone) != 0 {
		t.Errorf("undone after a good launch: %q", b.undone)
	}
	// The lock was let go: the bottle's state can be updated.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := st.Update(ctx, "mem-a1b2", func(*state.Metadata) error { return nil }); err != nil {
		t.Errorf("the launch kept the lock: %v", err)
	}
}

// A failed step undoes the backend's half and removes the state folder the
// launch made, and names the step; a resume's failure keeps the folder.
func TestLaunchFailureUndoes(t *testing.T) {
	for _, resume := range []bool{false, true} {
		t.Run(fmt.Sprintf("resume=%v", resume), func(t *testing.T) {
			st := &state.Store{Dir: t.TempDir()}
			p, raw := memPlan(t, "mem-c3d4")
			if resume {
				if _, err := Launch(t.Context(), newMem(), memOptions(t, p, raw, st)); err != nil {
					t.Fatal(err)
				}
			}
			b := newMem()
			b.failAt = "creating the agent"
			o := memOptions(t, p, raw, st)
			o.Resume = resume
			_, err := Launch(t.Context(), b, o)
			var se *StepError
			if !errors.As(err, &se) || se.Step != "creating the agent" || exit.CodeOf(err) != exit.CodeBackend {
				t.Fatalf("Launch = %v, want a backend failure at creating the agent", err)
			}
			if diff := cmp.Diff([]string{"mem-c3d4 interrupted=false"}, b.undone); diff != "" {
				t.Errorf("undo (-want +got):\n%s", diff)
			}
			_, statErr := os.Stat(st.BottleDir("mem-c3d4"))
			if gone := errors.Is(statErr, os.ErrNotExist); gone == resume {
				t.Errorf("state folder gone = %v after a failed launch (resume %v)", gone, resume)
			}
		})
	}
}

// A launch cut off mid-step says which step, undoes as interrupted, and
// leaves no state.
func TestLaunchInterrupted(t *testing.T) {
	b := newMem()
	b.block = make(chan struct{})
	st := &state.Store{Dir: t.TempDir()}
	p, raw := memPlan(t, "mem-e5f6")
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-b.block; cancel() }()
	_, err := Launch(ctx, b, memOptions(t, p, raw, st))
	var se *StepError
	if !errors.As(err, &se) || se.Step != "starting the agent" || exit.CodeOf(err) != exit.CodeInterrupted {
		t.Fatalf("Launch = %v (exit %d), want interrupted at starting the agent", err, exit.CodeOf(err))
	}
	if diff := cmp.Diff([]string{"mem-e5f6 interrupted=true"}, b.undone); diff != "" {
		t.Errorf("undo (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(st.BottleDir("mem-e5f6")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state folder is left: %v", err)
	}
}

// What is refused is refused before anything is read or written.
func TestLaunchRefusesEarly(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	tests := []struct {
		name string
		edit func(*LaunchOptions)
		want string
	}{
		{"another backend's plan", func(o *LaunchOptions) { o.Plan.Backend = "docker" }, `plan backend is "docker", want "mem"`},
		{"a root agent", func(o *LaunchOptions) { o.Plan.Agent.User = "0:0" }, "must run as a non-root user"},
		{"a section the backend refuses", func(o *LaunchOptions) { o.Plan.Agent.Image = "refused" }, "plan mem section refused"},
		{"a terminal it cannot attach", func(o *LaunchOptions) { o.Attach = true }, "backend mem cannot attach a terminal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newMem()
			p, raw := memPlan(t, "mem-0000")
			o := memOptions(t, p, raw, st)
			tt.edit(&o)
			_, err := Launch(t.Context(), b, o)
			if err == nil || !strings.Contains(err.Error(), tt.want) || exit.CodeOf(err) != exit.CodeUsage {
				t.Fatalf("Launch = %v, want bad usage: %s", err, tt.want)
			}
			if len(b.steps) != 0 || len(b.undone) != 0 {
				t.Errorf("a refused launch ran %q, undid %q", b.steps, b.undone)
			}
			if entries, _ := os.ReadDir(st.Dir); len(entries) != 0 {
				t.Errorf("a refused launch wrote state: %v", entries)
			}
		})
	}
}

// restartable is a memBackend that restarts stopped agents, and has
// snapshots and images.
type restartable struct {
	*memBackend
	restarted []string
	images    map[string]bool
}

func (r *restartable) Restart(_ context.Context, o LaunchOptions) (*Record, error) {
	r.restarted = append(r.restarted, o.Plan.Slug)
	return &Record{Slug: o.Plan.Slug, Backend: r.name}, nil
}
func (r *restartable) ImageExists(_ context.Context, ref string) (bool, error) {
	return r.images[ref], nil
}
func (r *restartable) Freezer() freeze.Freezer { return memFreezer{r.images} }

type memFreezer struct{ images map[string]bool }

func (memFreezer) Backend() string                                       { return "mem" }
func (memFreezer) NeedsStop() bool                                       { return false }
func (memFreezer) Running(context.Context) ([]string, error)             { return nil, nil }
func (memFreezer) Commit(context.Context, freeze.Target) (string, error) { return "", nil }
func (memFreezer) Tag(context.Context, string, string) error             { return nil }
func (memFreezer) Remove(context.Context, string) error                  { return nil }
func (f memFreezer) Exists(_ context.Context, ref string) (bool, error) {
	return f.images[ref], nil
}

func TestResumePolicy(t *testing.T) {
	tests := []struct {
		name      string
		agent     string // running, stopped, or "" for none
		restarts  bool
		discard   bool
		snapshots []string
		images    []string // what the backend has
		wantErr   string
		wantSaid  string
		wantImage string // the image the launch booted
		restarted bool
		stopped   bool
	}{
		{name: "running", agent: "running", restarts: true, wantErr: "bottle mem-r1 is running"},
		{name: "stopped agent restarts", agent: "stopped", restarts: true, restarted: true,
			wantSaid: "restarting bottle mem-r1's stopped agent container"},
		{name: "stopped agent, no restart here", agent: "stopped", wantErr: "backend mem cannot restart a stopped agent"},
		{name: "discard boots the newest snapshot the backend has", agent: "stopped", restarts: true, discard: true,
			snapshots: []string{"bb/mem-r1:1", "bb/mem-r1:2", "bb/mem-r1:3"}, images: []string{"bb/mem-r1:1", "bb/mem-r1:2"},
			wantSaid: "resuming bottle mem-r1 from its snapshot bb/mem-r1:2", wantImage: "bb/mem-r1:2", stopped: true},
		{name: "no snapshot: the last launch's image", restarts: true, images: []string{"mem-image:1"},
			wantSaid: "resuming bottle mem-r1 from its image mem-image:1 (it has no snapshot)", wantImage: "mem-image:1"},
		{name: "nothing left: rebuild", restarts: true,
			wantSaid: "bottle mem-r1 has no snapshot and its image is gone; rebuilding from the Dockerfile", wantImage: "mem-image:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &state.Store{Dir: t.TempDir()}
			p, raw := memPlan(t, "mem-r1")
			if _, err := Launch(t.Context(), newMem(), memOptions(t, p, raw, st)); err != nil {
				t.Fatal(err)
			}
			md, err := st.ReadMetadata("mem-r1")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.snapshots {
				md.Images = append(md.Images, state.Image{Ref: s})
			}
			m := newMem()
			if tt.agent != "" {
				m.running["mem-r1"] = tt.agent == "running"
			}
			var b Backend = m
			r := &restartable{memBackend: m, images: map[string]bool{}}
			for _, im := range tt.images {
				r.images[im] = true
			}
			if tt.restarts {
				b = r
			}
			var said strings.Builder
			o := memOptions(t, p, raw, st)
			o.Progress = &said
			rec, err := Resume(t.Context(), b, o, md, tt.discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || exit.CodeOf(err) != exit.CodeUsage {
					t.Fatalf("Resume = %v, want bad usage: %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(said.String(), tt.wantSaid) {
				t.Errorf("said %q, want %q", said.String(), tt.wantSaid)
			}
			if got := len(r.restarted) > 0; got != tt.restarted {
				t.Errorf("restarted = %v", got)
			}
			if got := slices.Contains(m.stopped, "mem-r1"); got != tt.stopped {
				t.Errorf("stopped first = %v", got)
			}
			if tt.wantImage != "" && rec.AgentImage != tt.wantImage {
				t.Errorf("booted %q, want %q", rec.AgentImage, tt.wantImage)
			}
		})
	}
}

func TestList(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	for _, md := range []state.Metadata{
		{Slug: "a-1", Agent: "a", Label: "bob", Backend: "mem", Created: time.Unix(1, 0)},
		{Slug: "b-2", Agent: "b", Backend: "gone", Created: time.Unix(2, 0)},
		{Slug: "c-3", Agent: "c", Backend: "gone", Created: time.Unix(3, 0)},
		{Slug: "d-4", Agent: "d", Backend: "mem", Created: time.Unix(4, 0)},
		{Slug: "e-5", Agent: "e", Backend: "mute", Created: time.Unix(5, 0)},
		{Slug: "f-6", Agent: "f", Backend: "mute", Created: time.Unix(6, 0)},
	} {
		if err := st.WriteMetadata(md.Slug, md); err != nil {
			t.Fatal(err)
		}
	}
	m := newMem()
	m.running["a-1"] = true
	var opened, warned []string
	open := func(_ context.Context, name string) (Backend, error) {
		opened = append(opened, name)
		switch name {
		case "mem":
			return m, nil
		case "mute":
			return mute{newMem()}, nil
		}
		return nil, errors.New("no engine")
	}
	list, err := List(t.Context(), st, open, func(err error) { warned = append(warned, err.Error()) })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range list {
		got = append(got, l.Slug+" "+l.Status+" "+l.AgentContainer+" "+l.Display)
	}
	want := []string{"a-1 running mem-a-1 bob (a)", "b-2 unknown bot-bottle-b-2 b", "c-3 unknown bot-bottle-c-3 c", "d-4 stopped bot-bottle-d-4 d",
		"e-5 unknown bot-bottle-e-5 e", "f-6 unknown bot-bottle-f-6 f"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"mem", "gone", "mute"}, opened); diff != "" {
		t.Errorf("each backend opened once (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"the status is unknown: no engine", "the status is unknown: cannot say"}, warned); diff != "" {
		t.Errorf("warned (-want +got):\n%s", diff)
	}
}

// mute is a backend that cannot be asked.
type mute struct{ Backend }

func (mute) Status(context.Context, string) (Status, error) {
	return Status{}, errors.New("cannot say")
}

func TestRegistry(t *testing.T) {
	mu.Lock()
	saved := drivers
	drivers = map[string]Driver{}
	mu.Unlock()
	t.Cleanup(func() { mu.Lock(); drivers = saved; mu.Unlock() })
	Register(Driver{Name: "docker", Open: func(context.Context, Config) (Backend, error) { return newMem(), nil }})
	Register(Driver{Name: "macos-container", Open: func(context.Context, Config) (Backend, error) { return newMem(), nil }})
	Register(Driver{Name: "aaa", Open: func(context.Context, Config) (Backend, error) { return newMem(), nil }})
	if diff := cmp.Diff([]string{"docker", "macos-container", "aaa"}, Names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	for _, name := range []string{"docker", "", "container", "macos-container"} {
		if _, err := Open(t.Context(), name, Config{}); err != nil {
			t.Errorf("Open(%q): %v", name, err)
		}
	}
	if _, err := Open(t.Context(), "kubernetes", Config{}); exit.CodeOf(err) != exit.CodeUsage ||
		err.Error() != `unknown backend "kubernetes": want docker, macos-container, aaa` {
		t.Errorf("Open of an unknown backend = %v", err)
	}
	for _, d := range []Driver{{Name: "docker", Open: func(context.Context, Config) (Backend, error) { return nil, nil }}, {Name: "x"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", d.Name)
				}
			}()
			Register(d)
		}()
	}
}
