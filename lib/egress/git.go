package egress

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
	"github.com/bb-bottles/bb/lib/gitgate"
	"github.com/bb-bottles/bb/lib/routes"
)

// GitConfig configures the git gate of the routes that have git.
type GitConfig struct {
	// Dir holds the pushes being scanned (spool/) and the gate's mirrors
	// of upstream repositories (mirror/); empty: "git" beside the routes
	// file.
	Dir string
	// Limits bound one push (zero fields take gitgate's defaults).
	Limits gitgate.Limits
	// MaxPushes is how many pushes are read and scanned at once (2); a
	// push waits BodySlotWait for its turn, then is answered 503.
	MaxPushes int
}

// gitState is the gate's: its folders, its mirrors, its turns.
type gitState struct {
	once    sync.Once
	err     error
	spool   string
	mirrors string
	slots   chan struct{}
	mu      sync.Mutex
	mirror  map[string]*gitgate.Mirror // by host and repository
}

func (s *Server) gitInit() (*gitState, error) {
	g := &s.git
	g.once.Do(func() {
		c := s.cfg.Git
		if c.Dir == "" {
			c.Dir = filepath.Join(filepath.Dir(s.cfg.RoutesFile), "git")
		}
		if c.MaxPushes <= 0 {
			c.MaxPushes = 2
		}
		g.spool, g.mirrors = filepath.Join(c.Dir, "spool"), filepath.Join(c.Dir, "mirror")
		g.slots = make(chan struct{}, c.MaxPushes)
		g.mirror = map[string]*gitgate.Mirror{}
		// A push spooled by a sidecar that died is nobody's now.
		os.RemoveAll(g.spool)
		if err := os.MkdirAll(g.spool, 0o700); err != nil {
			g.err = fmt.Errorf("making the git gate's folder: %w", err)
		}
	})
	return g, g.err
}

// serveGit takes a request matched to a git route. It returns the git line
// of its log entry, and whether it answered the request itself (a refusal,
// or a push it judged): when it did not, the request goes on as any other
// (a fetch of a listed repository, or a path the route's paths allow).
func (s *Server) serveGit(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, rt *routes.Route, t target) (*audit.Git, bool) {
	if !routes.IsGitPath(r.URL.Path) {
		return nil, false
	}
	ep, err := gitgate.ParseEndpoint(r.Method, r.URL.EscapedPath(), r.URL.RawQuery)
	if err != nil {
		reason := err.Error()
		s.refuse(w, r, snap, e, http.StatusForbidden, audit.Deny, reason, "bb-egress: "+reason+"\n")
		return nil, true
	}
	service := strings.TrimPrefix(ep.Service, "git-")
	e.Git = &audit.Git{Repo: s.redact(snap, ep.Repo), Service: service}
	if !rt.Git.HasRepo(ep.Repo) {
		reason := fmt.Sprintf("repository %s on %s is not in the route's git repos (%s)", ep.Repo, t.host, strings.Join(rt.Git.Repos, ", "))
		s.refuse(w, r, snap, e, http.StatusForbidden, audit.Deny, reason,
			"bb-egress: "+reason+"\nask the human to add it to the route's git repos (on the host: bb-egress routes "+s.slug()+", then bb-egress apply)\n")
		return nil, true
	}
	if ep.Service == gitgate.UploadPack {
		return e.Git, false
	}
	if rt.Git.ReadOnly() {
		reason := fmt.Sprintf("pushes to %s on %s are refused: the route's git lists no refs to push (read-only)", ep.Repo, t.host)
		s.refuse(w, r, snap, e, http.StatusForbidden, audit.Deny, reason, "bb-egress: "+reason+"\n")
		return nil, true
	}
	g, err := s.gitInit()
	if err != nil {
		s.refuse(w, r, snap, e, http.StatusInternalServerError, audit.Deny, err.Error(), "bb-egress: "+err.Error()+"\n")
		return nil, true
	}
	if ep.Advert {
		s.gitAdvert(w, r, snap, e, rt, t)
		return nil, true
	}
	s.gitPush(w, r, snap, e, rt, t, g, ep)
	return nil, true
}

