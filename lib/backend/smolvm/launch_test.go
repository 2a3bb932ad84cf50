package smolvm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/terminal"
	"github.com/bb-bottles/bb/lib/terminal/ptytest"
	"github.com/bb-bottles/bb/lib/workspace"
)

// Two bottles launched at once get machines and networks of their own, and
// each agent reaches its own sidecar and not the other's.
func TestTwoBottlesAtOnce(t *testing.T) {
	needBase(t)
	w := newWorld(t)
	b := w.backend(t)
	slugs := []string{newSlug("twin"), newSlug("twin")}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, slug := range slugs {
		p, raw := shellPlan(t, slug)
		w.cleanup(t, b, slug)
		wg.Go(func() {
			_, errs[i] = backend.Launch(t.Context(), b, w.launchOptions(t, p, raw))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ms := w.fake.Machines(t)
	seen := map[string]string{}
	for _, slug := range slugs {
		a, s := ms[names.Agent(slug)], ms[names.Sidecar(slug)]
		if a == nil || s == nil {
			t.Fatalf("bottle %s: machines %v", slug, ms)
		}
		for _, v := range []string{a.Name, s.Name, a.Network} {
			if other, ok := seen[v]; ok {
				t.Errorf("%s is both %s's and %s's", v, other, slug)
			}
			seen[v] = slug
		}
		if a.Network != s.Network || !slices.Equal(a.AllowHosts, []string{s.Address}) {
			t.Errorf("bottle %s: agent on %s allowing %q, sidecar on %s at %s", slug, a.Network, a.AllowHosts, s.Network, s.Address)
		}
	}
	// Addresses are per network: each sidecar is its network's first, and
	// reachable from its own agent alone. (The fake's dial follows smolvm's
	// fabric: a member reaches only members of its own network.)
	var out bytes.Buffer
	for i, slug := range slugs {
		code, err := b.Exec(t.Context(), slug, []string{GuestHelper, "guest", "dial", "--timeout", "1s", "bb.egress:3128"}, &out, &out)
		if err != nil || code != 0 {
			t.Errorf("bottle %s cannot reach its sidecar: %d, %v: %s", slug, code, err, out.String())
		}
		other := ms[names.Agent(slugs[1-i])]
		if err := w.fake.Run(t, nil, "machine", "exec", "--name", other.Name, "--", GuestHelper, "guest", "dial", names.Sidecar(slug)+":3128"); err == nil {
			t.Errorf("bottle %s's agent reached %s's sidecar by name", slugs[1-i], slug)
		}
	}
	if code, _ := b.Exec(t.Context(), slugs[0], []string{GuestHelper, "guest", "dial", "1.1.1.1:443"}, &out, &out); code != 1 {
		t.Errorf("the agent dialled out: exit %d", code)
	}
}

// An old smolvm is refused before anything is made: exit 3, naming the
// release bb needs.
func TestRefusesOldSmolvm(t *testing.T) {
	w := newWorld(t, "SMOLVM_FAKE_VERSION=1.8.3")
	b := w.backend(t)
	slug := newSlug("old")
	p, raw := shellPlan(t, slug)
	_, err := backend.Launch(t.Context(), b, w.launchOptions(t, p, raw))
	if err == nil || exit.CodeOf(err) != exit.CodeBackend || !strings.Contains(err.Error(), "smolvm 1.8.3 cannot isolate a bottle: bb needs smolvm 1.9.0 or later") {
		t.Fatalf("Launch = %v (exit %d)", err, exit.CodeOf(err))
	}
	if calls := w.fake.Calls(t); len(calls) != 1 || calls[0].Line() != "--version" {
		t.Errorf("smolvm was asked %v", calls)
	}
	if _, err := os.Stat(w.store.BottleDir(slug)); !os.IsNotExist(err) {
		t.Errorf("a state folder was made: %v", err)
	}
}

// A failure at any step, or an interruption, deletes every machine the
// launch made, leaves no state folder for a bottle that never started,
// and names the step.
func TestFailureCleansUp(t *testing.T) {
	needBase(t)
	tests := []struct {
		name, fail, step string
		hang             bool
	}{
		{name: "sidecar rootfs", step: "laying out the sidecar's root filesystem"},
		{name: "sidecar create", fail: "machine create --name bot-bottle-SLUG-egress", step: "creating the sidecar"},
		{name: "sidecar start", fail: "machine start --name bot-bottle-SLUG-egress", step: "starting the sidecar"},
		{name: "agent create", fail: "machine create --name bot-bottle-SLUG ", step: "creating the agent"},
		{name: "agent start", fail: "machine start --name bot-bottle-SLUG$", step: "starting the agent's VM"},
		{name: "provisioning", fail: "machine cp", step: "provisioning the agent"},
		{name: "sidecar unreachable", fail: "machine exec --name bot-bottle-SLUG -- /bb/bin/bb-egress guest dial", step: "waiting for the sidecar"},
		{name: "holder", fail: "machine exec --name bot-bottle-SLUG --detach", step: "starting the agent"},
		{name: "interrupted", fail: "machine start --name bot-bottle-SLUG$", step: "starting the agent's VM", hang: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slug := newSlug("fail")
			key := "SMOLVM_FAKE_FAIL="
			if tt.hang {
				key = "SMOLVM_FAKE_HANG="
			}
			fail := strings.ReplaceAll(tt.fail, "SLUG", slug)
			w := newWorld(t, key+fail)
			b := w.backend(t)
			p, raw := shellPlan(t, slug)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.hang {
				go func() {
					for ctx.Err() == nil {
						for _, c := range w.fake.Calls(t) {
							if c.Line() == strings.TrimSuffix(fail, "$") {
								time.Sleep(200 * time.Millisecond)
								cancel()
								return
							}
						}
						time.Sleep(50 * time.Millisecond)
					}
				}()
			}
			o := w.launchOptions(t, p, raw)
			if tt.fail == "" {
				o.SidecarBinary = filepath.Join(t.TempDir(), "not-elf")
				os.WriteFile(o.SidecarBinary, []byte("#!/bin/sh\n"), 0o755)
			}
			_, err := backend.Launch(ctx, b, o)
			var se *backend.StepError
			if !errors.As(err, &se) || se.Step != tt.step {
				t.Fatalf("Launch = %v, want a failure at %q", err, tt.step)
			}
			if tt.hang && !errors.Is(err, context.Canceled) {
				t.Errorf("an interrupted launch: %v", err)
			}
			w.assertGone(t, slug)
			if _, err := os.Stat(w.store.BottleDir(slug)); !os.IsNotExist(err) {
				t.Errorf("the state folder of a bottle that never started is left: %v", err)
			}
		})
	}
}

// The git plan's mounts on smolvm: the bottle's own repository (a folder
// of its state, seeded from the person's) over the workspace's .git, the
// person's .git read-only; and a workspace whose .git is a file, which
// smolvm (folders only) cannot keep read-only, refused.
func TestGitMounts(t *testing.T) {
	ws := t.TempDir()
	if out, err := exec.Command("git", "-C", ws, "init", "-q").CombinedOutput(); err != nil {
		t.Skipf("no git: %v %s", err, out)
	}
	p, _ := shellPlan(t, "gits-abcd")
	st := &state.Store{Dir: t.TempDir()}
	mk := func(ws string) *launch {
		real, _ := filepath.EvalSymlinks(ws)
		g, err := workspace.PlanGit(real)
		if err != nil {
			t.Fatal(err)
		}
		return &launch{Launching: &backend.Launching{LaunchOptions: backend.LaunchOptions{Plan: p, Store: st, Progress: io.Discard},
			Workspace: real, Git: g}, s: p.Smolvm}
	}
	l := mk(ws)
	if err := l.gitRepo(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.gitDir(), "HEAD")); err != nil || !l.gitNew {
		t.Errorf("the bottle's repository was not seeded: %v", err)
	}
	args, err := l.agentMounts()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--volume", l.Workspace + ":/workspace", "--volume", l.gitDir() + ":/workspace/.git",
		"--volume", filepath.Join(l.Workspace, ".git") + ":" + workspace.HostGitMount + ":ro"}
	if !slices.Equal(args, want) {
		t.Errorf("mounts = %q, want %q", args, want)
	}
	// A second launch keeps the repository: the agent's commits.
	os.WriteFile(filepath.Join(l.gitDir(), "agent-was-here"), nil, 0o644)
	l2 := mk(ws)
	if err := l2.gitRepo(t.Context()); err != nil || l2.gitNew {
		t.Errorf("a resumed bottle's repository was made again: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.gitDir(), "agent-was-here")); err != nil {
		t.Error("the agent's repository was lost")
	}

	wt := t.TempDir()
	os.WriteFile(filepath.Join(wt, ".git"), []byte("gitdir: "+filepath.Join(ws, ".git")+"\n"), 0o644)
	if _, err := mk(wt).agentMounts(); err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "mounts folders only") {
		t.Errorf("a .git file: %v", err)
	}
}

