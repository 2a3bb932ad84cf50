package macoscontainer

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/guest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/workspace"
)

// git runs the real git client in dir, as a person would.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=person", "GIT_AUTHOR_EMAIL=p@example.invalid", "GIT_COMMITTER_NAME=person", "GIT_COMMITTER_EMAIL=p@example.invalid"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %q in %s: %v\n%s", args, dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The bottle's own git repository: a volume labelled as the bottle's, made
// at the first launch and seeded by the agent's init (the spec carries the
// seed, the folder given to the agent), mounted over <workdir>/.git with
// the person's .git read-only beside it; its branches come out as a
// bundle from a sandbox (container run --rm, no network) that real git
// reads; stop --rm removes it, and the bottle's snapshots.
func TestGitRepository(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	bt := newBottleTest(t, "git-a1b2")
	ws := t.TempDir()
	git(t, ws, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(ws, "README"), []byte("the person's\n"), 0o644)
	git(t, ws, "add", "README")
	git(t, ws, "commit", "-q", "-m", "the person's first")
	bt.p.Agent.Workspace = ws
	bt.raw, _ = json.Marshal(bt.p)
	ctx := t.Context()
	if _, err := backend.Launch(ctx, bt.b, bt.options(t)); err != nil {
		t.Fatal(err)
	}
	vol := names.GitVolume(bt.slug)
	vs, _ := DecodeVolumes([]byte(bt.f.run(t, "volume", "list", "--format", "json")))
	if len(vs) != 1 || vs[0].Name != vol || vs[0].Labels[names.LabelSlug] != bt.slug || vs[0].Labels[names.LabelRole] != names.RoleGit {
		t.Fatalf("volumes %+v", vs)
	}
	gitDir := path.Join(bt.p.Agent.Workdir, ".git")
	var spec guest.Spec
	b, _ := os.ReadFile(filepath.Join(bt.st.BottleDir(bt.slug), GuestFolder, "spec.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(spec.AgentDirs, []string{gitDir}) {
		t.Errorf("agent_dirs %v", spec.AgentDirs)
	}
	seeded := 0
	for _, f := range spec.Files {
		if strings.HasPrefix(f.Path, gitDir+"/") {
			seeded++
			if f.Owner != guest.OwnerAgent {
				t.Errorf("seed %s is %s's", f.Path, f.Owner)
			}
		}
	}
	if seeded == 0 {
		t.Error("the new repository has no seed")
	}
	var agentVolumes []string
	for _, c := range bt.f.calls(t) {
		if c[0] == "create" && slices.Contains(c, "--entrypoint") {
			for i, a := range c {
				if a == "--volume" {
					agentVolumes = append(agentVolumes, c[i+1])
				}
			}
		}
	}
	for _, want := range []string{vol + ":" + gitDir, filepath.Join(ws, ".git") + ":" + workspace.HostGitMount + ":ro"} {
		if !slices.Contains(agentVolumes, want) {
			t.Errorf("the agent's volumes %v lack %s", agentVolumes, want)
		}
	}

	// The agent's work, as its init and git would have left it in the
	// volume: a repository borrowing the person's objects, one branch more.
	repo := filepath.Join(bt.f.Dir, "vols", vol)
	git(t, ws, "clone", "-q", "--bare", ws, repo)
	work := t.TempDir()
	git(t, work, "clone", "-q", repo, ".")
	os.WriteFile(filepath.Join(work, "AGENT"), []byte("the agent's\n"), 0o644)
	git(t, work, "add", "AGENT")
	git(t, work, "commit", "-q", "-m", "the agent's work")
	git(t, work, "push", "-q", "origin", "HEAD:refs/heads/agent/fix")

	refs, err := backend.FetchGit(ctx, bt.b, bt.st, bt.p, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) == 0 {
		t.Fatal("no branch fetched")
	}
	if got := git(t, ws, "log", "--format=%s", "-1", backend.FetchedRefs(bt.slug)+"agent/fix"); got != "the agent's work" {
		t.Errorf("the fetched branch's tip: %q", got)
	}
	var run []string
	for _, c := range bt.f.calls(t) {
		if c[0] == "run" {
			run = c
		}
	}
	l := mustParse(t, run)
	if v, _ := l.Value("--network"); v != "none" || !l.Has("--rm") || !slices.Contains(l.Values("--volume"), vol+":"+agentRepo+":ro") {
		t.Errorf("the export's sandbox: %q", run)
	}

	// A snapshot, then stop --rm: the volume and the snapshot go.
	if _, err := freeze.Commit(ctx, bt.st, bt.b.Freezer(), bt.slug, freeze.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := backend.StopLocked(ctx, bt.b, bt.st, bt.slug); err != nil {
		t.Fatal(err)
	}
	if err := bt.b.Remove(ctx, bt.slug); err != nil {
		t.Fatal(err)
	}
	if vs, _ := DecodeVolumes([]byte(bt.f.run(t, "volume", "list", "--format", "json"))); len(vs) != 0 {
		t.Errorf("volumes after stop --rm: %+v", vs)
	}
	ims, _ := DecodeImages([]byte(bt.f.run(t, "image", "list", "--format", "json")))
	for _, im := range ims {
		if im.Labels[names.LabelRole] == names.RoleSnapshot {
			t.Errorf("a snapshot after stop --rm: %s", im.Name)
		}
	}
	bt.f.checkCalls(t)
}

// A launch that made the bottle's repository and then failed removes it.
func TestGitRepositoryUndone(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	bt := newBottleTest(t, "gitu-a1b2")
	ws := t.TempDir()
	git(t, ws, "init", "-q", "-b", "main")
	bt.p.Agent.Workspace = ws
	bt.raw, _ = json.Marshal(bt.p)
	bt.f.fault(t, map[string]any{"match": "create --name bot-bottle-gitu-a1b2 ", "exit": 1, "stderr": "Error: injected"})
	if _, err := backend.Launch(t.Context(), bt.b, bt.options(t)); err == nil {
		t.Fatal("the launch did not fail")
	}
	if vs, _ := DecodeVolumes([]byte(bt.f.run(t, "volume", "list", "--format", "json"))); len(vs) != 0 {
		t.Errorf("a failed launch left %+v", vs)
	}
}
