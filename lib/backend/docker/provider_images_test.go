package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/state"
)

// The claude and codex images, built on the offline base with their CLI
// install switched off (INSTALL_CLI=0: neither npm nor a registry is
// reachable here), and their bottles launched for real: everything but the
// CLI itself is checked inside — the user, the home, the provisioned files
// where the plan lists them, CA trust, the proxy, the canary, and the
// placeholder standing in for the host's token.
//
// Without the CLI the agent's command does not exist, so the plan's
// agent.command — the launcher's command override: a plan is data, edited
// like `jq '.agent.command = ["sleep", "infinity"]'` — keeps the container
// running for exec. Launched as planned (tested once, for claude), the
// launch succeeds — the engine's init (PID 1) starts — and the agent then
// exits 127 at once, its output naming the missing command; bb-launch
// attached would show that and pass 127 through.
func TestProviderImages(t *testing.T) {
	c := needBase(t)
	for _, tc := range []struct {
		template, tokenEnv, token, placeholderOf string
	}{
		{"claude", "ANTHROPIC_API_KEY", "sk-ant-test-9f8e7d6c5b4a-not-for-the-agent", "ANTHROPIC"},
		{"codex", "OPENAI_API_KEY", "sk-test-1a2b3c4d5e6f-not-for-the-agent", "OPENAI"},
	} {
		t.Run(tc.template, func(t *testing.T) {
			ctx := t.Context()
			slug := newSlug(tc.template)
			p, raw := providerPlan(t, tc.template, slug, []string{"sleep", "infinity"})
			st := &state.Store{Dir: t.TempDir()}
			cleanupBottle(t, c, slug)
			o := launchOptions(t, p, raw, st)
			o.Env = func(k string) string {
				if k == tc.tokenEnv {
					return tc.token
				}
				return testEnv(k)
			}
			if _, err := Launch(ctx, c, o); err != nil {
				t.Fatalf("launch: %v", err)
			}
			sh := func(script string) string {
				t.Helper()
				code, out, errs := execIn(t, c, slug, "sh", "-c", script)
				if code != 0 {
					t.Errorf("%s: exit %d: %s", script, code, errs)
				}
				return strings.TrimSuffix(out, "\n")
			}

			// The user and home.
			if got := sh(`echo "$(id -u) $(id -un) $HOME $(pwd)"`); got != "1000 agent "+p.Agent.Home+" "+p.Agent.Workdir {
				t.Errorf("user, home, folder = %q", got)
			}
			if p.Agent.Home != "/home/agent" {
				t.Errorf("plan home = %q", p.Agent.Home)
			}
			// No CLI: INSTALL_CLI=0 left it out, as meant.
			if code, _, _ := execIn(t, c, slug, "sh", "-c", "command -v "+tc.template); code == 0 {
				t.Errorf("%s is installed with INSTALL_CLI=0", tc.template)
			}

			// Every provisioned file, where the plan lists it, as it lists it,
			// owned by the agent.
			if len(p.Agent.Files) == 0 {
				t.Fatal("the plan provisions no file")
			}
			for _, f := range p.Agent.Files {
				mode := strings.TrimPrefix(f.Mode, "0")
				if got := sh(`stat -c '%u:%g %a' ` + f.Path); got != "1000:1000 "+mode {
					t.Errorf("%s: owner and mode %q, want 1000:1000 %s", f.Path, got, mode)
				}
				if _, got, _ := execIn(t, c, slug, "cat", f.Path); got != f.Content {
					t.Errorf("%s holds\n%s\nwant\n%s", f.Path, got, f.Content)
				}
			}
			switch tc.template {
			case "claude":
				checkClaudeFiles(t, sh, p)
			case "codex":
				conf := sh(`cat ~/.codex/config.toml`)
				for _, want := range []string{"\n[tui]\n", "\nstatus_line = [", "\nterminal_title = [", "\ntheme = \"ansi\"\n",
					"[projects.\"" + p.Agent.Workdir + "\"]\ntrust_level = \"trusted\""} {
					if !strings.Contains(conf, want) {
						t.Errorf("~/.codex/config.toml has no %q:\n%s", want, conf)
					}
				}
			}

			// CA trust: the bottle's CA at /etc/bb/ca.pem, in the system
			// bundle too, and every CA variable pointing at it.
			ca, err := os.ReadFile(filepath.Join(st.EgressDir(slug), state.CACertFile))
			if err != nil {
				t.Fatal(err)
			}
			if got := sh("cat " + plan.AgentCAFile); got != strings.TrimSuffix(string(ca), "\n") {
				t.Errorf("%s is not the bottle's CA", plan.AgentCAFile)
			}
			if bundle := sh("cat " + SystemCABundle); !strings.Contains(bundle, strings.TrimSpace(string(ca))) {
				t.Errorf("the system bundle %s lacks the bottle's CA", SystemCABundle)
			}
			for _, v := range plan.CAEnv {
				if got := sh(`printenv ` + v); got != plan.AgentCAFile {
					t.Errorf("%s = %q, want %s", v, got, plan.AgentCAFile)
				}
			}
			// The proxy, the canary.
			for _, v := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
				if got := sh(`printenv ` + v); got != p.Egress.ProxyURL {
					t.Errorf("%s = %q, want %s", v, got, p.Egress.ProxyURL)
				}
			}
			if got := sh(`printenv NO_PROXY`); got != plan.NoProxy {
				t.Errorf("NO_PROXY = %q", got)
			}
			if got := sh(`printenv ` + plan.CanaryEnv); got != p.Canary {
				t.Errorf("%s = %q, want the plan's canary", plan.CanaryEnv, got)
			}
			// The placeholder, never the host's token: not in the
			// environment, not in any file of the home, not in inspect.
			got := sh(`printenv ` + tc.tokenEnv)
			if want := plan.Placeholder(slug, tc.placeholderOf); got != want || p.Agent.Env[tc.tokenEnv] != want {
				t.Errorf("%s = %q, want the placeholder %q", tc.tokenEnv, got, want)
			}
			if p.Agent.Placeholders[tc.tokenEnv] != tc.placeholderOf {
				t.Errorf("plan placeholders = %v", p.Agent.Placeholders)
			}
			if all := sh(`env; cat /proc/1/environ /proc/self/environ 2>/dev/null; true`); strings.Contains(all, tc.token) {
				t.Errorf("the token's value is in the agent")
			}
			if code, _, _ := execIn(t, c, slug, "grep", "-rqF", "--", tc.token, "/home", "/etc", "/workspace"); code == 0 {
				t.Errorf("the token's value is in a file of the agent")
			}
			id, _, err := FindContainer(ctx, c, slug, RoleAgent)
			if err != nil {
				t.Fatal(err)
			}
			ins, err := c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if js, _ := json.Marshal(ins); bytes.Contains(js, []byte(tc.token)) {
				t.Error("docker inspect of the agent shows the token's value")
			}
		})
	}

	t.Run("claude as planned, without its CLI", func(t *testing.T) {
		slug := newSlug("nocli")
		p, raw := providerPlan(t, "claude", slug, nil)
		st := &state.Store{Dir: t.TempDir()}
		cleanupBottle(t, c, slug)
		o := launchOptions(t, p, raw, st)
		o.Env = func(k string) string {
			if k == "ANTHROPIC_API_KEY" {
				return "sk-ant-test-placeholder-run"
			}
			return testEnv(k)
		}
		rec, err := Launch(t.Context(), c, o)
		if err != nil {
			t.Fatalf("launch: %v", err)
		}
		// The engine's init starts, and the agent's command fails in it:
		// the container exits 127, its output saying what is missing (an
		// attached person sees that line and gets 127 back).
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		w := c.ContainerWait(ctx, rec.AgentID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
		select {
		case r := <-w.Result:
			if r.StatusCode != 127 {
				t.Errorf("the agent exited %d, want 127", r.StatusCode)
			}
		case err := <-w.Error:
			t.Fatalf("waiting for the agent: %v", err)
		}
		logs, err := c.ContainerLogs(ctx, rec.AgentID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(logs)
		logs.Close()
		if !bytes.Contains(out, []byte("claude")) {
			t.Errorf("the agent's output does not name the missing command: %q", out)
		}
	})
}

// providerPlan plans agent claude-implementer of template as slug, labelled
// bob in orange, its workspace a temporary folder; command, when set,
// replaces the agent's command.
func providerPlan(t *testing.T, template, slug string, command []string) (*plan.Plan, []byte) {
	t.Helper()
	canary, err := plan.MintCanary(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{Kind: manifest.Kind, Version: manifest.Version, Source: "test",
		Agent:  manifest.Agent{Name: template + "-implementer", Template: template, Bottle: "dev", Prompt: "fix the bug"},
		Bottle: manifest.Bottle{Name: "dev", Workspace: t.TempDir()}}
	p, err := plan.New(m, plan.Options{Slug: slug, Canary: canary, Label: "bob", Color: "orange"})
	if err != nil {
		t.Fatal(err)
	}
	if command != nil {
		p.Agent.Command = command
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, raw
}

// checkClaudeFiles: settings.json is JSON naming the status line script,
// which is executable and prints the label and slug (and the model Claude
// Code sends it).
func checkClaudeFiles(t *testing.T, sh func(string) string, p *plan.Plan) {
	t.Helper()
	var settings struct {
		StatusLine struct {
			Type    string `json:"type"`
			Command string `json:"command"`
		} `json:"statusLine"`
	}
	if err := json.Unmarshal([]byte(sh(`cat ~/.claude/settings.json`)), &settings); err != nil {
		t.Fatalf("~/.claude/settings.json: %v", err)
	}
	script := p.Agent.Home + "/.claude/bb-statusline.sh"
	if settings.StatusLine.Type != "command" || settings.StatusLine.Command != script {
		t.Errorf("settings.json statusLine = %+v, want the command %s", settings.StatusLine, script)
	}
	if got := sh(`test -x ` + script + ` && echo executable`); got != "executable" {
		t.Errorf("%s is not executable", script)
	}
	line := sh(`echo '{"model":{"id":"x","display_name":"Opus"},"workspace":{}}' | ` + script)
	for _, want := range []string{"bob", p.Slug, "Opus", "\x1b[1;38;2;247;107;21m"} {
		if !strings.Contains(line, want) {
			t.Errorf("the status line %q lacks %q", line, want)
		}
	}
}
