package egress

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
	"github.com/bb-bottles/bb/lib/routes"
)

// snapshot is one immutable generation of routes and the detectors built
// for them; a request keeps the snapshot it started with.
type snapshot struct {
	table *routes.Table
	// all finds every secret and every route's placeholder. Like every
	// detector here it folds case: header names are case-folded on the way
	// out (canonicalised in HTTP/1, lower-cased in HTTP/2), hex and percent
	// escapes mean the same in either case, and a secret changed only in
	// case is still most of the secret.
	all *detect.Detector
	// own[p] is all without placeholder p: what the requests of a route
	// whose placeholder is p are scanned with, since p is overwritten there.
	own map[string]*detect.Detector
	// injected finds the values the routes inject, in their forms and in
	// any case (an upstream that echoes a request upper-cased hands out a
	// hex token whole), though not through the decoded views: it runs on
	// every response byte, and what it guards against is an upstream
	// echoing a request, not the agent encoding. Nil when no route injects.
	injected *detect.Detector
	guards   sync.Pool // *detect.Guard of injected: a response's guard and its buffer, reused
	// literalIPs are the IP literals routes name; only these may be
	// loopback or link-local without AllowLoopback.
	literalIPs map[netip.Addr]bool
}

// find looks for any secret or placeholder in str, in any case and
// through its decoded and flattened views.
func (sn *snapshot) find(str string) (detect.Hit, bool) {
	if sn.all == nil {
		return detect.Hit{}, false
	}
	return sn.all.SearchString(str)
}

// detectorFor returns the detector for requests matched to rt (nil: no
// route).
func (sn *snapshot) detectorFor(rt *routes.Route) *detect.Detector {
	if rt != nil && rt.Inject != nil && rt.Inject.Placeholder != "" {
		if d, ok := sn.own[rt.Inject.Placeholder]; ok {
			return d
		}
	}
	return sn.all
}

// responseGuard returns a guard of body for the injected tokens, from the
// pool; give it back with putGuard when nothing reads it any more.
func (sn *snapshot) responseGuard(body io.Reader) *detect.Guard {
	if g, ok := sn.guards.Get().(*detect.Guard); ok {
		g.Reset(body)
		return g
	}
	return sn.injected.GuardTight(body)
}

func (sn *snapshot) putGuard(g *detect.Guard) {
	g.Reset(nil)
	sn.guards.Put(g)
}

type fileStat struct {
	mtime time.Time
	size  int64
	ino   uint64
	dev   uint64
}

func statFile(path string) (fileStat, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStat{}, err
	}
	st := fileStat{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino, st.dev = uint64(sys.Ino), uint64(sys.Dev)
	}
	return st, nil
}

// load reads and validates the routes file and builds a snapshot.
func (s *Server) load() (*snapshot, fileStat, error) {
	st, _ := statFile(s.cfg.RoutesFile) // before reading: a change after it is seen next time
	data, err := os.ReadFile(s.cfg.RoutesFile)
	if err != nil {
		return nil, st, fmt.Errorf("reading routes: %w", err)
	}
	rs, err := routes.Parse(data, s.cfg.RoutesFile)
	if err != nil {
		return nil, st, err
	}
	tbl, err := routes.NewTable(rs)
	if err != nil {
		return nil, st, fmt.Errorf("reading routes %s: %w", s.cfg.RoutesFile, err)
	}
	snap, err := s.build(tbl)
	return snap, st, err
}

// build makes the detectors of a table: every secret, plus every
// placeholder named PLACEHOLDER_<TOKEN>.
func (s *Server) build(tbl *routes.Table) (*snapshot, error) {
	base := append([]detect.Secret(nil), s.cfg.Secrets...)
	var holders []detect.Secret
	seen := map[string]bool{}
	names := map[string]bool{}
	for _, sec := range base {
		names[sec.Name] = true
	}
	snap := &snapshot{table: tbl, own: map[string]*detect.Detector{}, literalIPs: map[netip.Addr]bool{}}
	var injected []detect.Secret
	injecting := map[string]bool{}
	for _, r := range tbl.Routes() {
		if ip, err := netip.ParseAddr(r.Host); err == nil {
			snap.literalIPs[ip.Unmap()] = true
		}
		if r.Inject != nil && !injecting[r.Inject.Token] && len(s.tokens[r.Inject.Token]) >= detect.MinLen {
			injecting[r.Inject.Token] = true
			injected = append(injected, detect.Secret{Name: r.Inject.Token, Value: s.tokens[r.Inject.Token]})
		}
		if r.Inject == nil || r.Inject.Placeholder == "" || seen[r.Inject.Placeholder] {
			continue
		}
		seen[r.Inject.Placeholder] = true
		name := "PLACEHOLDER_" + r.Inject.Token
		for i := 2; names[name]; i++ {
			name = fmt.Sprintf("PLACEHOLDER_%s_%d", r.Inject.Token, i)
		}
		names[name] = true
		holders = append(holders, detect.Secret{Name: name, Value: r.Inject.Placeholder})
	}
	var err error
	if len(injected) > 0 {
		if snap.injected, err = detect.NewFolded(injected); err != nil {
			return nil, fmt.Errorf("building the response guard: %w", err)
		}
	}
	if snap.all, err = newDetector(append(base, holders...)); err != nil {
		return nil, err
	}
	for _, h := range holders {
		var others []detect.Secret
		for _, o := range holders {
			if o.Value != h.Value {
				others = append(others, o)
			}
		}
		if snap.own[h.Value], err = newDetector(append(append([]detect.Secret(nil), base...), others...)); err != nil {
			return nil, err
		}
	}
	return snap, nil
}

func newDetector(ss []detect.Secret) (*detect.Detector, error) {
	if len(ss) == 0 {
		return nil, nil
	}
	d, err := detect.NewFolded(ss)
	if err != nil {
		return nil, fmt.Errorf("building the secret detector: %w", err)
	}
	return d, nil
}

// Reload re-reads the routes file. A valid file replaces the routes at
// once (requests in flight keep the routes they started with); an invalid
// one is refused, logged, and the old routes stay in force.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.reloadLocked()
}

func (s *Server) reloadLocked() error {
	snap, st, err := s.load()
	s.seen = st
	e := audit.Entry{Method: "RELOAD", Path: s.cfg.RoutesFile, Host: Hostname}
	if err != nil {
		e.Decision, e.Reason = audit.Deny, "routes file refused, old routes stay in force: "+s.redact(s.state.Load(), err.Error())
		s.audit(e)
		s.cfg.Logf("%s", e.Reason)
		return err
	}
	s.state.Store(snap)
	e.Decision, e.Reason = audit.Allow, fmt.Sprintf("routes reloaded: %d routes", len(snap.table.Routes()))
	s.audit(e)
	s.cfg.Logf("%s", e.Reason)
	return nil
}

// watch polls the routes file by path, so a replacement by rename (the
// way editors and bb-egress apply write it, also inside a bind-mounted
// folder, where inotify on the old inode sees nothing) is noticed.
func (s *Server) watch(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := statFile(s.cfg.RoutesFile)
		if err != nil {
			continue // mid-rename or removed: keep the routes in force
		}
		s.reloadMu.Lock()
		if st != s.seen {
			s.reloadLocked() //nolint:errcheck // logged
		}
		s.reloadMu.Unlock()
	}
}
