package docker

// The git gate in the escape suite: a bottle whose only git host is a forge
// of our own (git's http-backend in a container on the egress network),
// and from inside the agent, with the real git, every way to push what it
// must not. Each refusal is checked where it matters: the forge's
// repositories are as they were, and no push reached it.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/image"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/state"
)

const gitHost = "git.test"

var (
	gitUpstreamOnce sync.Once
	gitUpstreamRef  string
	gitUpstreamErr  error
)

// gitUpstreamImage is scripts/upstream on the offline base, which has git
// and its http-backend: a forge.
func gitUpstreamImage(c *client.Client) (string, error) {
	gitUpstreamOnce.Do(func() {
		ref, err := upstreamImage(c)
		if err != nil {
			gitUpstreamErr = err
			return
		}
		dir, err := os.MkdirTemp("", "bb-git-upstream-")
		if err != nil {
			gitUpstreamErr = err
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "upstream")
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, "./scripts/upstream")
		cmd.Dir = "../../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			gitUpstreamErr = fmt.Errorf("building scripts/upstream: %v\n%s", err, out)
			return
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			gitUpstreamErr = err
			return
		}
		tag := strings.TrimPrefix(ref, upstreamRepo+":")
		gitUpstreamRef = upstreamRepo + "-git:" + tag
		df := "FROM " + BaseImage + "\nCOPY upstream /upstream\nENTRYPOINT [\"/upstream\"]\n"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		labels := withTestLabels(map[string]string{LabelRole: roleUpstream})
		gitUpstreamErr = buildImage(ctx, c, gitUpstreamRef, image.Context{Dockerfile: []byte(df),
			Files: map[string]image.File{"upstream": {Data: data, Mode: 0o755}}}, nil, labels, nil)
	})
	return gitUpstreamRef, gitUpstreamErr
}

// forge is the git upstream: its repositories are a folder of the host's,
// bind-mounted, so the test reads them with the host's git.
type forge struct {
	*upstream
	root string
}