// gitAdvert answers info/refs?service=git-receive-pack with the
// upstream's refs and capabilities, asking git for a self-contained pack
// (no-thin) and for no signed push.
func (s *Server) gitAdvert(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, rt *routes.Route, t target) {
	h := http.Header{"Accept": {"*/*"}}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		h.Set("User-Agent", ua)
	}
	resp, err := s.gitRoundTrip(r.Context(), rt, t, http.MethodGet, r.URL.Path, r.URL.RawQuery, h, nil, 0)
	if err != nil {
		s.gitUpstreamFailed(w, r, snap, e, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-git-receive-pack-advertisement" {
		s.gitRelay(w, r, snap, e, resp, resp.Body, "the upstream's answer to info/refs")
		return
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(gitgate.RewriteAdvert(pw, resp.Body)) }()
	defer pr.Close()
	s.gitRelay(w, r, snap, e, resp, pr, "allowed by route "+rt.String()+": the refs to push to, the client asked for a self-contained pack")
}

// gitPush reads a push to a spool file, has the gate judge it, and sends
// it upstream only if the gate lets it: a refused push never opens a
// connection to the upstream.
func (s *Server) gitPush(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, rt *routes.Route, t target, g *gitState, ep gitgate.Endpoint) {
	select {
	case g.slots <- struct{}{}:
	default:
		timer := time.NewTimer(s.cfg.BodySlotWait)
		select {
		case g.slots <- struct{}{}:
			timer.Stop()
		case <-timer.C:
			reason := fmt.Sprintf("no turn to scan the push within %v: %d pushes are being scanned", s.cfg.BodySlotWait, cap(g.slots))
			s.refuse(w, r, snap, e, http.StatusServiceUnavailable, audit.Deny, reason, "bb-egress: busy: "+reason+"; retry\n")
			return
		case <-r.Context().Done():
			timer.Stop()
			return
		}
	}
	defer func() { <-g.slots }()

	lim := s.cfg.Git.Limits
	lim.SetDefaults()
	spool, fail := s.spoolPush(w, r, g.spool, lim.MaxPack+int64(lim.MaxText)+(1<<16))
	if fail != "" {
		s.refuse(w, r, snap, e, http.StatusUnsupportedMediaType, audit.Deny, fail, "bb-egress: "+fail+"\n")
		return
	}
	defer spool.Close()

	base := (&url.URL{Scheme: t.scheme, Host: t.hostport(), Path: strings.TrimSuffix(r.URL.Path, "/"+gitgate.ReceivePack)}).String()
	m := s.gitMirror(g, rt, t, ep.Repo, snap)
	sess, err := m.Session(base)
	if err != nil {
		spool.Size() //nolint:errcheck // the body is read whole before any answer
		s.refuse(w, r, snap, e, http.StatusInternalServerError, audit.Deny, err.Error(), "bb-egress: "+err.Error()+"\n")
		return
	}
	defer sess.Close()
	gate := &gitgate.Gate{Detector: snap.detectorFor(rt), Git: rt.Git, Repo: t.host + "/" + ep.Repo,
		Limits: lim, Dir: g.spool, Upstream: sess}
	v, err := gate.CheckBody(r.Context(), spool)
	// The answer waits for the whole body, whatever the gate made of it:
	// git reads no answer before it has sent everything.
	size, berr := spool.Size()
	if berr != nil && err == nil && v.Refusal != nil && v.Refusal.Hit != nil {
		berr = nil // a secret was found: that is what the log must say
	}
	if berr != nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		status := http.StatusBadRequest
		var le *gitgate.LimitError
		if errors.As(berr, &le) {
			status = http.StatusRequestEntityTooLarge
		}
		reason := "reading the push: " + berr.Error()
		s.refuse(w, r, snap, e, status, audit.Deny, reason, "bb-egress: "+reason+"; nothing was sent upstream\n")
		return
	}
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		reason := "judging the push: " + err.Error()
		s.refuse(w, r, snap, e, http.StatusBadGateway, audit.Deny, reason, "bb-egress: "+reason+"; nothing was sent upstream\n")
		return
	}
	e.Git = s.pushLine(snap, ep.Repo, v)
	if v.Refusal != nil {
		s.gitRefuse(w, r, snap, e, v)
		return
	}
	h := http.Header{"Content-Type": {"application/x-git-receive-pack-request"}, "Accept": {"application/x-git-receive-pack-result"}}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		h.Set("User-Agent", ua)
	}
	resp, err := s.gitRoundTrip(r.Context(), rt, t, http.MethodPost, r.URL.Path, "", h, io.NewSectionReader(spool, 0, size), size)
	if err != nil {
		s.gitUpstreamFailed(w, r, snap, e, err)
		return
	}
	defer resp.Body.Close()
	e.BytesUp = size
	reason := "allowed by route " + rt.String()
	if len(v.Update.Commands) == 0 {
		reason += ": git's probe before a push"
	} else {
		reason += fmt.Sprintf(": every object scanned (%d), refs allowed and fast-forwards", v.Objects)
	}
	s.gitRelay(w, r, snap, e, resp, resp.Body, reason)
}

