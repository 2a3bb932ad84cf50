package smolvm

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/backend/smolvm/smolvmtest"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/state"
)

// The agent image is built by the real Docker engine, as a launch does;
// smolvm is the fake (smolvmtest). A test without the engine or the offline
// base image skips, unless BB_REQUIRE_DOCKER=1.
var (
	engine    *client.Client
	engineErr error
	testRun   = fmt.Sprintf("smolvm-%d-%d", os.Getpid(), time.Now().UnixNano())
)

func TestMain(m *testing.M) {
	labels := map[string]string{names.LabelTest: "1", names.LabelTestRun: testRun}
	docker.AddLabels(labels)
	AddLabels(labels)
	backend.Register(Driver)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	engine, engineErr = docker.Connect(ctx)
	cancel()
	required := os.Getenv("BB_REQUIRE_DOCKER") == "1"
	if engineErr != nil && required {
		fmt.Fprintf(os.Stderr, "BB_REQUIRE_DOCKER=1 but the docker engine is unreachable: %v\n", engineErr)
		os.Exit(1)
	}
	code := m.Run()
	if egressDir != "" {
		os.RemoveAll(egressDir)
	}
	if engine != nil {
		if err := docker.RemoveLabelled(context.Background(), engine, names.LabelTestRun, testRun); err != nil {
			fmt.Fprintf(os.Stderr, "removing test images: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		engine.Close()
	}
	os.Exit(code)
}

// needBase skips t without the engine and the offline base image.
func needBase(t *testing.T) {
	t.Helper()
	if engine == nil {
		t.Skipf("no docker engine to build the agent image (BB_REQUIRE_DOCKER=1 fails instead): %v", engineErr)
	}
	ok, err := docker.ImageExists(t.Context(), engine, docker.BaseImage)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		if os.Getenv("BB_REQUIRE_DOCKER") == "1" {
			t.Fatalf("the base image %s is absent: run scripts/base-image", docker.BaseImage)
		}
		t.Skipf("the base image %s is absent: run scripts/base-image", docker.BaseImage)
	}
}

var (
	egressOnce sync.Once
	egressDir  string
	egressBin  string
	egressErr  error
)

// staticEgress builds the static linux bb-egress once: the sidecar's
// binary, and the agent's guest helper.
func staticEgress(t testing.TB) string {
	t.Helper()
	egressOnce.Do(func() {
		egressDir, egressErr = os.MkdirTemp("", "bb-egress-test-")
		if egressErr != nil {
			return
		}
		egressBin = filepath.Join(egressDir, "bb-egress")
		egressErr = backend.BuildSidecarBinary(context.Background(), "../../..", "linux", runtime.GOARCH, egressBin)
	})
	if egressErr != nil {
		t.Fatal(egressErr)
	}
	return egressBin
}

const testToken = "tok-7d1e0c55-only-in-the-sidecar"

func newSlug(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:8])
}

// world is one test's smolvm installation (the fake), state folder and
// environment.
type world struct {
	fake    *smolvmtest.Fake
	store   *state.Store
	environ []string
}

func newWorld(t *testing.T, extra ...string) *world {
	t.Helper()
	w := &world{fake: smolvmtest.New(t), store: &state.Store{Dir: t.TempDir()}}
	w.environ = append(append(append([]string{}, os.Environ()...), w.fake.Env()...),
		ToolEnv+"="+w.fake.Bin, "BB_TEST_GITHUB_TOKEN="+testToken)
	w.environ = append(w.environ, extra...)
	return w
}

func (w *world) env(k string) string {
	v := ""
	for _, kv := range w.environ {
		if key, val, _ := strings.Cut(kv, "="); key == k {
			v = val
		}
	}
	return v
}

// backend opens the smolvm backend as a command does.
func (w *world) backend(t *testing.T) backend.Backend {
	t.Helper()
	b, err := backend.Open(t.Context(), names.Smolvm, backend.Config{Env: w.env, Environ: func() []string { return w.environ }, Store: w.store})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// shellPlan plans the shell agent on smolvm with one token and a git user,
// its workspace a temporary folder.
func shellPlan(t testing.TB, slug string) (*plan.Plan, []byte) {
	t.Helper()
	canary, err := plan.MintCanary(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{Kind: manifest.Kind, Version: manifest.Version, Source: "test",
		Agent: manifest.Agent{Name: "tester", Template: "shell", Bottle: "dev", Prompt: "look around"},
		Bottle: manifest.Bottle{Name: "dev", Workspace: t.TempDir(),
			GitUser: &manifest.GitUser{Name: `Test "Bot"`, Email: "bot@example.invalid"},
			Egress: manifest.Egress{Routes: []routes.Route{{Host: "allowed.test.invalid",
				Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB", Format: "Bearer {token}"}}}},
			Tokens: map[string]manifest.TokenSource{"GITHUB": {Env: "BB_TEST_GITHUB_TOKEN"}}}}
	p, err := plan.New(m, plan.Options{Slug: slug, Canary: canary, Backend: names.Smolvm})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, raw
}

func (w *world) launchOptions(t *testing.T, p *plan.Plan, raw []byte) backend.LaunchOptions {
	return backend.LaunchOptions{Plan: p, PlanJSON: raw, Store: w.store, SidecarBinary: staticEgress(t),
		BaseImage: docker.BaseImage, BuildArgs: map[string]string{"INSTALL_CLI": "0"},
		Env: w.env, Dir: t.TempDir(), UID: os.Getuid(), GID: os.Getgid()}
}

// cleanup stops slug when t ends, and checks the fake has nothing of it.
func (w *world) cleanup(t *testing.T, b backend.Backend, slug string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := b.Stop(ctx, slug); err != nil {
			t.Errorf("stopping %s: %v", slug, err)
		}
		w.assertGone(t, slug)
	})
}

func (w *world) assertGone(t *testing.T, slug string) {
	t.Helper()
	for n, m := range w.fake.Machines(t) {
		if m.Labels[names.LabelSlug] == slug || strings.HasPrefix(n, names.Agent(slug)) {
			t.Errorf("bottle %s left machine %s (%s)", slug, n, m.State)
		}
	}
}
