package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/backend/docker/freezetest"
	"github.com/bb-bottles/bb/lib/backend/smolvm"
	"github.com/bb-bottles/bb/lib/backend/smolvm/smolvmtest"
	"github.com/bb-bottles/bb/lib/names"
)

// TestCommitSmolvmBottle runs the commands, built, on a smolvm bottle (the
// fake smolvm; the agent image built by the real engine): bb-launch starts
// it, bb-freeze commit refuses to stop it without a terminal or --stop, then
// packs it twice keeping one, and bb-launch resume boots the newest pack
// with what the agent wrote.
func TestCommitSmolvmBottle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and launches a bottle")
	}
	c := freezetest.Engine(t)
	fake := smolvmtest.New(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator),
		"../bb-manifest", "../bb-plan", "../bb-launch", "../bb-egress", "../bb-freeze")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // the sidecar is a static bb-egress
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the commands: %v\n%s", err, out)
	}
	before := imageRefs(t, c)
	stateDir := t.TempDir()
	env := append(os.Environ(), "BB_STATE_DIR="+stateDir, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		smolvm.ToolEnv+"="+fake.Bin, "SMOLVM_FAKE_DIR="+fake.Dir)
	run := func(script string) (string, string, int) {
		t.Helper()
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
	}
	sh := func(script string) string {
		t.Helper()
		out, errs, code := run(script)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", script, code, errs)
		}
		return out
	}

	out := sh("bb-manifest --file ../../examples/bb.yaml demo | bb-plan --backend smolvm | bb-launch --detach --build-arg BASE=bb-base:bookworm")
	var launched struct {
		Slug, Backend string
		AgentImage    string `json:"agent_image"`
	}
	if err := json.Unmarshal([]byte(out), &launched); err != nil || launched.Slug == "" || launched.Backend != names.Smolvm {
		t.Fatalf("launch record %q: %v", out, err)
	}
	t.Cleanup(func() { removeIfNew(t, c, before, launched.AgentImage) })
	slug := launched.Slug
	t.Cleanup(func() {
		if _, errs, code := run("bb-launch stop --rm " + slug); code != 0 {
			t.Errorf("bb-launch stop: exit %d\n%s", code, errs)
		}
		if ms := fake.Machines(t); len(ms) != 0 {
			t.Errorf("machines left: %v", ms)
		}
	})
	// What the agent writes in its home is in its machine, and so in the
	// pack (the fake's exec writes no files: the test puts one there as
	// smolvm's cp would).
	note := filepath.Join(t.TempDir(), "note")
	os.WriteFile(note, []byte("kept\n"), 0o644)
	if err := fake.Run(t, nil, "machine", "cp", "--uid", "1000", "--gid", "1000", note, names.Agent(slug)+":/home/agent/note.txt"); err != nil {
		t.Fatal(err)
	}

	// No terminal, no --stop: refused, nothing stopped.
	if _, errs, code := run("bb-freeze commit " + slug + " </dev/null"); code != 2 || !strings.Contains(errs, "pass --stop") {
		t.Errorf("commit without --stop: exit %d\n%s", code, errs)
	}
	if m := fake.Machines(t)[names.Agent(slug)]; m.State != "running" {
		t.Errorf("the refused commit left the machine %s", m.State)
	}
	var images []string
	for range 2 {
		out := sh("bb-freeze commit --stop --keep 1 " + slug)
		var rec struct{ Image string }
		if err := json.Unmarshal([]byte(out), &rec); err != nil || !strings.HasPrefix(rec.Image, "bb/"+slug+":") {
			t.Fatalf("commit record %q: %v", out, err)
		}
		images = append(images, rec.Image)
		// A second within one second would share a tag.
		if len(images) == 1 {
			sh("sleep 1")
		}
	}
	if m := fake.Machines(t)[names.Agent(slug)]; m.State != "running" || m.Holder == nil || !m.Holder.Running {
		t.Errorf("after the commits the machine is %s, its agent %+v", m.State, m.Holder)
	}
	var list []struct{ Image string }
	if err := json.Unmarshal([]byte(sh("bb-freeze ls "+slug)), &list); err != nil || len(list) != 1 || list[0].Image != images[1] {
		t.Errorf("bb-freeze ls = %+v, %v; want only %s (--keep 1)", list, err, images[1])
	}
	packs, _ := filepath.Glob(filepath.Join(stateDir, slug, "images", "*"+smolvm.SnapshotExt))
	if len(packs) != 2 { // the newest, and latest beside it
		t.Errorf("packs in the state: %q", packs)
	}

	sh("bb-launch stop " + slug)
	if _, errs, code := run("bb-launch resume --detach " + slug); code != 0 || !strings.Contains(errs, "from its snapshot "+images[1]) {
		t.Fatalf("resume: exit %d\n%s", code, errs)
	}
	if got := sh("bb-launch exec " + slug + " -- cat /home/agent/note.txt"); got != "kept\n" {
		t.Errorf("after resume the note = %q, want kept", got)
	}
}
