package backend

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/trust"
)

// withWorkspace replans p on workspace ws, made from files.
func withWorkspace(t *testing.T, p *plan.Plan, ws string, files ...manifest.SourceFile) []byte {
	t.Helper()
	p.Agent.Workspace = ws
	p.Manifest.Files = files
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// A manifest in the workspace, which the last agent there could have
// written, is obeyed only once its exact content is trusted: asked on a
// terminal, refused without one, asked again when it changes.
func TestLaunchTrust(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	ws := t.TempDir()
	mf := filepath.Join(ws, "bb.yaml")
	content := []byte("agents: {}\n")
	os.WriteFile(mf, content, 0o644)
	file := manifest.SourceFile{Path: mf, SHA256: trust.Sum(content)}

	p, _ := memPlan(t, "mem-t001")
	raw := withWorkspace(t, p, ws, file)
	_, err := Launch(t.Context(), newMem(), memOptions(t, p, raw, st))
	if err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "you have not trusted it") ||
		!strings.Contains(strings.Join(exit.Hints(err), " "), "bb-manifest --trust") {
		t.Fatalf("an untrusted manifest in the workspace, no terminal: %v %q", err, exit.Hints(err))
	}
	if st.Exists("mem-t001") {
		t.Error("a refused launch left its state")
	}

	// A person at a terminal is shown it, and says no, then yes.
	var shown string
	o := memOptions(t, p, raw, st)
	o.Confirm = func(show, q string) (bool, error) { shown = show; return false, nil }
	if _, err := Launch(t.Context(), newMem(), o); err == nil || exit.CodeOf(err) != exit.CodeUsage {
		t.Fatalf("a no: %v", err)
	}
	if !strings.Contains(shown, "+ agents: {}") || !strings.Contains(shown, "where an agent can write it") {
		t.Errorf("shown: %q", shown)
	}
	o.Confirm = func(string, string) (bool, error) { return true, nil }
	if _, err := Launch(t.Context(), newMem(), o); err != nil {
		t.Fatalf("a yes: %v", err)
	}
	// Trusted: the next bottle from it is not asked about it.
	p2, _ := memPlan(t, "mem-t002")
	raw2 := withWorkspace(t, p2, ws, file)
	o2 := memOptions(t, p2, raw2, st)
	o2.Confirm = func(string, string) (bool, error) { t.Error("asked again about trusted content"); return false, nil }
	if _, err := Launch(t.Context(), newMem(), o2); err != nil {
		t.Fatalf("trusted: %v", err)
	}
	// The agent rewrites it: refused again, and shown as a change.
	changed := []byte("agents: {}\nbottles: {wide: {egress: {routes: [{host: evil.example.com}]}}}\n")
	os.WriteFile(mf, changed, 0o644)
	p3, _ := memPlan(t, "mem-t003")
	raw3 := withWorkspace(t, p3, t.TempDir(), manifest.SourceFile{Path: mf, SHA256: trust.Sum(changed)})
	_, err = Launch(t.Context(), newMem(), memOptions(t, p3, raw3, st))
	if err == nil || !strings.Contains(err.Error(), "changed since you trusted it") {
		t.Errorf("a rewritten manifest in another bottle's workspace: %v", err)
	}
	// A manifest outside every workspace needs no trust.
	out := filepath.Join(t.TempDir(), "bb.yaml")
	os.WriteFile(out, changed, 0o644)
	p4, _ := memPlan(t, "mem-t004")
	raw4 := withWorkspace(t, p4, t.TempDir(), manifest.SourceFile{Path: out, SHA256: trust.Sum(changed)})
	if _, err := Launch(t.Context(), newMem(), memOptions(t, p4, raw4, st)); err != nil {
		t.Errorf("a manifest outside the workspaces: %v", err)
	}
}

