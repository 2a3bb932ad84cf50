package macoscontainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bb-bottles/bb/internal/testio"
	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/backend/macoscontainer/internal/clispec"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/guest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
)

const testToken = "ghp_notarealtokenbutlongenough1234567890"

var (
	egressOnce sync.Once
	egressBin  string
	egressErr  error
)

// staticEgress is the static linux bb-egress the backend puts in the
// sidecar's image and the agent's guest folder, built once.
func staticEgress(t *testing.T) string {
	t.Helper()
	egressOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bb-mc-egress-")
		if err != nil {
			egressErr = err
			return
		}
		egressBin = filepath.Join(dir, "bb-egress")
		cmd := exec.Command("go", "build", "-trimpath", "-o", egressBin, "../../../cmd/bb-egress")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			egressErr = errors.New(string(out))
		}
	})
	if egressErr != nil {
		t.Fatalf("building bb-egress: %v", egressErr)
	}
	return egressBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, p := range []string{egressBin, fakeBin} {
		if p != "" {
			os.RemoveAll(filepath.Dir(p))
		}
	}
	os.Exit(code)
}

// bottleTest is one bottle's launch on the fake CLI.
type bottleTest struct {
	f    *fake
	b    *Backend
	st   *state.Store
	p    *plan.Plan
	raw  []byte
	slug string
}

