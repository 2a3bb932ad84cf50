package gitgate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/bb-bottles/bb/lib/detect"
	"github.com/bb-bottles/bb/lib/routes"
)

// Limits bound what the gate reads of one push; past each, the push is
// refused with a message that names it. Zero fields take the defaults.
// Memory is about 60 bytes per object of the pack, plus a few buffers of
// ScanWhole and MaxMeta, whatever the objects' sizes: contents stream, and
// what deltas are based on is kept in a scratch file.
type Limits struct {
	MaxPack         int64 // the request body (2 GiB)
	MaxObjects      int   // objects in the pack (500,000)
	MaxObject       int64 // one object, resolved (512 MiB)
	MaxMeta         int64 // a commit, tree or tag, read whole (16 MiB)
	MaxResolved     int64 // every object resolved, and every blob decompressed, together (8 GiB)
	MaxDecompressed int64 // one gzip or zlib blob, decompressed (256 MiB)
	ScanWhole       int64 // blobs up to this size are searched whole, through every view the detector has (4 MiB)
	MaxCommands     int   // refs one push updates (10,000)
	MaxDepth        int   // a delta chain (4095, git's own maximum)
	MaxWalk         int   // commits walked to decide a fast-forward (500,000)
	MaxText         int   // ref names, push options and capabilities together (4 MiB)
}

// SetDefaults fills the zero fields.
func (l *Limits) SetDefaults() {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	defi := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxPack, 2<<30)
	defi(&l.MaxObjects, 500_000)
	def(&l.MaxObject, 512<<20)
	def(&l.MaxMeta, 16<<20)
	def(&l.MaxResolved, 8<<30)
	def(&l.MaxDecompressed, 256<<20)
	def(&l.ScanWhole, 4<<20)
	defi(&l.MaxCommands, 10_000)
	defi(&l.MaxDepth, 4095)
	defi(&l.MaxWalk, 500_000)
	defi(&l.MaxText, 4<<20)
}

// Upstream is what the gate can learn of the upstream repository beyond a
// push: the history a fast-forward is decided against, and the bases of a
// thin pack. A Mirror is one.
type Upstream interface {
	// Parents returns the parents of commit id; ok is false when the
	// upstream has no such commit.
	Parents(ctx context.Context, id Hash) (parents []Hash, ok bool, err error)
	// Object writes the content of object id to w and returns its type;
	// ok is false when the upstream has no such object.
	Object(ctx context.Context, id Hash, w io.Writer) (typ uint8, ok bool, err error)
}

// Gate judges the pushes to one repository of a git route.
type Gate struct {
	// Detector finds the secrets; nil finds none.
	Detector *detect.Detector
	// Git is the route's git field: which refs may be pushed.
	Git *routes.Git
	// Repo is the repository, for messages.
	Repo   string
	Limits Limits
	// Dir is where the gate keeps a push's scratch file.
	Dir string
	// Upstream is the upstream's history and objects; nil when the gate
	// has no view of it (a fast-forward is then decided within the pack
	// alone, and a thin pack refused).
	Upstream Upstream
}

// Verdict is the gate's answer to one push.
type Verdict struct {
	// Update is the push's head; nil when it did not parse.
	Update *Update
	// Objects and PackBytes describe its pack.
	Objects   int
	PackBytes int64
	// Refusal says why the push must not go upstream; nil when it may.
	Refusal *Refusal
}

// Refusal is why a push is refused, in the forms the client and the log
// need.
type Refusal struct {
	// Hit is the secret found, when that is why (a block, not a deny).
	Hit *detect.Hit
	// Reason is one line for the log.
	Reason string
	// PerRef is the ng reason of each ref at fault; Others that of the
	// rest of the push's refs.
	PerRef map[string]string
	Others string
	// Messages are for people: remote: lines.
	Messages []string
}

func (g *Gate) refuse(reason string, perRef map[string]string) *Refusal {
	r := &Refusal{Reason: reason, PerRef: perRef, Others: "bb-egress: refused with the rest of the push: " + reason}
	if len(perRef) == 0 {
		r.Others = "bb-egress: " + reason
	}
	r.Messages = []string{
		"bb-egress: push to " + g.Repo + " refused; nothing was sent upstream",
		"bb-egress: " + reason,
	}
	return r
}

// Check reads a receive-pack request body of size bytes and decides
// whether it may go upstream as it is. Only a failure to read body, or ctx
// ending, is an error; every refusal is in the Verdict.
func (g *Gate) Check(ctx context.Context, body io.ReaderAt, size int64) (*Verdict, error) {
	return g.CheckBody(ctx, whole{body, size})
}