// The plan's smolvm section is checked: the one address the agent may
// reach cannot be planned away.
func TestCheckPlan(t *testing.T) {
	for _, edit := range []func(*plan.Smolvm){
		func(s *plan.Smolvm) { s.SidecarAddress = "0.0.0.0" },
		func(s *plan.Smolvm) { s.Network = "shared" },
		func(s *plan.Smolvm) { s.VM = "other" },
	} {
		p, _ := shellPlan(t, "check-abcd")
		edit(p.Smolvm)
		if err := checkPlan(p); err == nil || exit.CodeOf(err) != exit.CodeUsage {
			t.Errorf("checkPlan(%+v) = %v", p.Smolvm, err)
		}
	}
	p, _ := shellPlan(t, "a--b")
	if err := checkPlan(p); err == nil || !strings.Contains(err.Error(), "not a smolvm machine name") {
		t.Errorf("a slug with '--': %v", err)
	}
}

// A command killed as the VM woke (137, nothing said) is run once more: in
// bb-launch exec, and in the launch's own commands.
func TestExecKilledAsTheVMWoke(t *testing.T) {
	needBase(t)
	w := newWorld(t, "SMOLVM_FAKE_EXEC_137=1")
	b := w.backend(t)
	slug := newSlug("woke")
	p, raw := shellPlan(t, slug)
	w.cleanup(t, b, slug)
	if _, err := backend.Launch(t.Context(), b, w.launchOptions(t, p, raw)); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"stop"}, {"start"}} {
		if err := w.fake.Run(t, nil, "machine", args[0], "--name", names.Agent(slug)); err != nil {
			t.Fatal(err)
		}
	}
	before := len(w.fake.Calls(t))
	var out bytes.Buffer
	code, err := b.Exec(t.Context(), slug, []string{"id", "-u"}, &out, &out)
	if err != nil || code != 0 || out.String() != "1000\n" {
		t.Fatalf("Exec = %d, %v, %q", code, err, out.String())
	}
	var execs int
	for _, c := range w.fake.Calls(t)[before:] {
		if strings.HasPrefix(c.Line(), "machine exec") {
			execs++
		}
	}
	if execs != 2 {
		t.Errorf("%d execs, want the killed one and its retry", execs)
	}
	// Once only: a command that is killed again is the command's own 137.
	code, err = b.Exec(t.Context(), slug, []string{"sh", "-c", "exit 137"}, &out, &out)
	if err != nil || code != 137 {
		t.Errorf("Exec of a command that exits 137 = %d, %v", code, err)
	}
}

