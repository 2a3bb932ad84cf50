package smolvm

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/backend/smolvm/internal/syntax"
	"github.com/bb-bottles/bb/lib/backend/smolvm/smolvmtest"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/terminal"
	"github.com/bb-bottles/bb/lib/terminal/ptytest"
)

// The whole life cycle of a bottle on the fake smolvm: launch, exec (a 137
// on the first try retried), attach and detach, the agent's exit, freeze
// with a restart, stop, resume from the snapshot, and a restart of a
// stopped agent; every command line checked against smolvm's documented
// syntax, and the token's value nowhere but the sidecar.
func TestLifeCycle(t *testing.T) {
	needBase(t)
	ctx := t.Context()
	w := newWorld(t)
	b := w.backend(t)
	slug := newSlug("life")
	p, raw := shellPlan(t, slug)
	w.cleanup(t, b, slug)
	// Written by the launch's lanes at once.
	progress := &lockedWriter{w: &bytes.Buffer{}}
	o := w.launchOptions(t, p, raw)
	o.Progress = progress
	o.Trace = progress
	start := time.Now()
	rec, err := backend.Launch(ctx, b, o)
	t.Logf("launched in %v\n%s", time.Since(start), progress.String())
	if err != nil {
		t.Fatalf("Launch: %v\n%s", err, progress.String())
	}
	if rec.AgentContainer != names.Agent(slug) || rec.SidecarContainer != names.Sidecar(slug) || !strings.HasPrefix(rec.AgentImage, "bb-agent-shell:") {
		t.Errorf("record = %+v", rec)
	}

	ms := w.fake.Machines(t)
	agent, sidecar := ms[names.Agent(slug)], ms[names.Sidecar(slug)]
	if agent == nil || sidecar == nil {
		t.Fatalf("machines = %v", slices.Collect(maps.Keys(ms)))
	}
	// The isolation: one network of the bottle's own, the agent with no
	// network of its own and an egress policy naming only the sidecar.
	if agent.Network != plan.SmolvmNetwork(slug) || sidecar.Network != agent.Network {
		t.Errorf("networks: agent %q, sidecar %q", agent.Network, sidecar.Network)
	}
	if !slices.Equal(agent.AllowHosts, []string{plan.SmolvmSidecarAddress}) || sidecar.Address != plan.SmolvmSidecarAddress || agent.DNS != "127.0.0.1" || sidecar.DNS != "" {
		t.Errorf("the agent allows %q; the sidecar is at %q", agent.AllowHosts, sidecar.Address)
	}
	for _, m := range []*smolvmtest.Machine{agent, sidecar} {
		if m.Labels[names.LabelSlug] != slug || m.Labels[names.LabelAgent] != "tester" || m.Labels[names.LabelTest] != "1" {
			t.Errorf("%s labels = %v", m.Name, m.Labels)
		}
	}
	if agent.Labels[names.LabelRole] != names.RoleAgent || sidecar.Labels[names.LabelRole] != names.RoleEgress {
		t.Errorf("roles: %v, %v", agent.Labels, sidecar.Labels)
	}
	if agent.Cpus != 2 || agent.Mem != 4096 || sidecar.Cpus != 1 || sidecar.Mem != 256 {
		t.Errorf("resources: agent %d/%d, sidecar %d/%d", agent.Cpus, agent.Mem, sidecar.Cpus, sidecar.Mem)
	}
	// The token: a reference on the sidecar, its value in the sidecar's
	// workload and nowhere else.
	if sidecar.SecretEnv["EGRESS_TOKEN_GITHUB"] != "EGRESS_TOKEN_GITHUB" || !slices.Contains(sidecar.WorkloadEnv, "EGRESS_TOKEN_GITHUB="+testToken) {
		t.Errorf("the sidecar's secrets %v, workload env %q", sidecar.SecretEnv, sidecar.WorkloadEnv)
	}
	if slices.ContainsFunc(sidecar.WorkloadEnv, func(kv string) bool { return strings.HasPrefix(kv, "EGRESS_TOKEN_CANARY="+p.Canary) }) == false {
		t.Error("the sidecar does not know the canary")
	}
	assertNoToken(t, w, slug)
	for _, c := range w.fake.Calls(t) {
		tokened := slices.ContainsFunc(c.Env, func(k string) bool { return strings.HasPrefix(k, "EGRESS_TOKEN_") })
		if tokened != (c.Line() == "machine start --name "+names.Sidecar(slug)) {
			t.Errorf("smolvm %s ran with %q", c.Line(), c.Env)
		}
		// Nor the host variable the plan reads the token from.
		if slices.Contains(c.Env, "BB_TEST_GITHUB_TOKEN") {
			t.Errorf("smolvm %s ran with the token's host variable", c.Line())
		}
	}
	if strings.Contains(progress.String(), testToken) {
		t.Error("the token's value is in the launch's progress")
	}
	// Provisioning: bb.egress, the CA, the agent's files as its own.
	hosts := agent.Files["/etc/hosts"]
	if hosts == nil || !strings.Contains(string(w.fake.Data(t, hosts)), plan.SmolvmSidecarAddress+"\tbb.egress") || hosts.UID != 0 {
		t.Errorf("/etc/hosts = %+v", hosts)
	}
	ca, _ := os.ReadFile(w.store.EgressDir(slug) + "/" + state.CACertFile)
	if f := agent.Files[backend.SystemCABundle]; f == nil || !bytes.Contains(w.fake.Data(t, f), bytes.TrimSpace(ca)) {
		t.Error("the system bundle lacks the bottle's CA")
	}
	if f := agent.Files["/home/agent/.bb/prompt.md"]; f == nil || string(w.fake.Data(t, f)) != "look around" || f.UID != 1000 {
		t.Errorf("the prompt = %+v", f)
	}
	if f := agent.Files["/home/agent/.bb"]; f == nil || !f.Dir || f.UID != 1000 {
		t.Errorf("~/.bb = %+v: the agent's own folder", f)
	}
	if f := agent.Files[GuestHelper]; f == nil || f.Mode != 0o755 || f.UID != 0 {
		t.Errorf("the guest helper = %v", f)
	}
	if agent.Holder == nil || !agent.Holder.Running || !agent.Holder.Started || !slices.Equal(agent.Holder.Command, p.Agent.Command) || agent.Holder.UID != 1000 {
		t.Errorf("the agent's holder = %+v", agent.Holder)
	}

	// Status, and exec as the agent, a 137 on the first try retried.
	st, err := b.Status(ctx, slug)
	if err != nil || st.Agent != backend.StatusRunning || !st.SidecarRunning || st.AgentName != names.Agent(slug) {
		t.Errorf("Status = %+v, %v", st, err)
	}
	var out bytes.Buffer
	if code, err := b.Exec(ctx, slug, []string{"id", "-u"}, &out, &out); err != nil || code != 0 || out.String() != "1000\n" {
		t.Errorf("exec id -u = %d, %v, %q", code, err, out.String())
	}
	if code, err := b.Exec(ctx, slug, []string{"sh", "-c", "exit 3"}, &out, &out); err != nil || code != 3 {
		t.Errorf("exec exit 3 = %d, %v", code, err)
	}

	// Attach: the agent's terminal, detached from and joined again.
	a, ok := b.(backend.Attacher)
	if !ok {
		t.Fatal("not an Attacher")
	}
	ptmx, tty := ptytest.Open(t, 80, 24)
	term, err := terminal.New(tty)
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.Attach(ctx, slug)
	if err != nil {
		t.Fatal(err)
	}
	code, detached, err := runSession(t, s, term, ptmx, tty, "hello\r\x10\x11")
	if err != nil || !detached {
		t.Fatalf("Run = %d, %v, %v; want detached", code, detached, err)
	}
	s, err = a.Attach(ctx, slug)
	if err != nil {
		t.Fatal(err)
	}
	code, detached, err = runSession(t, s, term, ptmx, tty, "exit 5\r")
	if err != nil || detached || code != 5 {
		t.Fatalf("Run = %d, %v, %v; want the agent's 5", code, detached, err)
	}
	if _, err := a.Attach(ctx, slug); err == nil || !strings.Contains(err.Error(), "exited with status 5") {
		t.Errorf("attaching to an agent that exited: %v", err)
	}

	// Freeze: the running machine stopped, packed, started, its agent
	// started again.
	fr := b.(backend.Freezable).Freezer()
	if !fr.NeedsStop() {
		t.Error("the freezer packs a running machine")
	}
	running, err := fr.Running(ctx)
	if err != nil || !slices.Equal(running, []string{slug}) {
		t.Errorf("Running = %q, %v", running, err)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var snaps []string
	for i := range 3 {
		frec, err := freeze.Commit(ctx, w.store, fr, slug, freeze.Options{Keep: 2, Now: func() time.Time { return now.Add(time.Duration(i) * time.Minute) }})
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		snaps = append(snaps, frec.Image)
	}
	md := mustMetadata(t, w.store, slug)
	if len(md.Images) != 2 || md.Images[1].Ref != snaps[2] {
		t.Errorf("metadata images = %+v, want the 2 newest of %q", md.Images, snaps)
	}
	for i, ref := range snaps {
		ok, err := fr.Exists(ctx, ref)
		if err != nil || ok != (i > 0) {
			t.Errorf("Exists(%s) = %v, %v", ref, ok, err)
		}
	}
	agent = w.fake.Machines(t)[names.Agent(slug)]
	if agent.State != "running" || agent.Holder == nil || !agent.Holder.Running {
		t.Errorf("after the commits: %s, holder %+v", agent.State, agent.Holder)
	}

	// Stop, then resume: from the newest snapshot, with what it held.
	if err := backend.StopLocked(ctx, b, w.store, slug); err != nil {
		t.Fatal(err)
	}
	w.assertGone(t, slug)
	if st, _ := b.Status(ctx, slug); st.Agent != backend.StatusMissing || st.Leftovers {
		t.Errorf("Status after stop = %+v", st)
	}
	md = mustMetadata(t, w.store, slug)
	rec, err = backend.Resume(ctx, b, w.launchOptions(t, p, raw), md, false)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	agent = w.fake.Machines(t)[names.Agent(slug)]
	if rec.AgentImage != snaps[2] || agent.From == "" || !strings.HasSuffix(agent.From, ".smolmachine") {
		t.Errorf("resumed from %q (%s), want %s", agent.From, rec.AgentImage, snaps[2])
	}
	if agent.AllowHosts == nil || agent.Network != plan.SmolvmNetwork(slug) {
		t.Errorf("the resumed agent: network %q, allows %q", agent.Network, agent.AllowHosts)
	}

	// A stopped agent machine restarts with what it holds, its sidecar too.
	for _, n := range []string{names.Agent(slug), names.Sidecar(slug)} {
		if err := w.fake.Run(t, nil, "machine", "stop", "--name", n); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := b.Status(ctx, slug); st.Agent != backend.StatusStopped {
		t.Errorf("Status of a stopped machine = %+v", st)
	}
	if _, err := b.Exec(ctx, slug, []string{"true"}, &out, &out); !errors.Is(err, backend.ErrNotRunning) || exit.CodeOf(err) != exit.CodeUsage {
		t.Errorf("exec in a stopped bottle: %v", err)
	}
	rec, err = backend.Resume(ctx, b, w.launchOptions(t, p, raw), md, false)
	if err != nil {
		t.Fatalf("Resume (restart): %v", err)
	}
	if rec.AgentContainer != names.Agent(slug) || !strings.HasPrefix(rec.AgentImage, "local-archive:") && rec.AgentImage != "" {
		t.Errorf("the restart's record = %+v", rec)
	}
	ms = w.fake.Machines(t)
	if a, s := ms[names.Agent(slug)], ms[names.Sidecar(slug)]; a.State != "running" || s.State != "running" || a.Holder == nil || !a.Holder.Running || s.Address != plan.SmolvmSidecarAddress {
		t.Errorf("after the restart: agent %s (holder %+v), sidecar %s at %s", a.State, a.Holder, s.State, s.Address)
	}
	assertNoToken(t, w, slug)

	t.Logf("state %d bytes, %d calls", len(w.fake.State(t)), len(w.fake.Calls(t)))
	// Every command line bb ran is smolvm's documented syntax.
	for _, f := range w.fake.CheckSyntax(t) {
		t.Logf("%-14s %s %s", f.Long, syntax.Release, f.Cite)
	}
}

// assertNoToken checks that the token's value is in no command line, in
// nothing smolvm keeps of the agent (its record, env, files, processes),
// and in the bottle's state folder.
func assertNoToken(t *testing.T, w *world, slug string) {
	t.Helper()
	if bytes.Contains(w.fake.Log(t), []byte(testToken)) {
		t.Error("the token's value is in a smolvm command line")
	}
	agent := w.fake.Machines(t)[names.Agent(slug)]
	if agent != nil {
		for _, check := range [][]string{agent.Env, agent.WorkloadEnv} {
			if slices.ContainsFunc(check, func(kv string) bool { return strings.Contains(kv, testToken) }) {
				t.Error("the token's value is in the agent's environment")
			}
		}
		for p, f := range agent.Files {
			if f != nil && bytes.Contains(w.fake.Data(t, f), []byte(testToken)) {
				t.Errorf("the token's value is in the agent's %s", p)
			}
		}
		for _, pr := range agent.Procs {
			if strings.Contains(strings.Join(pr.Env, " "), testToken) {
				t.Error("the token's value is in an agent process's environment")
			}
		}
	}
	filepath.WalkDir(w.store.BottleDir(slug), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(testToken)) {
				t.Errorf("the token's value is in %s", p)
			}
		}
		return nil
	})
}

// runSession runs s on term, typing keys once the terminal is raw (before,
// its line discipline would take Ctrl-Q for flow control).
func runSession(t *testing.T, s backend.Session, term *terminal.Terminal, ptmx, tty *os.File, keys string) (int, bool, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if tio, err := ptytest.Termios(tty); err == nil && tio.Lflag&unix.ICANON == 0 {
				ptmx.Write([]byte(keys))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return s.Run(ctx, term)
}

func mustMetadata(t *testing.T, st *state.Store, slug string) state.Metadata {
	t.Helper()
	md, err := st.ReadMetadata(slug)
	if err != nil {
		t.Fatal(err)
	}
	return md
}