// spoolPush starts writing the request body, decoded, to a spool file as
// it arrives, at most max bytes: what the gate judges and what goes
// upstream are then the same bytes, and the gate reads them while they
// come.
func (s *Server) spoolPush(w http.ResponseWriter, r *http.Request, dir string, max int64) (*gitgate.Spool, string) {
	// Each read from the client must bring something within the timeout:
	// a stalled push must not hold its turn.
	rc := http.NewResponseController(w)
	var body io.Reader = &pacedBody{r: r.Body, rc: rc, timeout: s.cfg.BodyReadTimeout}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		// git-http-backend takes these two, and no other. The gzip
		// header is read in the spooling goroutine, with the rest.
		body = &lazyGzip{r: body}
	default:
		return nil, fmt.Sprintf("a push with content-encoding %q: git's server takes gzip only", enc)
	}
	f, err := os.CreateTemp(dir, "push-*")
	if err != nil {
		return nil, "spooling the push: " + err.Error()
	}
	sp := gitgate.NewSpool(f)
	go func() {
		defer rc.SetReadDeadline(time.Time{}) //nolint:errcheck // not every connection has deadlines
		n, err := io.Copy(sp, io.LimitReader(body, max+1))
		if err == nil && n > max {
			err = &gitgate.LimitError{Msg: fmt.Sprintf("the push is over the gate's %d bytes", max)}
		}
		sp.Finish(err)
	}()
	return sp, ""
}

// lazyGzip decodes gzip, reading the header on the first Read.
type lazyGzip struct {
	r  io.Reader
	zr *gzip.Reader
}

func (l *lazyGzip) Read(p []byte) (int, error) {
	if l.zr == nil {
		zr, err := gzip.NewReader(l.r)
		if err != nil {
			return 0, fmt.Errorf("the push does not decode as gzip: %w", err)
		}
		l.zr = zr
	}
	return l.zr.Read(p)
}

// pushLine is the log's git line of a push.
func (s *Server) pushLine(snap *snapshot, repo string, v *gitgate.Verdict) *audit.Git {
	g := &audit.Git{Repo: s.redact(snap, repo), Service: "receive-pack", Objects: int64(v.Objects), PackBytes: v.PackBytes}
	if v.Update == nil {
		return g
	}
	g.RefCount = len(v.Update.Commands)
	for i, c := range v.Update.Commands {
		if i == audit.MaxGitRefs {
			break
		}
		g.Refs = append(g.Refs, audit.GitRef{Ref: s.redact(snap, c.Ref), Old: c.Old, New: c.New})
	}
	return g
}

