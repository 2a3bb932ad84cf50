package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/state"
)

const testToken = "tok-3c1f9b2e-not-in-the-agent"

// newSlug is a slug of this test's own.
func newSlug(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:8])
}

// shellPlan plans the shell agent with one token (GITHUB, from the host's
// BB_TEST_GITHUB_TOKEN) and a git user, its workspace a temporary folder.
func shellPlan(t testing.TB, slug string, edit func(*manifest.Manifest)) (*plan.Plan, []byte) {
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
				Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB", Format: "Bearer {token}"}}}},
			Tokens: map[string]manifest.TokenSource{"GITHUB": {Env: "BB_TEST_GITHUB_TOKEN"}}}}
	if edit != nil {
		edit(m)
	}
	p, err := plan.New(m, plan.Options{Slug: slug, Canary: canary})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, raw
}

func testEnv(k string) string {
	switch k {
	case "BB_TEST_GITHUB_TOKEN":
		return testToken
	case "HOME":
		return os.Getenv("HOME")
	}
	return ""
}

func launchOptions(t *testing.T, p *plan.Plan, raw []byte, st *state.Store) LaunchOptions {
	return LaunchOptions{Plan: p, PlanJSON: raw, Store: st, SidecarBinary: staticEgress(t),
		BaseImage: BaseImage, BuildArgs: map[string]string{"INSTALL_CLI": "0"},
		Env: testEnv, Dir: t.TempDir(), UID: os.Getuid(), GID: os.Getgid()}
}

// cleanupBottle stops slug when t ends, however it ends, and then checks
// that the engine has nothing of it left.
func cleanupBottle(t testing.TB, c Engine, slug string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Stop(ctx, c, slug); err != nil {
			t.Errorf("stopping %s: %v", slug, err)
		}
		if err := New(c).Remove(ctx, slug); err != nil {
			t.Errorf("removing %s: %v", slug, err)
		}
		assertGone(t, c, slug)
	})
}

// assertStopped checks that no container or network of slug is left.
func assertStopped(t testing.TB, c Engine, slug string) {
	t.Helper()
	ctx := context.Background()
	cs, err := bottleContainers(ctx, c, slug, "")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := bottleNetworks(ctx, c, slug)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) > 0 || len(ns) > 0 {
		t.Errorf("bottle %s left %d containers and %d networks", slug, len(cs), len(ns))
	}
}

// assertGone checks that nothing of slug is left: no container, network
// or volume.
func assertGone(t testing.TB, c Engine, slug string) {
	t.Helper()
	ctx := context.Background()
	cs, err := bottleContainers(ctx, c, slug, "")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := bottleNetworks(ctx, c, slug)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := c.VolumeList(ctx, client.VolumeListOptions{Filters: client.Filters{}.Add("label", LabelSlug+"="+slug)})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) > 0 || len(ns) > 0 || len(vs.Items) > 0 {
		t.Errorf("bottle %s left %d containers, %d networks and %d volumes", slug, len(cs), len(ns), len(vs.Items))
	}
}

// execIn runs cmd in the bottle and returns its status and output.
func execIn(t *testing.T, c Engine, slug string, cmd ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code, err := Exec(t.Context(), c, slug, cmd, &out, &errb)
	if err != nil {
		t.Fatalf("exec %q: %v", cmd, err)
	}
	return code, out.String(), errb.String()
}