func (f *forge) git(t *testing.T, repo string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = filepath.Join(f.root, repo)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+f.root, "GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// state is a repository's refs and objects.
func (f *forge) state(t *testing.T, repo string) string {
	return f.git(t, repo, "for-each-ref") + "\n" + f.git(t, repo, "count-objects", "-v")
}

// pushes are the pushes the forge received (git's 4-byte probe aside).
func (f *forge) pushes(t *testing.T) []seen {
	all, _ := f.seen(t)
	var out []seen
	for _, s := range all {
		if s.Method == "POST" && strings.HasSuffix(s.Path, "/git-receive-pack") && s.BodyLen > 4 {
			out = append(out, s)
		}
	}
	return out
}

func makeForge(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	seed := t.TempDir()
	run := func(dir string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+seed, "GIT_AUTHOR_NAME=seed",
			"GIT_AUTHOR_EMAIL=seed@example.invalid", "GIT_COMMITTER_NAME=seed", "GIT_COMMITTER_EMAIL=seed@example.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run(seed, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(seed, "README.md"), []byte("# widgets\n"), 0o644)
	run(seed, "add", "-A")
	run(seed, "commit", "-qm", "initial")
	for _, repo := range []string{"acme/widgets.git", "acme/other.git"} {
		dir := filepath.Join(root, repo)
		os.MkdirAll(dir, 0o755)
		run(dir, "init", "-q", "--bare", "-b", "main")
		run(dir, "config", "http.receivepack", "true")
		run(seed, "push", "-q", dir, "main")
	}
	// The forge runs as 65532: its repositories must be writable to it.
	if out, err := exec.Command("chmod", "-R", "a+rwX", root).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v %s", err, out)
	}
	return root
}

func startForge(t *testing.T, c *client.Client, ref, slug, net, tlsDir, root, auth string) *forge {
	t.Helper()
	ctx := t.Context()
	res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:  "bot-bottle-" + slug + "-up-forge",
		Image: ref,
		Config: &container.Config{Cmd: []string{"serve", "--name", "forge", "--tls-dir", "/tls", "--git-root", "/git"},
			User: "65532:65532", Env: []string{"UPSTREAM_GIT_AUTH=" + auth},
			Labels: withTestLabels(map[string]string{LabelSlug: slug, LabelRole: roleUpstream})},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(net),
			Mounts: []mount.Mount{{Type: mount.TypeBind, Source: tlsDir, Target: "/tls", ReadOnly: true},
				{Type: mount.TypeBind, Source: root, Target: "/git"}}},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{net: {Aliases: []string{gitHost}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeContainer(context.Background(), c, res.ID) })
	if _, err := c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	u := &upstream{c: c, name: "forge", id: res.ID}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, errOut := u.output(t); strings.Count(errOut, "listening on") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			_, errOut := u.output(t)
			t.Fatalf("the forge did not listen: %q", errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &forge{upstream: u, root: root}
}

func TestEscapeGit(t *testing.T) {
	c := needBase(t)
	ctx := t.Context()
	var ref string
	var refErr error
	built := make(chan struct{})
	go func() { defer close(built); ref, refErr = gitUpstreamImage(c) }()

	slug := newSlug("escgit")
	tlsDir := t.TempDir()
	writeUpstreamCerts(t, tlsDir, gitHost)
	root := makeForge(t)
	p, raw := shellPlan(t, slug, func(m *manifest.Manifest) {
		m.Bottle.Egress.Routes = []routes.Route{{Host: gitHost,
			Git:    &routes.Git{Repos: []string{"acme/widgets"}, Push: []string{"refs/heads/agent/*"}},
			Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB", Format: "Basic {basic:x-access-token}"}}}
	})
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	o := launchOptions(t, p, raw, st)
	o.UpstreamCA = filepath.Join(tlsDir, "ca.pem")
	o.AllowPrivate = egressHasFlag(t, "allow-private")
	var progress bytes.Buffer
	o.Progress = &progress
	if _, err := Launch(ctx, c, o); err != nil {
		<-built
		t.Fatalf("Launch: %v\n%s", err, progress.String())
	}
	if <-built; refErr != nil {
		t.Fatal(refErr)
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+testToken))
	f := startForge(t, c, ref, slug, p.Docker.EgressNetwork, tlsDir, root, auth)

	// sh runs a script as the agent in its clone, /tmp/w.
	sh := func(t *testing.T, script string) (int, string) {
		t.Helper()
		code, out, errOut := execIn(t, c, slug, "bash", "-c", "cd /tmp/w 2>/dev/null; "+script)
		return code, out + errOut
	}
	if code, out := sh(t, "git clone -q git@"+gitHost+":acme/widgets /tmp/w && cd /tmp/w && git log --format=%s"); code != 0 || !strings.Contains(out, "initial") {
		t.Fatalf("clone through the gate, by its SSH remote: %d\n%s", code, out)
	}
	if code, out := sh(t, "git switch -q -c agent/x && echo work > work.txt && git add -A && git commit -qm work && git push -q -u origin agent/x && git rev-parse HEAD"); code != 0 {
		t.Fatalf("push: %s", out)
	} else if got := f.git(t, "acme/widgets.git", "rev-parse", "agent/x"); !strings.Contains(out, got) {
		t.Fatalf("the forge has agent/x at %s; the agent pushed:\n%s", got, out)
	}
	if _, env := sh(t, "env; cat ~/.gitconfig .git/config"); strings.Contains(env, testToken) || strings.Contains(env, auth) {
		t.Fatal("ESCAPE: the agent holds the token")
	}
	entries := func() []audit.Entry {
		data, _ := os.ReadFile(filepath.Join(st.EgressDir(slug), state.AuditLogFile))
		var out []audit.Entry
		for line := range bytes.Lines(data) {
			var e audit.Entry
			if json.Unmarshal(line, &e) == nil {
				out = append(out, e)
			}
		}
		return out
	}
	before := f.state(t, "acme/widgets.git")
	pushesBefore := len(f.pushes(t))
	canary := p.Canary

	for _, tc := range []struct {
		name   string
		script string
		want   []string
		canary bool
	}{
		{"a ref outside push", "git push origin agent/x:main", []string{"[remote rejected] agent/x -> main (bb-egress: refs/heads/main is not a ref the route lets the agent push"}, false},
		{"a deletion", "git push origin :agent/x", []string{"deleting refs/heads/agent/x is refused"}, false},
		{"a force push", "git commit -q --amend -m rewritten && git push -f origin agent/x; git reset -q --hard origin/agent/x", []string{"not a fast-forward"}, false},
		{"a tag", "git tag t1 && git push origin t1", []string{"refs/tags/t1 is not a ref the route lets the agent push"}, false},
		{"another repository", "git push https://" + gitHost + "/acme/other agent/x", []string{"repository acme/other on git.test is not in the route's git repos"}, false},
		{"over plain http", "git push http://" + gitHost + "/acme/widgets agent/x:agent/y", []string{"never sent over plain http"}, false},
		{"the canary in a file", `printf '%s\n' "$BOT_BOTTLE_CANARY" > notes.txt && git add -A && git commit -qm notes && git push origin agent/x; git reset -q --hard origin/agent/x`,
			[]string{"secret CANARY", "notes.txt of commit"}, true},
		{"the canary in a commit message", `git commit -q --allow-empty -m "debug $BOT_BOTTLE_CANARY" && git push origin agent/x; git reset -q --hard origin/agent/x`,
			[]string{"secret CANARY", "in commit"}, true},
		{"the canary in a file name", `mkdir -p d && touch "d/$BOT_BOTTLE_CANARY" && git add -A && git commit -qm name && git push origin agent/x; git reset -q --hard origin/agent/x`,
			[]string{"secret CANARY", "a file name in d/"}, true},
		{"the canary gzip'd", `printf '%s' "$BOT_BOTTLE_CANARY" | gzip > c.gz && git add -A && git commit -qm gz && git push origin agent/x; git reset -q --hard origin/agent/x`,
			[]string{"secret CANARY (gzip/", "c.gz of commit"}, true},
		{"the canary base64'd", `printf '%s' "$BOT_BOTTLE_CANARY" | base64 > c.b64 && git add -A && git commit -qm b64 && git push origin agent/x; git reset -q --hard origin/agent/x`,
			[]string{"secret CANARY (base64)", "c.b64 of commit"}, true},
		{"the canary deep in a large file", `head -c 4000000 /dev/urandom | base64 > big.txt && printf '%s\n' "$BOT_BOTTLE_CANARY" >> big.txt && head -c 1000000 /dev/urandom | base64 >> big.txt && git add -A && git commit -qm big && git push origin agent/x; git reset -q --hard origin/agent/x`,
			[]string{"secret CANARY", "big.txt of commit"}, true},
		{"the canary in a tag's message", `git tag -a v9 -m "release $BOT_BOTTLE_CANARY" && git push origin v9`, []string{"secret CANARY", "tag object"}, true},
		{"the canary in a ref name", `git push origin "agent/x:agent/$BOT_BOTTLE_CANARY"`, []string{"secret CANARY"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(entries())
			code, out := sh(t, tc.script)
			if code == 0 && !strings.Contains(tc.script, "; git reset") {
				t.Errorf("ESCAPE: the push succeeded:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("git says:\n%s\nwant %q", out, w)
				}
			}
			if strings.Contains(out, canary) && tc.name != "the canary in a ref name" {
				t.Errorf("git's output carries the canary")
			}
			if got := f.pushes(t); len(got) != pushesBefore {
				t.Errorf("ESCAPE: the forge received a push: %+v", got[pushesBefore:])
			}
			if after := f.state(t, "acme/widgets.git"); after != before {
				t.Errorf("ESCAPE: the forge's repository changed:\n%s\nwas:\n%s", after, before)
			}
			if tc.canary {
				found := false
				for _, e := range entries()[n:] {
					found = found || e.Decision == audit.Block && e.Canary && e.Secret == "CANARY" && e.Git != nil
				}
				if !found {
					t.Error("no block line with canary: true for the push")
				}
			}
		})
	}
	if other := f.git(t, "acme/other.git", "for-each-ref"); strings.Contains(other, "agent/") {
		t.Errorf("ESCAPE: the unlisted repository got %s", other)
	}
	if data, _ := os.ReadFile(filepath.Join(st.EgressDir(slug), state.AuditLogFile)); bytes.Contains(data, []byte(canary)) || bytes.Contains(data, []byte(testToken)) {
		t.Error("the audit log carries a secret")
	}
}
