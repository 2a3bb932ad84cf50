package macoscontainer

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/backend/macoscontainer/internal/clispec"
	"github.com/bb-bottles/bb/lib/guest"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/provider"
	"github.com/bb-bottles/bb/lib/routes"
)

// testPlan plans the shell agent on macos-container with a token and a git
// user.
func testPlan(t testing.TB, slug string) *plan.Plan {
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
				Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB", Format: "Bearer {token}"}},
				{Host: "git.test.invalid", Git: &routes.Git{Repos: []string{"team/repo"}}}}},
			Tokens: map[string]manifest.TokenSource{"GITHUB": {Env: "BB_TEST_GITHUB_TOKEN"}}}}
	p, err := plan.New(m, plan.Options{Slug: slug, Canary: canary, Backend: names.MacOSContainer})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mustParse parses a command line bb builds with the documented syntax.
func mustParse(t *testing.T, argv []string) *clispec.Line {
	t.Helper()
	l, err := clispec.Parse(argv)
	if err != nil {
		t.Fatalf("container %s: %v", strings.Join(argv, " "), err)
	}
	return l
}

// Every command line bb builds parses with the documented syntax, and says
// what the bottle's isolation rests on.
func TestCommandLinesAreDocumented(t *testing.T) {
	p := testPlan(t, "demo-1a2b")
	labels := map[string]string{"bb.slug": "demo-1a2b", "bb.agent": "tester", "bb.role": "egress"}

	side := mustParse(t, sidecarCreate("bot-bottle-demo-1a2b-egress", "bb-egress:0123abcd4567", labels, 501, 20,
		p.MacOSContainer.SidecarLimits, "/Users/fido/.local/state/bot-bottle/demo-1a2b/egress", p.Egress,
		p.MacOSContainer.SidecarNetwork, "/Users/fido/.local/state/bot-bottle/demo-1a2b/egress.sock", []string{"EGRESS_TOKEN_CANARY", "EGRESS_TOKEN_GITHUB"},
		[]string{"--allow-private"}))
	if v, _ := side.Value("--user"); v != "501:20" {
		t.Errorf("the sidecar runs as %q, want the person's 501:20", v)
	}
	if got := side.Values("--cap-drop"); !slices.Equal(got, []string{"ALL"}) || side.Has("--cap-add") {
		t.Errorf("the sidecar's capabilities: drop %v add %v", got, side.Values("--cap-add"))
	}
	for _, e := range side.Values("--env") {
		if strings.Contains(e, "=") {
			t.Errorf("a value on the sidecar's command line: --env %s", e)
		}
	}
	if v, _ := side.Value("--memory"); v != "256M" {
		t.Errorf("sidecar --memory %s", v)
	}
	if v, _ := side.Value("--cpus"); v != "1" {
		t.Errorf("sidecar --cpus %s (0.5 rounds up to the CLI's whole CPUs)", v)
	}
	if v, _ := side.Value("--network"); v != "default" {
		t.Errorf("the sidecar's --network %q, want the default one, its way out", v)
	}
	wantServe := []string{"bb-egress:0123abcd4567", "--listen", "unix:" + SidecarSocket, "--routes", p.Egress.RoutesFile,
		"--ca-dir", p.Egress.CADir, "--log", p.Egress.LogFile, "--allow-private"}
	if diff := cmp.Diff(wantServe, side.Args); diff != "" {
		t.Errorf("the sidecar's image and arguments (-want +got):\n%s", diff)
	}

	agentLabels := map[string]string{"bb.slug": "demo-1a2b", "bb.agent": "tester", "bb.role": "agent"}
	agent := mustParse(t, agentCreate("bot-bottle-demo-1a2b", "bb-agent-shell:3f2a9c81d0e4", agentLabels, p.Agent,
		p.MacOSContainer.Limits, "/Users/fido/.local/state/bot-bottle/demo-1a2b/guest",
		"/Users/fido/.local/state/bot-bottle/demo-1a2b/egress.sock",
		[]mountSpec{{Source: "/Users/fido/src/demo", Target: p.Agent.Workdir},
			{Source: "bot-bottle-demo-1a2b-git", Target: p.Agent.Workdir + "/.git", Volume: true},
			{Source: "/Users/fido/src/demo/.git", Target: "/bb/git/host", ReadOnly: true}},
		"/Users/fido/.local/state/bot-bottle/demo-1a2b/.agent-env-123"))
	if v, _ := agent.Value("--network"); v != "none" || !agent.Has("--no-dns") {
		t.Errorf("the agent's network: --network %q, --no-dns %v; want none and no DNS", v, agent.Has("--no-dns"))
	}
	if got := agent.Values("--cap-drop"); !slices.Equal(got, []string{"ALL"}) {
		t.Errorf("the agent's --cap-drop %v", got)
	}
	if got := agent.Values("--cap-add"); !slices.Equal(got, agentCaps) {
		t.Errorf("the agent's --cap-add %v", got)
	}
	for _, c := range agent.Values("--cap-add") {
		if strings.Contains(c, "NET") || c == "SYS_ADMIN" || c == "ALL" {
			t.Errorf("the agent's container keeps %s", c)
		}
	}
	if agent.Has("--env") {
		t.Errorf("the agent's --env %v: its environment comes from a file", agent.Values("--env"))
	}
	if v, _ := agent.Value("--env-file"); v != "/Users/fido/.local/state/bot-bottle/demo-1a2b/.agent-env-123" {
		t.Errorf("the agent's --env-file %q", v)
	}
	if v, _ := agent.Value("--ulimit"); v != "nproc=512" {
		t.Errorf("the agent's --ulimit %q", v)
	}
	if v, _ := agent.Value("--entrypoint"); v != GuestBinary || !agent.Has("--init") {
		t.Errorf("the agent's entrypoint %q, --init %v", v, agent.Has("--init"))
	}
	wantVolumes := []string{
		"/Users/fido/.local/state/bot-bottle/demo-1a2b/guest:/bb/guest:ro",
		"/Users/fido/.local/state/bot-bottle/demo-1a2b/egress.sock:" + AgentSocket,
		"/Users/fido/src/demo:" + p.Agent.Workdir,
		"bot-bottle-demo-1a2b-git:" + p.Agent.Workdir + "/.git",
		"/Users/fido/src/demo/.git:/bb/git/host:ro",
	}
	if diff := cmp.Diff(wantVolumes, agent.Values("--volume")); diff != "" {
		t.Errorf("the agent's volumes (-want +got):\n%s", diff)
	}
	wantArgs := append([]string{"bb-agent-shell:3f2a9c81d0e4", "guest", "init", "--spec", SpecFile, "--"}, p.Agent.Command...)
	if diff := cmp.Diff(wantArgs, agent.Args); diff != "" {
		t.Errorf("the agent's image and arguments (-want +got):\n%s", diff)
	}

	for _, argv := range [][]string{
		attachArgs("bot-bottle-demo-1a2b", p.Agent.User),
		execArgs("bot-bottle-demo-1a2b", p.Agent.User, p.Agent.Workdir, []string{"git", "log", "--oneline", "-3"}),
		buildArgs("/tmp/ctx/Dockerfile", "bb-agent-shell:3f2a9c81d0e4", map[string]string{"BASE": "bb-base:bookworm", "INSTALL_CLI": "0"},
			map[string]string{"bb.role": "image", "bb.image.hash": "3f2a"}, "/tmp/ctx"),
	} {
		mustParse(t, argv)
	}
	ex := mustParse(t, execArgs("bot-bottle-demo-1a2b", "agent", "/workspace", []string{"ls", "--all", "-l"}))
	if diff := cmp.Diff([]string{"bot-bottle-demo-1a2b", GuestBinary, "guest", "run", "--", "ls", "--all", "-l"}, ex.Args); diff != "" {
		t.Errorf("exec's arguments (-want +got):\n%s", diff)
	}
}