func TestLaunch(t *testing.T) {
	c := needBase(t)
	ctx := t.Context()
	slug := newSlug("launch")
	p, raw := shellPlan(t, slug, nil)
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	var progress bytes.Buffer
	o := launchOptions(t, p, raw, st)
	o.Progress = &progress
	start := time.Now()
	rec, err := Launch(ctx, c, o)
	if err != nil {
		t.Fatalf("Launch: %v\n%s", err, progress.String())
	}
	t.Logf("launched in %v", time.Since(start))
	want := Record{Slug: slug, Backend: "docker", AgentContainer: names.Agent(slug),
		SidecarContainer: names.Sidecar(slug), AgentImage: rec.AgentImage, SidecarImage: rec.SidecarImage, AgentID: rec.AgentID,
		DiskLimit: rec.DiskLimit} // TestLaunchBounds checks it against the engine
	if *rec != want || rec.DiskLimit == "" || !strings.HasPrefix(rec.AgentImage, "bb-agent-shell:") || !strings.HasPrefix(rec.SidecarImage, "bb-egress:") {
		t.Errorf("record = %+v", *rec)
	}

	t.Run("state", func(t *testing.T) {
		md, err := st.ReadMetadata(slug)
		if err != nil {
			t.Fatal(err)
		}
		if md.Agent != "tester" || md.Template != "shell" || md.Backend != "docker" || md.Color != p.Color || md.Created.IsZero() {
			t.Errorf("metadata = %+v", md)
		}
		stored, err := st.ReadPlan(slug)
		if err != nil || !bytes.Equal(stored, raw) {
			t.Errorf("stored plan differs (%v)", err)
		}
		dir := st.EgressDir(slug)
		rs, err := os.ReadFile(filepath.Join(dir, state.RoutesFile))
		if err != nil || !strings.Contains(string(rs), "allowed.test.invalid") {
			t.Errorf("routes.yaml = %q, %v", rs, err)
		}
		for _, f := range []string{state.CACertFile, state.CAKeyFile, state.AuditLogFile} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("egress folder: %v", err)
			}
		}
	})

	t.Run("agent is not root", func(t *testing.T) {
		if code, out, _ := execIn(t, c, slug, "id", "-u"); code != 0 || strings.TrimSpace(out) == "0" {
			t.Errorf("id -u: %d %q", code, out)
		}
	})
	t.Run("environment", func(t *testing.T) {
		_, out, _ := execIn(t, c, slug, "env")
		for _, want := range []string{"BOT_BOTTLE_CANARY=" + p.Canary, "HTTPS_PROXY=http://bb.egress:3128", "GIT_AUTHOR_NAME="} {
			if !strings.Contains(out, want) {
				t.Errorf("the agent's env lacks %q", want)
			}
		}
		if strings.Contains(out, testToken) || strings.Contains(out, "EGRESS_TOKEN") {
			t.Errorf("the agent's env holds a token:\n%s", out)
		}
	})
	t.Run("exit status", func(t *testing.T) {
		if code, _, _ := execIn(t, c, slug, "sh", "-c", "exit 7"); code != 7 {
			t.Errorf("exit 7 gave %d", code)
		}
	})
	t.Run("names", func(t *testing.T) {
		if code, out, _ := execIn(t, c, slug, "getent", "hosts", "bb.egress"); code != 0 || !strings.Contains(out, "bb.egress") {
			t.Errorf("getent hosts bb.egress: %d %q", code, out)
		}
		// The agent resolves nothing by itself, not even through the
		// engine's DNS server.
		for _, name := range []string{"example.com", names.Sidecar(slug)} {
			if code, out, _ := execIn(t, c, slug, "getent", "hosts", name); code == 0 {
				t.Errorf("getent hosts %s resolved: %q", name, out)
			}
		}
	})
	t.Run("CA trusted by the system store", func(t *testing.T) {
		code, out, errs := execIn(t, c, slug, "sh", "-c",
			"env -u SSL_CERT_FILE -u CURL_CA_BUNDLE openssl verify -CAfile "+SystemCABundle+" "+plan.AgentCAFile)
		if code != 0 || !strings.Contains(out, ": OK") {
			t.Errorf("openssl verify: %d %q %q", code, out, errs)
		}
		// curl with no CA variable completes the TLS handshake with the
		// sidecar's certificate for the allowed host (whose upstream does
		// not exist: the sidecar answers 502 after the handshake).
		code, out, errs = execIn(t, c, slug, "env", "-u", "CURL_CA_BUNDLE", "-u", "SSL_CERT_FILE",
			"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "https://allowed.test.invalid/")
		if out != "502" {
			t.Errorf("curl through the sidecar: %d %q %q; want the sidecar's 502 after a trusted handshake", code, out, errs)
		}
	})
	t.Run("provisioned files", func(t *testing.T) {
		_, out, _ := execIn(t, c, slug, "sh", "-c", `cat ~/.gitconfig; stat -c '%U %a %n' ~/.gitconfig ~/.bb/prompt.md; cat ~/.bb/prompt.md; git config url.https://github.com/.insteadOf`)
		for _, want := range []string{`name = "Test \"Bot\""`, "insteadOf = ssh://git@github.com/", "agent 644 /home/agent/.gitconfig",
			"agent 644 /home/agent/.bb/prompt.md", "look around"} {
			if !strings.Contains(out, want) {
				t.Errorf("provisioned files lack %q:\n%s", want, out)
			}
		}
	})
	t.Run("inspect agent", func(t *testing.T) {
		in, err := c.ContainerInspect(ctx, rec.AgentContainer, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(in.Raw, []byte(testToken)) || bytes.Contains(in.Raw, []byte("EGRESS_TOKEN")) {
			t.Errorf("docker inspect of the agent shows a token")
		}
		hc, cfg := in.Container.HostConfig, in.Container.Config
		if !slices.Equal(hc.CapDrop, []string{"ALL"}) || !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
			t.Errorf("cap_drop %v, security_opt %v", hc.CapDrop, hc.SecurityOpt)
		}
		if hc.Memory != p.Docker.Limits.MemoryBytes || hc.PidsLimit == nil || *hc.PidsLimit != p.Docker.Limits.PidsLimit {
			t.Errorf("memory %d, pids %v", hc.Memory, hc.PidsLimit)
		}
		if hc.Init == nil || !*hc.Init || !cfg.Tty || !cfg.OpenStdin || cfg.User != "agent" {
			t.Errorf("init %v, tty %v, stdin %v, user %q", hc.Init, cfg.Tty, cfg.OpenStdin, cfg.User)
		}
		for k, v := range map[string]string{LabelSlug: slug, names.LabelAgent: "tester", LabelRole: RoleAgent} {
			if cfg.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
			}
		}
		if nets := in.Container.NetworkSettings.Networks; len(nets) != 1 || nets[p.Docker.InternalNetwork] == nil {
			t.Errorf("the agent is on %v, want the internal network only", slices.Collect(mapsKeys(nets)))
		}
	})
	t.Run("inspect sidecar", func(t *testing.T) {
		in, err := c.ContainerInspect(ctx, rec.SidecarContainer, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hc, cfg := in.Container.HostConfig, in.Container.Config
		if !slices.Contains(cfg.Env, "EGRESS_TOKEN_GITHUB="+testToken) || !slices.Contains(cfg.Env, "EGRESS_TOKEN_CANARY="+p.Canary) {
			t.Errorf("the sidecar lacks its tokens: %d variables", len(cfg.Env))
		}
		user := fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
		if os.Getuid() == 0 {
			user = fmt.Sprintf("%d:%d", SidecarUser, SidecarUser) // never root
		}
		if !hc.ReadonlyRootfs || !slices.Equal(hc.CapDrop, []string{"ALL"}) || cfg.User != user {
			t.Errorf("readonly %v, cap_drop %v, user %q", hc.ReadonlyRootfs, hc.CapDrop, cfg.User)
		}
		if len(hc.Mounts) != 1 || hc.Mounts[0].Source != st.EgressDir(slug) || hc.Mounts[0].Target != "/egress" {
			t.Errorf("mounts %+v, want the egress folder at /egress", hc.Mounts)
		}
		nets := in.Container.NetworkSettings.Networks
		if len(nets) != 2 || nets[p.Docker.EgressNetwork] == nil || !slices.Contains(nets[p.Docker.InternalNetwork].Aliases, "bb.egress") {
			t.Errorf("the sidecar's networks: %v", slices.Collect(mapsKeys(nets)))
		}
	})
	t.Run("networks", func(t *testing.T) {
		in, err := c.NetworkInspect(ctx, p.Docker.InternalNetwork, client.NetworkInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := in.Network
		if !n.Internal || n.Options[InhibitIPv4] != "true" || n.EnableIPv6 || n.Labels[LabelSlug] != slug {
			t.Errorf("internal network: internal %v, options %v, ipv6 %v, labels %v", n.Internal, n.Options, n.EnableIPv6, n.Labels)
		}
		eg, err := c.NetworkInspect(ctx, p.Docker.EgressNetwork, client.NetworkInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if eg.Network.Internal || eg.Network.EnableIPv6 {
			t.Errorf("egress network: internal %v, ipv6 %v", eg.Network.Internal, eg.Network.EnableIPv6)
		}
	})
	t.Run("gateway unreachable", func(t *testing.T) {
		testGatewayUnreachable(t, c, slug, p)
	})
	t.Run("ls", func(t *testing.T) {
		list, err := backend.List(ctx, st, openOn(c), func(err error) { t.Error(err) })
		if err != nil || len(list) != 1 {
			t.Fatalf("List = %v, %v", list, err)
		}
		if s := list[0]; s.Slug != slug || s.Status != backend.StatusRunning || s.AgentContainer != rec.AgentContainer {
			t.Errorf("List = %+v", s)
		}
	})
	t.Run("reload", func(t *testing.T) {
		if err := Reload(ctx, c, slug); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a second launch is refused", func(t *testing.T) {
		_, err := Launch(ctx, c, launchOptions(t, p, raw, st))
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("second Launch = %v", err)
		}
		if _, running, _ := FindContainer(ctx, c, slug, RoleAgent); !running || !st.Exists(slug) {
			t.Errorf("the refused launch touched the running bottle")
		}
	})

	// Stop, then resume from the same state. The bottle's own git
	// repository stays for the resume.
	if err := Stop(ctx, c, slug); err != nil {
		t.Fatal(err)
	}
	assertStopped(t, c, slug)
	if err := Stop(ctx, c, slug); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
	if list, _ := backend.List(ctx, st, openOn(c), func(err error) { t.Error(err) }); len(list) != 1 || list[0].Status != backend.ListStopped {
		t.Errorf("List after stop = %+v", list)
	}
	var ran bool
	var reply []byte
	if err := Reload(ctx, c, slug); !errors.As(err, new(*backend.NotRunningError)) {
		t.Errorf("Reload of a stopped bottle = %v, want ErrNotRunning", err)
	}
	o = launchOptions(t, p, raw, st)
	o.Resume, o.Image = true, rec.AgentImage
	o.BeforeStart = func(ctx context.Context, id string) error { ran = true; return nil }
	start = time.Now()
	if _, err := Launch(ctx, c, o); err != nil {
		t.Fatalf("resume: %v", err)
	}
	t.Logf("resumed in %v", time.Since(start))
	if !ran {
		t.Error("BeforeStart was not called")
	}
	_, out, _ := execIn(t, c, slug, "sh", "-c", `echo "$BOT_BOTTLE_CANARY"; grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt`)
	reply = []byte(out)
	if !bytes.HasPrefix(reply, []byte(p.Canary+"\n")) {
		t.Errorf("resumed bottle's canary: %q", reply)
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// testGatewayUnreachable proves the point of InhibitIPv4: a service on the
// host, listening on every address, is reachable from a container on an
// internal network through the bridge's gateway — unless the bridge has no
// address, as the bottle's has not.
func testGatewayUnreachable(t *testing.T, c *client.Client, slug string, p *plan.Plan) {
	ctx := t.Context()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte("hello from the host\n"))
			conn.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	probe := func(gw string) string {
		return fmt.Sprintf("timeout 3 bash -c 'exec 3<>/dev/tcp/%s/%d && head -1 <&3'", gw, port)
	}
	gateway := func(network string) string { return networkGateway(t, c, network) }

	// The control: the same probe from an internal network without the
	// option reaches the host.
	ctl := names.Agent(slug) + "-control"
	res, err := c.NetworkCreate(ctx, ctl, client.NetworkCreateOptions{Driver: "bridge", Internal: true,
		Labels: withTestLabels(map[string]string{LabelSlug: slug})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNetwork(context.Background(), c, res.ID) })
	cres, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{Image: BaseImage,
		Config: &container.Config{Cmd: []string{"bash", "-c", probe(gateway(ctl))},
			Labels: withTestLabels(map[string]string{LabelSlug: slug})},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(ctl)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeContainer(context.Background(), c, cres.ID) })
	if _, err := c.ContainerStart(ctx, cres.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	w := c.ContainerWait(ctx, cres.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-w.Result:
		if r.StatusCode != 0 {
			t.Skipf("the control probe did not reach the host (exit %d): this host filters it anyway", r.StatusCode)
		}
	case err := <-w.Error:
		t.Fatal(err)
	}

	code, out, errs := execIn(t, c, slug, "sh", "-c", probe(gateway(p.Docker.InternalNetwork)))
	if code == 0 || strings.Contains(out, "hello") {
		t.Errorf("the agent reached the host through its network's gateway: %d %q %q", code, out, errs)
	}
}

func TestLaunchFailureCleanup(t *testing.T) {
	c := needBase(t)
	clash := func(t *testing.T, p *plan.Plan) {
		// Another bottle's container already has the sidecar's name.
		res, err := c.ContainerCreate(t.Context(), client.ContainerCreateOptions{Name: p.Docker.SidecarContainer,
			Image: BaseImage, Config: &container.Config{Cmd: []string{"true"},
				Labels: withTestLabels(map[string]string{LabelSlug: "someone-else"})},
			HostConfig: &container.HostConfig{NetworkMode: "none"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeContainer(context.Background(), c, res.ID) })
	}
	badDockerfile := func(m *manifest.Manifest) {
		dir := t.TempDir()
		f := filepath.Join(dir, "Dockerfile")
		os.WriteFile(f, []byte("ARG BASE\nFROM ${BASE}\nRUN echo failing on purpose "+rand.Text()+" && false\n"), 0o644)
		m.Bottle.Dockerfile = f
	}
	tests := []struct {
		name     string
		edit     func(*manifest.Manifest)
		before   func(*testing.T, *plan.Plan)
		cancel   bool // cancel the launch just before the agent starts
		step     string
		code     int
		contains string
	}{
		{name: "missing token", step: "reading the tokens", code: exit.CodeUsage, contains: "BB_TEST_NO_SUCH_TOKEN is not set",
			edit: func(m *manifest.Manifest) {
				m.Bottle.Tokens["GITHUB"] = manifest.TokenSource{Env: "BB_TEST_NO_SUCH_TOKEN"}
			}},
		{name: "missing token file", step: "reading the tokens", code: exit.CodeUsage, contains: "no such file",
			edit: func(m *manifest.Manifest) {
				m.Bottle.Tokens["GITHUB"] = manifest.TokenSource{File: "/nonexistent/token"}
			}},
		{name: "failing build", edit: badDockerfile, step: "building the agent image", code: exit.CodeBackend, contains: "false"},
		{name: "name clash", before: clash, step: "starting the sidecar", code: exit.CodeBackend, contains: "already in use"},
		{name: "interrupted", cancel: true, step: "starting the agent", code: exit.CodeInterrupted, contains: "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slug := newSlug("fail")
			p, raw := shellPlan(t, slug, tt.edit)
			st := &state.Store{Dir: t.TempDir()}
			cleanupBottle(t, c, slug)
			if tt.before != nil {
				tt.before(t, p)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			o := launchOptions(t, p, raw, st)
			if tt.cancel {
				o.BeforeStart = func(context.Context, string) error {
					cancel()
					return ctx.Err()
				}
			}
			_, err := Launch(ctx, c, o)
			var se *StepError
			if !errors.As(err, &se) || se.Step != tt.step {
				t.Fatalf("Launch = %v, want a failure at step %q", err, tt.step)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q does not say %q", err, tt.contains)
			}
			if code := exit.CodeOf(err); code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			assertGone(t, c, slug)
			if _, err := os.Stat(st.BottleDir(slug)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the state folder the launch created is left: %v", err)
			}
		})
	}
}