// gitRefuse answers a refused push as receive-pack would (report-status
// with ng lines, the reasons also on side-band), so that git push prints
// why; a client that asked for neither gets a 403.
func (s *Server) gitRefuse(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, v *gitgate.Verdict) {
	ref := v.Refusal
	decision := audit.Deny
	if ref.Hit != nil {
		decision = audit.Block
		e = blockEntry(e, *ref.Hit)
	}
	reason := "push refused, nothing sent upstream: " + ref.Reason
	if v.Update == nil || !gitgate.CanReport(v.Update) {
		s.refuse(w, r, snap, e, http.StatusForbidden, decision, reason, "bb-egress: "+reason+"\n")
		return
	}
	msgs := make([]string, len(ref.Messages))
	for i, m := range ref.Messages {
		msgs[i] = s.redact(snap, m)
	}
	per := map[string]string{}
	for k, m := range ref.PerRef {
		per[k] = s.redact(snap, m)
	}
	h := w.Header()
	h.Set("Content-Type", gitgate.ResultType)
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	cw := &countWriter{w: w}
	redact := func(str string) string { return s.redact(snap, str) }
	gitgate.WriteRefusal(cw, v.Update, msgs, per, s.redact(snap, ref.Others), redact) //nolint:errcheck // the client may be gone; the log says what it was told
	e.Status, e.Decision, e.Reason = http.StatusOK, decision, s.redact(snap, reason)
	e.BytesDown = cw.n
	s.finishGit(snap, e)
}

