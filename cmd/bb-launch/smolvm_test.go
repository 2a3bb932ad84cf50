package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/backend/smolvm"
	"github.com/bb-bottles/bb/lib/backend/smolvm/smolvmtest"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/routes"
)

// bbLaunchEnv runs the command with env as the whole environment, listed
// too: the smolvm backend runs smolvm in it.
func bbLaunchEnv(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	s := cli.Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb,
		Env: func(k string) string { return env[k] },
		Environ: func() []string {
			var l []string
			for k, v := range env {
				l = append(l, k+"="+v)
			}
			return l
		}}
	code = cli.Run(t.Context(), newApp(), s, append([]string{"bb-launch"}, args...))
	return code, out.String(), errb.String()
}

func smolvmPlanJSON(t *testing.T, slug, tokenEnv string) string {
	t.Helper()
	canary, _ := plan.MintCanary(nil)
	m := &manifest.Manifest{Kind: manifest.Kind, Version: manifest.Version, Source: "test",
		Agent: manifest.Agent{Name: "tester", Template: "shell", Bottle: "dev"},
		Bottle: manifest.Bottle{Name: "dev", Workspace: t.TempDir(),
			Egress: manifest.Egress{Routes: []routes.Route{{Host: "allowed.test.invalid",
				Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB"}}}},
			Tokens: map[string]manifest.TokenSource{"GITHUB": {Env: tokenEnv}}}}
	p, err := plan.New(m, plan.Options{Slug: slug, Canary: canary, Backend: names.Smolvm})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// bb-launch end to end on smolvm (the fake; the agent image built by the
// real engine): launch detached, exec, ls, reload, stop, resume, stop
// --rm; the token's value only in the sidecar.
func TestSmolvmCommands(t *testing.T) {
	c := needEngine(t)
	fake := smolvmtest.New(t)
	labels := map[string]string{names.LabelTest: "1"}
	smolvm.AddLabels(labels)
	docker.AddLabels(labels)
	t.Cleanup(func() { smolvm.AddLabels(nil); docker.AddLabels(nil) })
	const token = "tok-2b7f-smolvm-not-in-the-agent"
	env := map[string]string{"BB_STATE_DIR": t.TempDir(), "BB_BASE_IMAGE": docker.BaseImage, "GH_TEST_TOKEN": token,
		"HOME": t.TempDir(), "PATH": os.Getenv("PATH"), smolvm.ToolEnv: fake.Bin, "SMOLVM_FAKE_DIR": fake.Dir}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		env["DOCKER_HOST"] = h
	}
	slug := "smolvm-cmd-a1"
	t.Cleanup(func() { bbLaunchEnv(t, env, "", "stop", slug) })

	code, out, errs := bbLaunchEnv(t, env, smolvmPlanJSON(t, slug, "GH_TEST_TOKEN"), "--detach", "--build-arg", "INSTALL_CLI=0")
	if code != 0 {
		t.Fatalf("launch: exit %d\n%s", code, errs)
	}
	var rec map[string]string
	err := json.Unmarshal([]byte(out), &rec)
	t.Cleanup(func() {
		c.ImageRemove(context.Background(), rec["agent_image"], client.ImageRemoveOptions{PruneChildren: true})
	})
	if err != nil || rec["backend"] != names.Smolvm || rec["agent_container"] != names.Agent(slug) ||
		!strings.HasPrefix(rec["agent_image"], "bb-agent-shell:") {
		t.Fatalf("launch record %q: %v", out, err)
	}
	if code, out, _ := bbLaunchEnv(t, env, "", "exec", slug, "--", "id", "-u"); code != 0 || out != "1000\n" {
		t.Errorf("exec: exit %d, %q", code, out)
	}
	if code, _, _ := bbLaunchEnv(t, env, "", "exec", slug, "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exec's status: %d, want 7", code)
	}
	code, out, _ = bbLaunchEnv(t, env, "", "ls", "--format", "json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list) != 1 || list[0]["status"] != "running" || list[0]["backend"] != names.Smolvm {
		t.Errorf("ls: exit %d, %s", code, out)
	}
	// The sidecar watches its routes file: smolvm cannot signal it.
	if code, _, errs := bbLaunchEnv(t, env, "", "reload", slug); code != 1 || !strings.Contains(errs, "watching the file") {
		t.Errorf("reload: exit %d %s", code, errs)
	}
	if code, _, errs := bbLaunchEnv(t, env, "", "resume", slug); code != 2 || !strings.Contains(errs, "is running") {
		t.Errorf("resume of a running bottle: exit %d %s", code, errs)
	}
	if bytes.Contains(fake.Log(t), []byte(token)) || bytes.Contains(fake.State(t), []byte(token)) != true {
		// In the state only as the sidecar's workload environment.
		t.Error("the token's value is in a smolvm command line, or the sidecar lacks it")
	}
	if a := fake.Machines(t)[names.Agent(slug)]; strings.Contains(strings.Join(a.Env, " "), token) {
		t.Error("the token's value is in the agent's environment")
	}

	if code, _, errs := bbLaunchEnv(t, env, "", "stop", slug); code != 0 {
		t.Fatalf("stop: exit %d %s", code, errs)
	}
	if len(fake.Machines(t)) != 0 {
		t.Errorf("stop left machines: %v", fake.Machines(t))
	}
	if code, _, _ := bbLaunchEnv(t, env, "", "exec", slug, "--", "true"); code != 2 {
		t.Errorf("exec in a stopped bottle: exit %d, want 2", code)
	}
	delete(env, "BB_BASE_IMAGE")
	code, out, errs = bbLaunchEnv(t, env, "", "resume", slug, "--detach")
	if code != 0 || !strings.Contains(errs, "resuming bottle "+slug+" from its image "+rec["agent_image"]) {
		t.Fatalf("resume: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, _ := bbLaunchEnv(t, env, "", "exec", slug, "true"); code != 0 {
		t.Errorf("exec after resume: exit %d", code)
	}
	if code, _, errs := bbLaunchEnv(t, env, "", "stop", "--rm", slug); code != 0 || !strings.Contains(errs, "removed") {
		t.Errorf("stop --rm: exit %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(env["BB_STATE_DIR"], slug)); !os.IsNotExist(err) {
		t.Errorf("stop --rm left the state: %v", err)
	}
	if len(fake.Machines(t)) != 0 {
		t.Errorf("stop --rm left machines: %v", fake.Machines(t))
	}
}
