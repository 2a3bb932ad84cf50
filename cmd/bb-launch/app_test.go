package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/routes"
)

// bbLaunch runs the command with env and stdin, as main would.
func bbLaunch(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	s := cli.Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb,
		Env: func(k string) string { return env[k] }, Environ: func() []string { return nil }}
	code = cli.Run(t.Context(), newApp(), s, append([]string{"bb-launch"}, args...))
	return code, out.String(), errb.String()
}

// needEngine skips t without an engine and the offline base, unless
// BB_REQUIRE_DOCKER=1.
func needEngine(t *testing.T) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := docker.Connect(ctx)
	if err == nil {
		if ok, ierr := docker.ImageExists(ctx, c, docker.BaseImage); ierr != nil || !ok {
			c.Close()
			err = cli.Usagef("the base image %s is absent: run scripts/base-image", docker.BaseImage)
		}
	}
	if err != nil {
		if os.Getenv("BB_REQUIRE_DOCKER") == "1" {
			t.Fatalf("BB_REQUIRE_DOCKER=1: %v", err)
		}
		t.Skipf("no docker engine with %s (run scripts/base-image; BB_REQUIRE_DOCKER=1 fails instead): %v", docker.BaseImage, err)
	}
	t.Cleanup(func() { c.Close() })
	// bb-launch puts the bb-egress beside it in the sidecar's image.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(exe), "bb-egress")
	if _, err := os.Stat(bin); err != nil {
		if err := backend.BuildSidecarBinary(t.Context(), "../..", "linux", runtime.GOARCH, bin); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func shellPlanJSON(t *testing.T, slug, tokenEnv string) string {
	t.Helper()
	canary, _ := plan.MintCanary(nil)
	m := &manifest.Manifest{Kind: manifest.Kind, Version: manifest.Version, Source: "test",
		Agent: manifest.Agent{Name: "tester", Template: "shell", Bottle: "dev"},
		Bottle: manifest.Bottle{Name: "dev", Workspace: t.TempDir(),
			Egress: manifest.Egress{Routes: []routes.Route{{Host: "allowed.test.invalid",
				Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB"}}}},
			Tokens: map[string]manifest.TokenSource{"GITHUB": {Env: tokenEnv}}}}
	p, err := plan.New(m, plan.Options{Slug: slug, Canary: canary})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// The commands end to end on the real engine: launch detached, exec, ls,
// reload, stop, resume, stop --rm; and a failed launch.
func TestCommands(t *testing.T) {
	c := needEngine(t)
	env := map[string]string{"BB_STATE_DIR": t.TempDir(), "BB_BASE_IMAGE": docker.BaseImage,
		"GH_TEST_TOKEN": "tok-not-in-the-agent", "HOME": t.TempDir()}
	slug := "cmd-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))[:8] + "-a1"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		docker.Stop(ctx, c, slug)
	})

	code, out, errs := bbLaunch(t, env, shellPlanJSON(t, slug, "GH_TEST_TOKEN"), "--detach", "--build-arg", "INSTALL_CLI=0")
	if code != 0 {
		t.Fatalf("launch: exit %d\n%s", code, errs)
	}
	var rec map[string]string
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec["slug"] != slug || rec["backend"] != "docker" ||
		rec["agent_container"] != names.Agent(slug) || rec["sidecar_container"] != names.Sidecar(slug) ||
		!strings.HasPrefix(rec["agent_image"], "bb-agent-shell:") || !strings.HasPrefix(rec["sidecar_image"], "bb-egress:") {
		t.Fatalf("launch record %q: %v", out, err)
	}
	// The images are this test's (labelled bb.test=1); one still in use
	// by another test stays.
	t.Cleanup(func() {
		for _, ref := range []string{rec["agent_image"], rec["sidecar_image"]} {
			c.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{PruneChildren: true})
		}
	})

	if code, out, _ := bbLaunch(t, env, "", "exec", slug, "--", "sh", "-c", "echo out; echo err >&2; exit 7"); code != 7 || out != "out\n" {
		t.Errorf("exec: exit %d, stdout %q; want 7, out", code, out)
	}
	if code, out, _ := bbLaunch(t, env, "", "exec", slug, "id", "-un"); code != 0 || out != "agent\n" {
		t.Errorf("exec id -un: exit %d, %q", code, out)
	}
	code, out, _ = bbLaunch(t, env, "", "ls", "--format", "json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list) != 1 ||
		list[0]["slug"] != slug || list[0]["status"] != "running" || list[0]["images"] != 0.0 {
		t.Errorf("ls: exit %d, %s", code, out)
	}
	if code, out, _ := bbLaunch(t, env, "", "ls", "--format", "table"); code != 0 || !strings.Contains(out, slug) ||
		!strings.Contains(out, "running") || !strings.HasPrefix(out, "SLUG") {
		t.Errorf("ls table: exit %d\n%s", code, out)
	}
	if code, _, errs := bbLaunch(t, env, "", "reload", slug); code != 0 {
		t.Errorf("reload: exit %d %s", code, errs)
	}
	if code, _, errs := bbLaunch(t, env, "", "resume", slug); code != 2 || !strings.Contains(errs, "is running") {
		t.Errorf("resume of a running bottle: exit %d %s", code, errs)
	}

	if code, _, errs := bbLaunch(t, env, "", "stop", slug); code != 0 {
		t.Fatalf("stop: exit %d %s", code, errs)
	}
	if code, _, _ := bbLaunch(t, env, "", "stop", slug); code != 0 {
		t.Errorf("a second stop: exit %d", code)
	}
	if code, _, _ := bbLaunch(t, env, "", "reload", slug); code != 1 {
		t.Errorf("reload of a stopped bottle: exit %d, want 1", code)
	}
	if code, _, _ := bbLaunch(t, env, "", "exec", slug, "--", "true"); code != 2 {
		t.Errorf("exec in a stopped bottle: exit %d, want 2", code)
	}
	if _, out, _ := bbLaunch(t, env, "", "ls", "--json"); !strings.Contains(out, `"status": "stopped"`) {
		t.Errorf("ls after stop:\n%s", out)
	}

	// Resume needs neither the first launch's flags nor its variables.
	delete(env, "BB_BASE_IMAGE")
	code, out, errs = bbLaunch(t, env, "", "resume", slug, "--detach")
	if code != 0 || !strings.Contains(errs, "resuming bottle "+slug+" from its image "+rec["agent_image"]) ||
		!strings.Contains(out, `"slug": "`+slug+`"`) {
		t.Fatalf("resume: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, _ := bbLaunch(t, env, "", "exec", slug, "true"); code != 0 {
		t.Errorf("exec after resume: exit %d", code)
	}
	if code, _, errs := bbLaunch(t, env, "", "stop", "--rm", slug); code != 0 || !strings.Contains(errs, "removed") {
		t.Errorf("stop --rm: exit %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(env["BB_STATE_DIR"], slug)); !os.IsNotExist(err) {
		t.Errorf("stop --rm left the state: %v", err)
	}

	// A launch that fails leaves nothing, and says which step and why.
	bad := slug[:len(slug)-1] + "2"
	code, out, errs = bbLaunch(t, env, shellPlanJSON(t, bad, "GH_TEST_NO_SUCH_VAR"), "--detach")
	if code != 2 || out != "" || !strings.Contains(errs, "bb-launch: reading the tokens: token GITHUB: the host variable GH_TEST_NO_SUCH_VAR is not set\nhint: export GH_TEST_NO_SUCH_VAR") {
		t.Errorf("launch without the token: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(env["BB_STATE_DIR"], bad)); !os.IsNotExist(err) {
		t.Errorf("the failed launch left its state: %v", err)
	}
	left, _, err := docker.Leftovers(t.Context(), c, bad)
	if err != nil || left {
		t.Errorf("the failed launch left containers or networks (%v)", err)
	}
}