// CheckBody is Check on a body that may still be arriving (a Spool): the
// gate reads it as it comes, so most of the work is done by the time the
// client has sent the last byte. An error from the body itself (it ended
// short) is returned as is.
func (g *Gate) CheckBody(ctx context.Context, body Body) (*Verdict, error) {
	v, err := g.checkBody(ctx, body)
	if err == nil && v.Refusal != nil && v.Refusal.Hit == nil {
		// What did not parse may just be a body that ended short: that is
		// the body's error, not the push's fault. (A secret found is the
		// push's, however the body ended.)
		if _, berr := body.Size(); berr != nil {
			return nil, berr
		}
	}
	return v, err
}

func (g *Gate) checkBody(ctx context.Context, body Body) (*Verdict, error) {
	g.Limits.SetDefaults()
	v := &Verdict{}
	const open = 1 << 62 // the body's end: where reads of it stop
	u, err := ReadUpdate(io.NewSectionReader(body, 0, open),
		UpdateLimits{MaxCommands: g.Limits.MaxCommands, MaxOptions: g.Limits.MaxCommands, MaxText: g.Limits.MaxText})
	if errors.Is(err, errShort) {
		_, err = body.Size()
		return nil, err
	}
	if err != nil {
		var pe *errPkt
		var ee *EndpointError
		var le *LimitError
		if !errors.As(err, &pe) && !errors.As(err, &ee) && !errors.As(err, &le) {
			return nil, err
		}
		v.Refusal = g.refuse(err.Error(), nil)
		return v, nil
	}
	v.Update = u
	if hit, ok := g.search(u.Text); ok {
		r := g.refuse(fmt.Sprintf("secret %s in a ref name, push option or capability", hit.Secret), nil)
		r.Hit = &hit
		v.Refusal = r
		return v, nil
	}
	if len(u.Commands) == 0 {
		size, err := body.Size()
		if err != nil {
			return nil, err
		}
		// Only git's probe goes: anything else with no command (shallow
		// lines, data after the flush) is no push at all.
		if !u.Probe() || u.HeadLen != size {
			v.Refusal = g.refuse("a request with no ref to update that is not git's 4-byte probe", nil)
		}
		return v, nil
	}
	// A push the policy refuses is still read: a secret in it is named in
	// the log (the canary is proof of an attempt, whatever else is wrong).
	pol := g.policy(u)
	var first [1]byte
	if n, err := body.ReadAt(first[:], u.HeadLen); n == 0 {
		if errors.Is(err, errShort) {
			_, err = body.Size()
			return nil, err
		}
		v.Refusal = cmp.Or(pol, g.refuse("the push updates refs but sends no pack", nil))
		return v, nil
	}
	packSize := func() (int64, error) {
		size, err := body.Size()
		if err != nil {
			return 0, err
		}
		v.PackBytes = size - u.HeadLen
		if v.PackBytes > g.Limits.MaxPack {
			return 0, &LimitError{fmt.Sprintf("the pack is %d bytes, over the gate's %d", v.PackBytes, g.Limits.MaxPack)}
		}
		return v.PackBytes, nil
	}
	st, err := newStore(g.Dir, g.Limits.MaxResolved)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	sc := newScanner(g.Detector, &g.Limits)
	defer sc.finish() //nolint:errcheck // finished below on every path that reads what it found
	var extern externalFunc
	if g.Upstream != nil && pol == nil {
		extern = func(ctx context.Context, id Hash, w io.Writer) (uint8, bool, error) {
			if sc.any.Load() {
				// A secret is found already: the rest is only read to say
				// where, never worth a fetch.
				return 0, false, nil
			}
			return g.Upstream.Object(ctx, id, w)
		}
	}
	p, err := readPack(ctx, io.NewSectionReader(body, u.HeadLen, open), packSize, st, &g.Limits, sc.visit, extern)
	if errors.Is(err, errShort) {
		_, err = body.Size()
		return nil, err
	}
	if ferr := sc.finish(); ferr != nil && err == nil {
		err = ferr
	}
	if p != nil {
		v.Objects = len(p.entries)
	}
	if sc.found != nil {
		// The secret is the reason, whether the rest parsed or not.
		h := sc.found
		where := "a " + h.What
		if p != nil {
			h.ID = p.entries[h.Object].hash
			where = g.locate(p, sc, h)
		}
		r := g.refuse(fmt.Sprintf("secret %s (%s) in %s", h.Hit.Secret, h.Hit.Encoding, where), nil)
		r.Hit = &h.Hit
		v.Refusal = r
		return v, nil
	}
	if pol != nil {
		v.Refusal = pol
		return v, nil
	}
	if err != nil {
		var le *LimitError
		var pe *PackError
		switch {
		case errors.As(err, &le):
			v.Refusal = g.refuse(le.Msg, nil)
		case errors.As(err, &pe):
			v.Refusal = g.refuse(pe.Error(), nil)
		default:
			return nil, err
		}
		return v, nil
	}
	v.Objects = len(p.entries)
	if r, err := g.fastForwards(ctx, u, p, sc); err != nil || r != nil {
		v.Refusal = r
		return v, err
	}
	return v, nil
}