func TestGuestSpecFromThePlan(t *testing.T) {
	p := testPlan(t, "demo-1a2b")
	s, err := guestSpec(p, []byte("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"), true, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.User != p.Agent.User || !s.WaitAttach || s.Socket != AttachSocket {
		t.Errorf("spec = %+v", s)
	}
	if want := (guest.Relay{Listen: "127.0.0.1:3128", Socket: AgentSocket, Mode: 0o666}); s.Relay != want {
		t.Errorf("relay = %+v, want %+v", s.Relay, want)
	}
	if !slices.Equal(s.Hosts, []string{"127.0.0.1 bb.egress"}) {
		t.Errorf("hosts = %v", s.Hosts)
	}
	byPath := map[string]guest.File{}
	for _, f := range s.Files {
		byPath[f.Path] = f
	}
	if f := byPath[p.Agent.CAFile]; f.Owner != guest.OwnerRoot || !strings.Contains(string(f.Content), "CA") {
		t.Errorf("the CA file: %+v", f)
	}
	if f := byPath[backend.SystemCABundle]; !f.AppendOnce || f.Owner != guest.OwnerRoot {
		t.Errorf("the system bundle: %+v", f)
	}
	if f := byPath["~/.gitconfig"]; !strings.Contains(string(f.Content), `name = "Test \"Bot\""`) || f.Owner != guest.OwnerAgent ||
		!strings.Contains(string(f.Content), "insteadOf = git@git.test.invalid:") {
		t.Errorf(".gitconfig: %q", f.Content)
	}
	prompt := false
	for _, f := range s.Files {
		if strings.HasSuffix(f.Path, provider.PromptFile) && string(f.Content) == "look around" {
			prompt = true
		}
		if f.Owner == guest.OwnerAgent && strings.Contains(string(f.Content), p.Canary) {
			t.Errorf("the canary is in the agent's file %s", f.Path)
		}
	}
	if !prompt {
		t.Errorf("no prompt among %v", s.Files)
	}

	p.Agent.Files = append(p.Agent.Files, plan.File{Path: "/etc/passwd", Mode: "0644", Content: "x"})
	if _, err := guestSpec(p, nil, false, "", nil); err == nil || !strings.Contains(err.Error(), "not in the agent's home") {
		t.Errorf("a plan file outside the home: %v", err)
	}
}

func TestHostSocketLength(t *testing.T) {
	if _, err := hostSocket("/Users/fido/.local/state/bot-bottle/demo-1a2b"); err != nil {
		t.Error(err)
	}
	if _, err := hostSocket("/" + strings.Repeat("x", 100)); err == nil {
		t.Error("a socket path too long for macOS was accepted")
	}
}