// An attached launch holds the agent until the session joins, so nothing
// it prints first is lost; the session then gets the agent's status.
func TestAttachedLaunch(t *testing.T) {
	needBase(t)
	w := newWorld(t)
	b := w.backend(t)
	slug := newSlug("attached")
	p, raw := shellPlan(t, slug)
	w.cleanup(t, b, slug)
	o := w.launchOptions(t, p, raw)
	o.Attach = true
	rec, err := backend.Launch(t.Context(), b, o)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Session == nil {
		t.Fatal("no session")
	}
	if h := w.fake.Machines(t)[names.Agent(slug)].Holder; h == nil || h.Started || !h.Running {
		t.Fatalf("the holder before the session joined: %+v", h)
	}
	ptmx, tty := ptytest.Open(t, 80, 24)
	term, err := terminal.New(tty)
	if err != nil {
		t.Fatal(err)
	}
	seen := &lockedWriter{w: &bytes.Buffer{}}
	go io.Copy(seen, ptmx)
	code, detached, err := runSession(t, rec.Session, term, ptmx, tty, "exit 0\r")
	if err != nil || detached || code != 0 {
		t.Fatalf("Run = %d, %v, %v", code, detached, err)
	}
	// The agent's first words (the fake's holder says its command) reached
	// the terminal.
	want := "[agent " + strings.Join(p.Agent.Command, " ") + "]"
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(seen.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the terminal got %q, want %q", seen.String(), want)
		}
	}
	if h := w.fake.Machines(t)[names.Agent(slug)].Holder; h == nil || !h.Started || h.Running {
		t.Errorf("the holder after the agent exited: %+v", h)
	}
}

// lockedWriter is a writer for one goroutine while another reads it later.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.(*bytes.Buffer).String()
}