// Two running bottles on one folder are told of; one folder inside a
// running bottle's is refused: its agent could replace it.
func TestLaunchSharedWorkspace(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	outer := t.TempDir()
	inner := filepath.Join(outer, "sub")
	os.Mkdir(inner, 0o755)
	b := newMem()
	pa, _ := memPlan(t, "mem-s001")
	if _, err := Launch(t.Context(), b, memOptions(t, pa, withWorkspace(t, pa, outer), st)); err != nil {
		t.Fatal(err)
	}
	pb, _ := memPlan(t, "mem-s002")
	_, err := Launch(t.Context(), b, memOptions(t, pb, withWorkspace(t, pb, inner), st))
	if err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "lie one in the other") {
		t.Errorf("inside a running bottle's workspace: %v", err)
	}
	pc, _ := memPlan(t, "mem-s003")
	var said bytes.Buffer
	o := memOptions(t, pc, withWorkspace(t, pc, outer), st)
	o.Progress = &said
	if _, err := Launch(t.Context(), b, o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(said.String(), "bottle mem-s001 runs on the same workspace") {
		t.Errorf("the shared folder is not said: %q", said.String())
	}
	// Once the outer ones stop, the inner folder is free.
	b.running = map[string]bool{}
	if _, err := Launch(t.Context(), b, memOptions(t, pb, withWorkspace(t, pb, inner), st)); err != nil {
		t.Errorf("inside a stopped bottle's workspace: %v", err)
	}
}

// A resume mounts the folder of the first launch only while it is that
// folder: another put in its place, or a link, is refused.
func TestResumeReplacedWorkspace(t *testing.T) {
	for _, how := range []string{"folder", "link"} {
		t.Run(how, func(t *testing.T) {
			st := &state.Store{Dir: t.TempDir()}
			parent := t.TempDir()
			ws := filepath.Join(parent, "ws")
			os.Mkdir(ws, 0o755)
			p, _ := memPlan(t, "mem-r001")
			raw := withWorkspace(t, p, ws)
			b := newMem()
			if _, err := Launch(t.Context(), b, memOptions(t, p, raw, st)); err != nil {
				t.Fatal(err)
			}
			b.running = map[string]bool{}
			os.Rename(ws, ws+".moved")
			if how == "folder" {
				os.Mkdir(ws, 0o755)
			} else {
				os.Symlink(t.TempDir(), ws)
			}
			o := memOptions(t, p, raw, st)
			o.Resume = true
			_, err := Launch(t.Context(), b, o)
			if err == nil || exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "the workspace of the first launch") {
				t.Errorf("resume on a replaced workspace (%s): %v", how, err)
			}
		})
	}
}

// Folders of credentials are never mounted, named in the plan or not.
func TestLaunchRefusesCredentialFolders(t *testing.T) {
	home := t.TempDir()
	ssh := filepath.Join(home, ".ssh")
	os.Mkdir(ssh, 0o700)
	st := &state.Store{Dir: t.TempDir()}
	p, _ := memPlan(t, "mem-c001")
	raw := withWorkspace(t, p, ssh)
	o := memOptions(t, p, raw, st)
	o.Env = func(k string) string {
		return map[string]string{"MEM_TOKEN": "tok-for-the-sidecar-only", "HOME": home}[k]
	}
	if _, err := Launch(t.Context(), newMem(), o); err == nil || !strings.Contains(err.Error(), "~/.ssh") {
		t.Errorf("~/.ssh as the workspace: %v", err)
	}
}

// Every token that cannot be used is said at once, before anything is
// made: missing, too short for the sidecar to guard, or twice the same.
func TestLaunchTokensCheckedFirst(t *testing.T) {
	st := &state.Store{Dir: t.TempDir()}
	p, _ := memPlan(t, "mem-k001")
	p.Egress.Tokens = []plan.Token{{Name: "SHORT", Env: "T_SHORT"}, {Name: "MISSING", Env: "T_MISSING"},
		{Name: "ONE", Env: "T_ONE"}, {Name: "TWO", Env: "T_TWO"}}
	raw, _ := json.Marshal(p)
	o := memOptions(t, p, raw, st)
	o.Env = func(k string) string {
		return map[string]string{"T_SHORT": "abc", "T_ONE": "same-value-1234", "T_TWO": "same-value-1234"}[k]
	}
	b := newMem()
	_, err := Launch(t.Context(), b, o)
	if err == nil || exit.CodeOf(err) != exit.CodeUsage {
		t.Fatalf("Launch = %v", err)
	}
	for _, want := range []string{"3 tokens cannot be used", "token SHORT is 3 characters long", "T_MISSING is not set",
		"token TWO has the same value as token ONE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "abc") || strings.Contains(err.Error(), "same-value") {
		t.Errorf("the error shows a token's value: %v", err)
	}
	if len(b.steps) != 0 || st.Exists("mem-k001") {
		t.Errorf("something was made: %q", b.steps)
	}
}