func newBottleTest(t *testing.T, slug string) *bottleTest {
	t.Helper()
	f := newFake(t)
	// Short: the sidecar's socket is in the bottle's folder.
	dir, err := os.MkdirTemp("", "bbs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st := &state.Store{Dir: dir}
	p := testPlan(t, slug)
	raw, _ := json.Marshal(p)
	b := New(&f.Tool, st)
	b.Labels = map[string]string{names.LabelTest: "1"}
	return &bottleTest{f: f, b: b, st: st, p: p, raw: raw, slug: slug}
}

func (bt *bottleTest) options(t *testing.T) backend.LaunchOptions {
	return backend.LaunchOptions{Plan: bt.p, PlanJSON: bt.raw, Store: bt.st, SidecarBinary: staticEgress(t),
		BaseImage: "bb-base:bookworm", BuildArgs: map[string]string{"INSTALL_CLI": "0"},
		Env: func(k string) string {
			if k == "BB_TEST_GITHUB_TOKEN" {
				return testToken
			}
			return ""
		},
		Dir: t.TempDir(), UID: 501, GID: 20, ReadyTimeout: 5 * time.Second}
}

// state is the fake's state, as the test reads it.
type fakeState struct {
	Containers []struct {
		ID         string            `json:"id"`
		Image      string            `json:"image"`
		Executable string            `json:"executable"`
		Args       []string          `json:"args"`
		Env        []string          `json:"env"`
		Labels     map[string]string `json:"labels"`
		Networks   []string          `json:"networks"`
		State      string            `json:"state"`
		Signals    []string          `json:"signals"`
		User       string            `json:"user"`
	} `json:"containers"`
	Images []struct {
		Ref    string            `json:"ref"`
		Labels map[string]string `json:"labels"`
	} `json:"images"`
}

func (f *fake) state(t *testing.T) fakeState {
	t.Helper()
	var s fakeState
	b, err := os.ReadFile(filepath.Join(f.Dir, "state.json"))
	if err == nil {
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// checkCalls fails t for any command line the fake was given that the
// documented syntax does not allow.
func (f *fake) checkCalls(t *testing.T) {
	t.Helper()
	for _, c := range f.calls(t) {
		if _, err := clispec.Parse(c); err != nil {
			t.Errorf("an undocumented command line: container %s: %v", strings.Join(c, " "), err)
		}
	}
}

// The whole life cycle on the fake CLI: launch, status, exec, reload, a
// snapshot, stop, a resume from the snapshot that kept a file, a restart of
// a stopped agent, stop --rm's removal; every command line documented.
func TestLifeCycle(t *testing.T) {
	bt := newBottleTest(t, "life-a1b2")
	ctx := t.Context()
	var progress bytes.Buffer
	o := bt.options(t)
	o.Progress = &progress
	rec, err := backend.Launch(ctx, bt.b, o)
	if err != nil {
		t.Fatalf("launch: %v\n%s", err, progress.String())
	}
	if rec.Backend != names.MacOSContainer || rec.AgentContainer != names.Agent(bt.slug) || rec.SidecarContainer != names.Sidecar(bt.slug) ||
		!strings.HasPrefix(rec.AgentImage, "bb-agent-shell:") || !strings.HasPrefix(rec.SidecarImage, "bb-egress:") || rec.Session != nil {
		t.Errorf("record = %+v", rec)
	}
	if !strings.Contains(progress.String(), "bb-launch: building bb-agent-shell:") {
		t.Errorf("no build progress: %q", progress.String())
	}
	s := bt.f.state(t)
	var sidecarEnv, agentEnv []string
	for _, c := range s.Containers {
		if c.Labels[names.LabelSlug] != bt.slug || c.Labels[names.LabelTest] != "1" || c.Labels[names.LabelAgent] != "tester" {
			t.Errorf("container %s labels %v", c.ID, c.Labels)
		}
		switch c.Labels[names.LabelRole] {
		case names.RoleEgress:
			sidecarEnv = c.Env
			if !slices.Equal(c.Networks, []string{"default"}) || c.User != "501:20" {
				t.Errorf("sidecar networks %v user %s", c.Networks, c.User)
			}
		case names.RoleAgent:
			agentEnv = c.Env
			if len(c.Networks) != 0 || c.User != "0:0" || c.Executable != GuestBinary {
				t.Errorf("agent networks %v user %s executable %s", c.Networks, c.User, c.Executable)
			}
			if !slices.Contains(c.Args, "--") || c.Args[len(c.Args)-len(bt.p.Agent.Command)-1] != "--" {
				t.Errorf("agent args %v", c.Args)
			}
		}
	}
	if !slices.Contains(sidecarEnv, "EGRESS_TOKEN_GITHUB="+testToken) || !slices.Contains(sidecarEnv, "EGRESS_TOKEN_CANARY="+bt.p.Canary) {
		t.Errorf("the sidecar lacks its tokens: %v", sidecarEnv)
	}
	if !slices.Contains(agentEnv, "BOT_BOTTLE_CANARY="+bt.p.Canary) || !slices.Contains(agentEnv, "HTTPS_PROXY=http://bb.egress:3128") {
		t.Errorf("the agent's environment: %v", agentEnv)
	}
	for _, e := range agentEnv {
		if strings.Contains(e, testToken) || strings.HasPrefix(e, "EGRESS_TOKEN_") {
			t.Errorf("a token in the agent's environment: %s", e)
		}
	}
	// The token is on no command line, and in no file of the bottle's
	// folder; the agent's environment file is gone.
	for _, c := range bt.f.calls(t) {
		if strings.Contains(strings.Join(c, " "), testToken) {
			t.Errorf("the token on a command line: %v", c)
		}
	}
	filepath.WalkDir(bt.st.Dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(testToken)) {
				t.Errorf("the token is in %s", p)
			}
			if strings.HasPrefix(d.Name(), ".agent-env") {
				t.Errorf("the agent's environment file %s is left", p)
			}
		}
		return nil
	})
	var spec guest.Spec
	if b, err := os.ReadFile(filepath.Join(bt.st.BottleDir(bt.slug), GuestFolder, "spec.json")); err != nil || json.Unmarshal(b, &spec) != nil {
		t.Fatalf("the guest spec: %v", err)
	}
	if spec.WaitAttach || spec.User != bt.p.Agent.User {
		t.Errorf("spec = %+v", spec)
	}
	if _, err := os.Stat(filepath.Join(bt.st.BottleDir(bt.slug), GuestFolder, "bb-egress")); err != nil {
		t.Errorf("the guest's bb-egress: %v", err)
	}

	st, err := bt.b.Status(ctx, bt.slug)
	if err != nil || st.Agent != backend.StatusRunning || !st.SidecarRunning || st.AgentName != names.Agent(bt.slug) {
		t.Errorf("status = %+v, %v", st, err)
	}
	var out, errb bytes.Buffer
	code, err := bt.b.Exec(ctx, bt.slug, []string{"sh", "-c", "echo out; echo err >&2; echo kept > file; exit 7"}, &out, &errb)
	if err != nil || code != 7 || out.String() != "out\n" || errb.String() != "err\n" {
		t.Errorf("exec = %d, %v, %q, %q", code, err, out.String(), errb.String())
	}
	if err := bt.b.Reload(ctx, bt.slug); err != nil {
		t.Fatal(err)
	}
	for _, c := range bt.f.state(t).Containers {
		if c.Labels[names.LabelRole] == names.RoleEgress && !slices.Equal(c.Signals, []string{"HUP"}) {
			t.Errorf("the sidecar's signals: %v", c.Signals)
		}
	}

	// A snapshot of the running agent (1.2.2 exports it live).
	fr := bt.b.Freezer()
	if fr.NeedsStop() {
		t.Error("1.2.2 needs no stop to export")
	}
	frec, err := freeze.Commit(ctx, bt.st, fr, bt.slug, freeze.Options{Labels: map[string]string{names.LabelTest: "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := fr.Exists(ctx, freeze.LatestRef(bt.slug)); !ok || !strings.HasPrefix(frec.ID, "sha256:") {
		t.Errorf("snapshot %+v; latest exists %v", frec, ok)
	}
	if slugs, err := fr.Running(ctx); err != nil || !slices.Equal(slugs, []string{bt.slug}) {
		t.Errorf("running = %v, %v", slugs, err)
	}
	// A second one with --keep 1: the first image goes, latest follows.
	later := func() time.Time { return time.Now().Add(time.Hour) }
	frec2, err := freeze.Commit(ctx, bt.st, fr, bt.slug, freeze.Options{Keep: 1, Now: later})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := fr.Exists(ctx, frec.Image); ok {
		t.Errorf("--keep 1 left %s", frec.Image)
	}
	if ok, _ := fr.Exists(ctx, frec2.Image); !ok {
		t.Errorf("the new snapshot %s is gone", frec2.Image)
	}
	frec = frec2

	if err := backend.StopLocked(ctx, bt.b, bt.st, bt.slug); err != nil {
		t.Fatal(err)
	}
	if st, _ := bt.b.Status(ctx, bt.slug); st.Agent != backend.StatusMissing || st.Leftovers {
		t.Errorf("status after stop = %+v", st)
	}
	if _, err := os.Stat(filepath.Join(bt.st.BottleDir(bt.slug), "egress.sock")); err == nil {
		t.Error("the sidecar's socket outlived it")
	}
	if _, err := bt.b.Exec(ctx, bt.slug, []string{"true"}, &out, &errb); !errors.Is(err, backend.ErrNotRunning) || exit.CodeOf(err) != 2 {
		t.Errorf("exec in a stopped bottle: %v", err)
	}
	if err := bt.b.Reload(ctx, bt.slug); !errors.Is(err, backend.ErrNotRunning) {
		t.Errorf("reload of a stopped bottle: %v", err)
	}

	// Resumed from the snapshot: the file written before it is there.
	md, _ := bt.st.ReadMetadata(bt.slug)
	rec, err = backend.Resume(ctx, bt.b, bt.options(t), md, false)
	if err != nil {
		t.Fatal(err)
	}
	if rec.AgentImage != frec.Image {
		t.Errorf("resumed from %s, want the snapshot %s", rec.AgentImage, frec.Image)
	}
	out.Reset()
	if code, err := bt.b.Exec(ctx, bt.slug, []string{"cat", "file"}, &out, &errb); code != 0 || err != nil || out.String() != "kept\n" {
		t.Errorf("after the resume: %d %v %q", code, err, out.String())
	}

	// A stopped agent restarts with what it holds.
	bt.f.run(t, "stop", names.Agent(bt.slug))
	if st, _ := bt.b.Status(ctx, bt.slug); st.Agent != backend.StatusStopped {
		t.Fatalf("status = %+v", st)
	}
	md, _ = bt.st.ReadMetadata(bt.slug)
	if _, err := backend.Resume(ctx, bt.b, bt.options(t), md, false); err != nil {
		t.Fatal(err)
	}
	if st, _ := bt.b.Status(ctx, bt.slug); st.Agent != backend.StatusRunning {
		t.Errorf("status after the restart = %+v", st)
	}
	if _, err := backend.Resume(ctx, bt.b, bt.options(t), md, false); err == nil || !strings.Contains(err.Error(), "is running") {
		t.Errorf("resume of a running bottle: %v", err)
	}

	// stop --rm: the bottle's own repository and any volume labelled as
	// its go too; another bottle's stays.
	bt.f.run(t, "volume", "create", "--label", names.LabelSlug+"="+bt.slug, names.Agent(bt.slug)+"-extra")
	bt.f.run(t, "volume", "create", "--label", names.LabelSlug+"=other-b1c2", "other")
	if err := backend.StopLocked(ctx, bt.b, bt.st, bt.slug); err != nil {
		t.Fatal(err)
	}
	if err := bt.b.Remove(ctx, bt.slug); err != nil {
		t.Fatal(err)
	}
	vs, _ := DecodeVolumes([]byte(bt.f.run(t, "volume", "list", "--format", "json")))
	if len(vs) != 1 || vs[0].Name != "other" {
		t.Errorf("volumes after remove: %+v", vs)
	}
	bt.f.checkCalls(t)
}

// A launch with a terminal: the agent's init waits, the session starts it,
// and its status is the session's.
func TestLaunchAttached(t *testing.T) {
	bt := newBottleTest(t, "att-a1b2")
	bt.p.Agent.Command = []string{"sh", "-c", "read x; echo got:$x; exit 4"}
	bt.raw, _ = json.Marshal(bt.p)
	o := bt.options(t)
	o.Attach = true
	rec, err := backend.Launch(t.Context(), bt.b, o)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Session == nil {
		t.Fatal("no session")
	}
	var spec guest.Spec
	b, _ := os.ReadFile(filepath.Join(bt.st.BottleDir(bt.slug), GuestFolder, "spec.json"))
	if json.Unmarshal(b, &spec) != nil || !spec.WaitAttach {
		t.Errorf("the init does not wait for the session: %s", b)
	}
	keys, screen, term := person(t)
	done := make(chan int, 1)
	go func() {
		code, detached, err := rec.Session.Run(t.Context(), term)
		if err != nil || detached {
			t.Errorf("session: %v, detached %v", err, detached)
		}
		done <- code
	}()
	time.Sleep(200 * time.Millisecond)
	keys.Write([]byte("hi\r"))
	testio.WaitFor(t, screen, "got:hi")
	select {
	case code := <-done:
		if code != 4 {
			t.Errorf("session = %d, want the agent's 4", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the session did not end")
	}
	// bb-launch attach joins a running agent only.
	if _, err := bt.b.Attach(t.Context(), bt.slug); !errors.Is(err, backend.ErrNotRunning) {
		t.Errorf("attach to an exited agent: %v", err)
	}
}

// A failure at any step removes what the launch made and names the step;
// a new bottle leaves no state folder.
func TestLaunchFailureCleansUp(t *testing.T) {
	for _, tt := range []struct {
		name, match, step string
		hang              bool
	}{
		{"the agent's create", "create --name bot-bottle-fail-a1b2 ", "creating the agent", false},
		{"the sidecar's start", "start bot-bottle-fail-a1b2-egress", "starting the sidecar", false},
		{"the agent's start", "start bot-bottle-fail-a1b2", "starting the agent", false},
		{"an interrupted build", "build", "building the sidecar image", true},
		{"an interrupted agent create", "create --name bot-bottle-fail-a1b2 ", "creating the agent", true},
		{"an agent create interrupted once done", "create --name bot-bottle-fail-a1b2 ", "creating the agent", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bt := newBottleTest(t, "fail-a1b2")
			fault := map[string]any{"match": tt.match, "exit": 1, "stderr": "Error: internalError: \"injected\""}
			if tt.hang {
				fault = map[string]any{"match": tt.match, "hang": true, "after": strings.Contains(tt.name, "once done")}
			}
			if tt.match == "start bot-bottle-fail-a1b2" {
				fault["exact"] = true // not the sidecar's start
			}
			bt.f.fault(t, fault)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.hang {
				go func() { time.Sleep(1500 * time.Millisecond); cancel() }()
			}
			_, err := backend.Launch(ctx, bt.b, bt.options(t))
			var se *backend.StepError
			if !errors.As(err, &se) || se.Step != tt.step {
				t.Fatalf("launch = %v, want a failure at %q", err, tt.step)
			}
			time.Sleep(100 * time.Millisecond)
			if cs := bt.f.state(t).Containers; len(cs) != 0 {
				t.Errorf("left behind: %+v", cs)
			}
			if bt.st.Exists(bt.slug) {
				t.Error("a bottle that never started left its state folder")
			}
			if strings.Contains(tt.name, "once done") {
				deleted := false
				for _, c := range bt.f.calls(t) {
					deleted = deleted || strings.Join(c, " ") == "delete --force bot-bottle-fail-a1b2"
				}
				if !deleted {
					t.Error("the agent's container, created as the CLI was interrupted, was not found by its launch label")
				}
			}
			bt.f.checkCalls(t)
		})
	}
}

// The launch refuses where container cannot hold a bottle, before it
// creates anything: an old release (naming the one needed, exit 3), its
// services stopped (exit 3), a plan giving the agent a network (exit 2).
func TestLaunchRefuses(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup func(*bottleTest)
		code  int
		want  []string
	}{
		{"container 0.12.3", func(bt *bottleTest) { bt.f.Environ = append(bt.f.Environ, "FAKE_CONTAINER_VERSION=0.12.3") }, 3,
			[]string{"container 0.12.3 cannot run a bottle: bb needs container 1.0.0 or later", "--network none", "upgrade it"}},
		{"services stopped", func(bt *bottleTest) { bt.f.Environ = append(bt.f.Environ, "FAKE_CONTAINER_APISERVER=down") }, 3,
			[]string{"container's services are not running", "container system start"}},
		{"an agent on a network", func(bt *bottleTest) {
			bt.p.MacOSContainer.AgentNetwork = "default"
			bt.raw, _ = json.Marshal(bt.p)
		}, 2, []string{`agent_network is "default"`}},
		{"the workspace over bb's mounts", func(bt *bottleTest) {
			bt.p.Agent.Workdir = "/bb"
			bt.raw, _ = json.Marshal(bt.p)
		}, 2, []string{`plan agent.workdir "/bb"`}},
		{"containers named otherwise", func(bt *bottleTest) {
			bt.p.MacOSContainer.AgentContainer = "mine"
			bt.raw, _ = json.Marshal(bt.p)
		}, 2, []string{"must be named bot-bottle-refuse-a1b2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bt := newBottleTest(t, "refuse-a1b2")
			tt.setup(bt)
			_, err := backend.Launch(t.Context(), bt.b, bt.options(t))
			if exit.CodeOf(err) != tt.code {
				t.Errorf("launch = %v (exit %d), want exit %d", err, exit.CodeOf(err), tt.code)
			}
			msg := ""
			if err != nil {
				msg = err.Error() + " " + strings.Join(exit.Hints(err), " ")
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("the refusal lacks %q: %s", w, msg)
				}
			}
			for _, c := range bt.f.calls(t) {
				if c[0] == "create" || c[0] == "build" {
					t.Errorf("a refused launch ran container %s", strings.Join(c, " "))
				}
			}
			if bt.st.Exists(bt.slug) {
				t.Error("a refused launch left its state folder")
			}
		})
	}
}

// A sidecar that never says it listens fails the launch in time, quoting
// what it said.
func TestSidecarNeverReady(t *testing.T) {
	bt := newBottleTest(t, "slow-a1b2")
	bt.f.fault(t, map[string]any{"match": "logs bot-bottle-slow-a1b2-egress", "exit": 0})
	o := bt.options(t)
	o.ReadyTimeout = 700 * time.Millisecond
	_, err := backend.Launch(t.Context(), bt.b, o)
	var se *backend.StepError
	if !errors.As(err, &se) || se.Step != "starting the sidecar" || !strings.Contains(err.Error(), "did not start within") {
		t.Errorf("launch = %v", err)
	}
	if cs := bt.f.state(t).Containers; len(cs) != 0 {
		t.Errorf("left behind: %+v", cs)
	}
}

// Before 1.2.1 only a stopped container exports: the freezer says it must
// stop the bottle, stops the agent, exports, and starts it again, detached.
func TestCommitOnAnOldRelease(t *testing.T) {
	bt := newBottleTest(t, "old-a1b2")
	bt.f.Environ = append(bt.f.Environ, "FAKE_CONTAINER_VERSION=1.1.0")
	o := bt.options(t)
	o.Attach = true // the init waits for a session: the restart must not
	if _, err := backend.Launch(t.Context(), bt.b, o); err != nil {
		t.Fatal(err)
	}
	fr := bt.b.Freezer()
	if !fr.NeedsStop() {
		t.Error("1.1.0 exports only stopped containers: NeedsStop must say so")
	}
	if _, err := freeze.Commit(t.Context(), bt.st, fr, bt.slug, freeze.Options{}); err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, c := range bt.f.calls(t) {
		switch c[0] {
		case "stop", "export", "start":
			seq = append(seq, c[0]+" "+c[len(c)-1])
		}
	}
	agent := names.Agent(bt.slug)
	want := []string{"start " + names.Sidecar(bt.slug), "start " + agent, "stop " + agent, "export " + agent, "start " + agent}
	if !slices.Equal(seq, want) {
		t.Errorf("calls %v, want %v", seq, want)
	}
	var spec guest.Spec
	b, _ := os.ReadFile(filepath.Join(bt.st.BottleDir(bt.slug), GuestFolder, "spec.json"))
	if json.Unmarshal(b, &spec) != nil || spec.WaitAttach {
		t.Errorf("the restarted init waits for a session: %s", b)
	}
	if st, _ := bt.b.Status(t.Context(), bt.slug); st.Agent != backend.StatusRunning {
		t.Errorf("after the commit: %+v", st)
	}
}