func (g *Gate) search(b []byte) (detect.Hit, bool) {
	if g.Detector == nil {
		return detect.Hit{}, false
	}
	return g.Detector.Search(b)
}

// policy refuses a push that deletes a ref, updates one outside the
// route's push list, moves a tag, or names a ref git would not take.
func (g *Gate) policy(u *Update) *Refusal {
	per := map[string]string{}
	first := ""
	add := func(ref, why string) {
		if _, ok := per[ref]; !ok {
			per[ref] = "bb-egress: " + why
		}
		if first == "" {
			first = why
		}
	}
	for _, c := range u.Commands {
		switch {
		case !routes.ValidRefName(c.Ref):
			add(c.Ref, fmt.Sprintf("%q is not a valid ref name", c.Ref))
		case c.Delete():
			add(c.Ref, fmt.Sprintf("deleting %s is refused: the gate never deletes a ref", c.Ref))
		case g.Git.ReadOnly():
			add(c.Ref, fmt.Sprintf("%s is read-only: its route's git lists no refs to push", g.Repo))
		case g.Git.PushAllowed(c.Ref) == "":
			add(c.Ref, fmt.Sprintf("%s is not a ref the route lets the agent push (push: %s)", c.Ref, strings.Join(g.Git.Push, ", ")))
		case strings.HasPrefix(c.Ref, "refs/tags/") && !c.Create():
			add(c.Ref, fmt.Sprintf("%s exists: the gate never moves a tag", c.Ref))
		}
	}
	if first == "" {
		return nil
	}
	return g.refuse(first, per)
}

// fastForwards refuses an update whose old commit is not an ancestor of
// its new one (git merge-base --is-ancestor old new), walking the pack's
// commits and then the upstream's history.
func (g *Gate) fastForwards(ctx context.Context, u *Update, p *pack, sc *scanner) (*Refusal, error) {
	byID := make(map[Hash]int32, len(sc.commits))
	for k, c := range sc.commits {
		byID[p.entries[c.obj].hash] = int32(k)
	}
	commits := func(id Hash) ([]Hash, bool) {
		k, ok := byID[id]
		if !ok {
			return nil, false
		}
		return sc.parentsOf(sc.commits[k]), true
	}
	per := map[string]string{}
	first := ""
	for _, c := range u.Commands {
		if c.Create() {
			// What a new ref points at must be in the pack or upstream:
			// an id that is neither would be twenty bytes of the agent's
			// choosing on their way out, refused only once there.
			if _, ok := commits(hashOf(c.New)); ok || p.find(hashOf(c.New)) >= 0 {
				continue
			}
			ok := false
			if g.Upstream != nil {
				// A commit, most likely: its history alone is fetched for
				// it; anything else needs the upstream's objects.
				var err error
				if _, ok, err = g.Upstream.Parents(ctx, hashOf(c.New)); err == nil && !ok {
					_, ok, err = g.Upstream.Object(ctx, hashOf(c.New), io.Discard)
				}
				if err != nil {
					return nil, err
				}
			}
			if !ok {
				reason := fmt.Sprintf("%s: %s is neither in the pack nor upstream", c.Ref, short(c.New))
				per[c.Ref] = "bb-egress: " + reason
				if first == "" {
					first = reason
				}
			}
			continue
		}
		old, nu := hashOf(c.Old), hashOf(c.New)
		ok, why, err := g.isAncestor(ctx, old, nu, commits)
		if err != nil {
			return nil, err
		}
		if !ok {
			reason := fmt.Sprintf("%s: not a fast-forward: %s %s (the gate refuses rewritten history)", c.Ref, short(c.Old), why)
			per[c.Ref] = "bb-egress: " + reason
			if first == "" {
				first = reason
			}
		}
	}
	if first == "" {
		return nil, nil
	}
	return g.refuse(first, per), nil
}