// finishGit logs a line the gate wrote itself, one per push, through the
// client's log budget like every line (a refused push sent nothing
// upstream; see limit.go).
func (s *Server) finishGit(snap *snapshot, e audit.Entry) {
	e.Host = s.redact(snap, e.Host)
	e.Path = s.redact(snap, e.Path)
	e.Query = s.redact(snap, e.Query)
	e.DurationMS = ms(time.Since(e.Time))
	s.audit(e) // under the client's log budget, as every line
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// gitRoundTrip sends the gate's own request to the route's upstream, with
// the route's credential.
func (s *Server) gitRoundTrip(ctx context.Context, rt *routes.Route, t target, method, path, query string, h http.Header, body io.Reader, n int64) (*http.Response, error) {
	out := &http.Request{Method: method, URL: &url.URL{Scheme: t.scheme, Host: t.hostport(), Path: path, RawQuery: query},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Host: t.hostport(), ContentLength: n, Body: http.NoBody}
	if body != nil {
		out.Body = io.NopCloser(body)
	}
	if err := s.inject(rt, t, out.Header); err != nil {
		return nil, err
	}
	return s.transport.RoundTrip(out.WithContext(ctx))
}

// inject sets the route's credential on h.
func (s *Server) inject(rt *routes.Route, t target, h http.Header) error {
	in := rt.Inject
	if in == nil {
		return nil
	}
	if t.scheme != "https" {
		return &gitError{fmt.Sprintf("route %s injects the token %s, which is never sent over plain http", rt, in.Token)}
	}
	tok := s.tokens[in.Token]
	if tok == "" {
		return &gitError{fmt.Sprintf("the route's token %s is not set on the sidecar (EGRESS_TOKEN_%s)", in.Token, in.Token)}
	}
	h.Set(in.Header, in.Value(tok))
	return nil
}

type gitError struct{ msg string }

func (e *gitError) Error() string { return e.msg }

func (s *Server) gitUpstreamFailed(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, err error) {
	var ge *gitError
	if errors.As(err, &ge) {
		s.refuse(w, r, snap, e, http.StatusBadGateway, audit.Deny, ge.msg, "bb-egress: "+ge.msg+"\n")
		return
	}
	status, reason := upstreamError(err)
	decision := audit.Allow
	if isRefused(err) {
		status, decision = http.StatusForbidden, audit.Deny
	}
	s.refuse(w, r, snap, e, status, decision, reason, "bb-egress: "+reason+"\n")
}

// gitRelay passes the upstream's answer to the client as it comes
// (side-band progress included), through the guard of injected tokens.
func (s *Server) gitRelay(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, resp *http.Response, body io.Reader, reason string) {
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusProxyAuthRequired {
		// git would ask for a user and password it cannot have: say why.
		why := fmt.Sprintf("the upstream answered %s to the route's credential (or to none): check the route's inject and its token", resp.Status)
		e.BytesUp = 0
		s.refuse(w, r, snap, e, http.StatusForbidden, audit.Allow, why, "bb-egress: "+why+"\n")
		return
	}
	if cs, err := responseCodings(resp.Header); snap.injected != nil && (err != nil || len(cs) > 0) {
		// The gate asks for no coding; a coded answer would hide a token
		// from the guard below (see response.go).
		s.responseRefused(w, r, snap, e, &responseFail{reason: "the upstream's answer to the git gate has a Content-Encoding it did not ask for"})
		return
	}
	redacted := screenHeader(snap, resp.Header)
	if snap.injected != nil {
		g := snap.responseGuard(body)
		defer snap.putGuard(g)
		body = g
	}
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	for _, k := range connectionHeaders(resp.Header) {
		h.Del(k)
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
	h.Del("Content-Length") // a rewritten advertisement is not the upstream's length
	w.WriteHeader(resp.StatusCode)
	sent, err := copyBody(w, body, true, nil, nil)
	e.BytesDown, e.Status, e.Decision, e.Reason = sent, resp.StatusCode, audit.Allow, reason
	if redacted != "" {
		e.Reason += "; " + redacted // screenHeader's note says what it is
	}
	if hit, ok := detect.IsHit(err); ok {
		s.responseBlock(w, r, snap, e, hit, true)
		return
	}
	if err != nil {
		// The error may quote what the upstream sent.
		e.Reason += "; response cut short: " + s.redact(snap, err.Error())
	}
	s.finishGit(snap, e)
}

// gitMirror returns the gate's mirror of repo on the route's host.
func (s *Server) gitMirror(g *gitState, rt *routes.Route, t target, repo string, snap *snapshot) *gitgate.Mirror {
	key := t.hostport() + "/" + repo
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.mirror[key]; ok {
		return m
	}
	sum := sha256.Sum256([]byte(key))
	dir := filepath.Join(g.mirrors, safeName(t.hostport())+"-"+hex.EncodeToString(sum[:6]))
	lim := s.cfg.Git.Limits
	m := &gitgate.Mirror{Dir: dir, Limits: lim, Client: &http.Client{
		Transport:     &mirrorTransport{s: s, rt: *rt, t: t, repo: repo},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	g.mirror[key] = m
	return m
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, strings.ToLower(s))
}

// mirrorTransport carries the mirror's fetches: to the route's upstream
// only, with its credential, through the sidecar's checked dialer, each
// logged.
type mirrorTransport struct {
	s    *Server
	rt   routes.Route
	t    target
	repo string
}

func (m *mirrorTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != m.t.hostport() || req.URL.Scheme != m.t.scheme {
		return nil, fmt.Errorf("the mirror of %s reaches only %s://%s", m.repo, m.t.scheme, m.t.hostport())
	}
	start := time.Now()
	out := req.Clone(req.Context())
	if err := m.s.inject(&m.rt, m.t, out.Header); err != nil {
		return nil, err
	}
	resp, err := m.s.transport.RoundTrip(out)
	e := audit.Entry{Time: start.UTC(), Method: req.Method, Host: m.t.host, Path: req.URL.Path, Query: req.URL.RawQuery,
		Route: m.rt.String(), Client: Hostname, Decision: audit.Allow,
		Git:    &audit.Git{Repo: m.repo, Service: "upload-pack"},
		Reason: "the git gate's own fetch into its mirror of " + m.repo + ", to judge a push"}
	if err != nil {
		e.Reason += ": " + err.Error()
	} else {
		e.Status = resp.StatusCode
	}
	e.DurationMS = ms(time.Since(start))
	if m.s.cfg.Audit != nil {
		m.s.writeAudit(e)
	}
	return resp, err
}