// isAncestor walks new's history for old; why says what it found when the
// answer is no.
func (g *Gate) isAncestor(ctx context.Context, old, nu Hash, commits func(Hash) ([]Hash, bool)) (bool, string, error) {
	g.Limits.SetDefaults()
	if old == nu {
		return true, "", nil
	}
	seen := map[Hash]bool{nu: true}
	queue := []Hash{nu}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		parents, found, err := g.parents(ctx, c, commits)
		if err != nil {
			return false, "", err
		}
		if !found {
			if c == nu {
				return false, "is not a commit the pack or the upstream has, or " + short(nu.String()) + " is not a commit", nil
			}
			return false, "cannot be told an ancestor: commit " + short(c.String()) + " of the new history is neither in the pack nor upstream", nil
		}
		for _, p := range parents {
			if p == old {
				return true, "", nil
			}
			if !seen[p] {
				if len(seen) >= g.Limits.MaxWalk {
					return false, fmt.Sprintf("cannot be told an ancestor within %d commits", g.Limits.MaxWalk), nil
				}
				seen[p] = true
				queue = append(queue, p)
			}
		}
		if len(seen)%4096 == 0 && ctx.Err() != nil {
			return false, "", ctx.Err()
		}
	}
	return false, "is not an ancestor of " + short(nu.String()), nil
}

func (g *Gate) parents(ctx context.Context, id Hash, commits func(Hash) ([]Hash, bool)) ([]Hash, bool, error) {
	if commits != nil {
		if ps, ok := commits(id); ok {
			return ps, true, nil
		}
	}
	if g.Upstream == nil {
		return nil, false, nil
	}
	return g.Upstream.Parents(ctx, id)
}

// locate says where a secret was: the path of the blob (or of the tree
// whose entry name held it) in the commit of the push that brought it in,
// or the commit or tag.
func (g *Gate) locate(p *pack, sc *scanner, h *HitError) string {
	switch h.Type {
	case objCommit:
		return "commit " + short(h.ID.String())
	case objTag:
		return "tag object " + short(h.ID.String())
	}
	type answer struct {
		path string
		ok   bool
	}
	memo := map[Hash]answer{}
	budget := 100_000 // trees read, at most
	// find returns where h is below tree, as a path relative to it.
	var find func(tree Hash) answer
	find = func(tree Hash) answer {
		if tree == h.ID && h.Type == objTree {
			return answer{"", true}
		}
		if a, ok := memo[tree]; ok {
			return a
		}
		memo[tree] = answer{}
		if budget--; budget < 0 {
			return answer{}
		}
		j := p.find(tree)
		if j < 0 || p.entries[j].rtyp != objTree {
			return answer{} // not new in this push: the secret is not below it
		}
		r, _, err := p.read(j)
		if err != nil {
			return answer{}
		}
		b, err := io.ReadAll(io.LimitReader(r, g.Limits.MaxMeta))
		if err != nil {
			return answer{}
		}
		var a answer
		eachTreeEntry(b, func(e treeEntry) error { //nolint:errcheck // the first pass parsed it
			switch {
			case a.ok:
			case e.id == h.ID && h.Type == objBlob:
				a = answer{string(e.name), true}
			case isTreeMode(e.mode):
				if sub := find(e.id); sub.ok {
					a = answer{path.Join(string(e.name), sub.path), true}
				}
			}
			return nil
		})
		memo[tree] = a
		return a
	}
	byID := make(map[Hash]commitRec, len(sc.commits))
	for _, c := range sc.commits {
		byID[p.entries[c.obj].hash] = c
	}
	// The commit that brought it in: one that holds it while none of its
	// parents in the push does. (sc.commits is in pack order.)
	holder := int32(-1)
	var where string
	for _, c := range sc.commits {
		a := find(c.tree)
		if !a.ok {
			continue
		}
		introduced := true
		for _, par := range sc.parentsOf(c) {
			if pc, ok := byID[par]; ok && find(pc.tree).ok {
				introduced = false
			}
		}
		if holder < 0 || introduced {
			holder, where = c.obj, a.path
		}
		if introduced {
			break
		}
	}
	if holder < 0 {
		return "a " + h.What + " (" + short(h.ID.String()) + ")"
	}
	commit := " of commit " + short(p.entries[holder].hash.String())
	if h.Type == objTree {
		what := "a file name"
		if h.What != "tree entry name" {
			what = "a " + h.What
		}
		if where == "" {
			return what + " at the top" + commit
		}
		return what + " in " + where + "/" + commit
	}
	return where + commit
}

func hashOf(hex string) Hash {
	h, _ := hexHash([]byte(hex))
	return h
}

func short(id string) string {
	if len(id) > 7 {
		return id[:7]
	}
	return id
}
