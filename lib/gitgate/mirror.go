package gitgate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Mirror is the gate's own view of one upstream repository: the packs it
// fetched from it (with the route's credentials, through the sidecar's
// checked dialer) into a folder of the sidecar's, each with an index of
// its objects. A push's fast-forward is decided against it when the pack
// alone cannot tell, and a thin pack's bases are read from it. It fetches
// only when a push needs what it does not have.
type Mirror struct {
	// Dir holds the packs; it is created when needed.
	Dir string
	// Client reaches the upstream: its transport must check where it
	// dials and inject the route's credential.
	Client *http.Client
	Limits Limits

	mu    sync.Mutex // one fetch at a time, and the pack list
	packs []*mirrorPack
	open  bool
}

// mirrorPack is one fetched pack and its index.
type mirrorPack struct {
	f      *os.File
	size   int64
	idx    *os.File
	count  int
	fanout [256]uint32
}

// Index file: "BBGX", version 1, the object count, the 256 fanout counts,
// then the objects sorted by id, each its id and its offset in the pack.
const (
	idxMagic  = "BBGX"
	idxHeader = 4 + 4 + 4 + 256*4
	idxRecord = 20 + 8
)

// Session returns the Upstream one push sees: it fetches from the
// upstream at base (the repository's URL, ".../owner/name.git") at most
// once, on the first object it lacks. Close it when the push is done.
func (m *Mirror) Session(base string) (*Session, error) {
	m.Limits.SetDefaults()
	if err := m.load(); err != nil {
		return nil, err
	}
	st, err := newStore(m.Dir, m.Limits.MaxResolved)
	if err != nil {
		return nil, err
	}
	return &Session{m: m, base: base, st: st, memo: map[memoKey]stored{}, parents: map[Hash][]Hash{}}, nil
}

// load opens the packs already in Dir (those of an earlier run), once.
func (m *Mirror) load() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open {
		return nil
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return fmt.Errorf("making the gate's mirror folder: %w", err)
	}
	// Scratch files of a run that died are of no use.
	tmp, _ := filepath.Glob(filepath.Join(m.Dir, "tmp-*"))
	for _, f := range tmp {
		os.Remove(f)
	}
	idxs, err := filepath.Glob(filepath.Join(m.Dir, "pack-*.idx"))
	if err != nil {
		return err
	}
	sort.Strings(idxs)
	for _, idx := range idxs {
		pk, err := openMirrorPack(strings.TrimSuffix(idx, ".idx") + ".pack")
		if err != nil {
			// A pack that does not open is fetched again when needed.
			continue
		}
		m.packs = append(m.packs, pk)
	}
	m.open = true
	return nil
}

func openMirrorPack(path string) (*mirrorPack, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	idx, err := os.Open(strings.TrimSuffix(path, ".pack") + ".idx")
	if err != nil {
		f.Close()
		return nil, err
	}
	pk := &mirrorPack{f: f, size: fi.Size(), idx: idx}
	var hdr [idxHeader]byte
	if _, err := idx.ReadAt(hdr[:], 0); err != nil || string(hdr[:4]) != idxMagic || binary.BigEndian.Uint32(hdr[4:]) != 1 {
		pk.close()
		return nil, fmt.Errorf("%s is not a gate index", idx.Name())
	}
	pk.count = int(binary.BigEndian.Uint32(hdr[8:]))
	for i := range pk.fanout {
		pk.fanout[i] = binary.BigEndian.Uint32(hdr[12+4*i:])
	}
	return pk, nil
}

func (pk *mirrorPack) close() {
	pk.f.Close()
	pk.idx.Close()
}

// find returns the offset of object id in the pack.
func (pk *mirrorPack) find(id Hash) (int64, bool) {
	lo := 0
	if id[0] > 0 {
		lo = int(pk.fanout[id[0]-1])
	}
	hi := int(pk.fanout[id[0]])
	var rec [idxRecord]byte
	for lo < hi {
		mid := (lo + hi) / 2
		if _, err := pk.idx.ReadAt(rec[:], int64(idxHeader+mid*idxRecord)); err != nil {
			return 0, false
		}
		switch c := bytes.Compare(rec[:20], id[:]); {
		case c == 0:
			return int64(binary.BigEndian.Uint64(rec[20:])), true
		case c < 0:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return 0, false
}

// writeIndex writes the index of the objects of p.
func writeIndex(path string, p *pack) error {
	order := make([]int32, len(p.entries))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return bytes.Compare(p.entries[a].hash[:], p.entries[b].hash[:]) })
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	var hdr [idxHeader]byte
	copy(hdr[:], idxMagic)
	binary.BigEndian.PutUint32(hdr[4:], 1)
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(order)))
	var fan [256]uint32
	for _, i := range order {
		fan[p.entries[i].hash[0]]++
	}
	n := uint32(0)
	for b := range fan {
		n += fan[b]
		binary.BigEndian.PutUint32(hdr[12+4*b:], n)
	}
	w.Write(hdr[:])
	var rec [idxRecord]byte
	for _, i := range order {
		copy(rec[:20], p.entries[i].hash[:])
		binary.BigEndian.PutUint64(rec[20:], uint64(p.entries[i].off))
		w.Write(rec[:])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Session is one push's view of a Mirror; it is an Upstream.
type Session struct {
	m       *Mirror
	base    string
	st      *store
	fetched map[string]bool // "commits", "all": what this session fetched
	memo    map[memoKey]stored
	parents map[Hash][]Hash
	readers map[*mirrorPack]*objReader
	win     []byte
}

type memoKey struct {
	pk  *mirrorPack
	off int64
}

// Close removes the session's scratch file.
func (s *Session) Close() error { return s.st.Close() }

// Parents returns commit id's parents, fetching the upstream's history
// (commits only, when the upstream takes a filter) if the mirror lacks it.
func (s *Session) Parents(ctx context.Context, id Hash) ([]Hash, bool, error) {
	if p, ok := s.parents[id]; ok {
		return p, true, nil
	}
	var buf bytes.Buffer
	typ, ok, err := s.object(ctx, id, &buf, "tree:0")
	if err != nil || !ok {
		return nil, false, err
	}
	if typ != objCommit {
		return nil, false, nil
	}
	c, err := parseCommit(buf.Bytes())
	if err != nil {
		return nil, false, fmt.Errorf("the upstream's commit %s: %w", id, err)
	}
	s.parents[id] = c.parents
	return c.parents, true, nil
}

// Object writes object id's content to w, fetching the upstream's objects
// if the mirror lacks it.
func (s *Session) Object(ctx context.Context, id Hash, w io.Writer) (uint8, bool, error) {
	return s.object(ctx, id, w, "")
}

func (s *Session) object(ctx context.Context, id Hash, w io.Writer, filter string) (uint8, bool, error) {
	st, ok, err := s.lookup(id)
	if err != nil {
		return 0, false, err
	}
	if !ok {
		what := "all"
		if filter != "" {
			what = "commits"
		}
		if s.fetched == nil {
			s.fetched = map[string]bool{}
		}
		if s.fetched[what] || s.fetched["all"] {
			return 0, false, nil
		}
		s.fetched[what] = true
		if err := s.m.fetch(ctx, s.base, filter); err != nil {
			return 0, false, fmt.Errorf("fetching the upstream's history into the gate's mirror: %w", err)
		}
		if st, ok, err = s.lookup(id); err != nil || !ok {
			return 0, false, err
		}
	}
	if _, err := io.Copy(w, s.st.reader(st)); err != nil {
		return 0, false, err
	}
	return st.typ, true, nil
}

// lookup finds id in the mirror's packs, newest first, and resolves it
// into the session's store.
func (s *Session) lookup(id Hash) (stored, bool, error) {
	s.m.mu.Lock()
	packs := slices.Clone(s.m.packs)
	s.m.mu.Unlock()
	for i := len(packs) - 1; i >= 0; i-- {
		if off, ok := packs[i].find(id); ok {
			st, err := s.materialize(packs[i], off, 0)
			return st, err == nil, err
		}
	}
	return stored{}, false, nil
}

// materialize resolves the object at off of pk into the store.
func (s *Session) materialize(pk *mirrorPack, off int64, depth int) (stored, error) {
	key := memoKey{pk, off}
	if st, ok := s.memo[key]; ok {
		return st, nil
	}
	if depth > s.m.Limits.MaxDepth {
		return stored{}, &LimitError{fmt.Sprintf("a delta chain in the mirror deeper than %d", s.m.Limits.MaxDepth)}
	}
	if s.readers == nil {
		s.readers = map[*mirrorPack]*objReader{}
		s.win = make([]byte, 64<<10)
	}
	or := s.readers[pk]
	if or == nil {
		or = newObjReader(pk.f)
		s.readers[pk] = or
	}
	or.seek(off, false)
	h, err := or.object()
	if err != nil {
		return stored{}, fmt.Errorf("reading the mirror: %w", err)
	}
	var base stored
	typ := h.typ
	switch typ {
	case objOFS:
		if base, err = s.materialize(pk, h.baseOff, depth+1); err != nil {
			return stored{}, err
		}
	case objREF:
		boff, ok := pk.find(h.baseID)
		if !ok {
			return stored{}, fmt.Errorf("reading the mirror: a delta's base %s is not in its pack", h.baseID)
		}
		if base, err = s.materialize(pk, boff, depth+1); err != nil {
			return stored{}, err
		}
	}
	// The base's resolution moved the reader: back to this object.
	if isDelta(typ) {
		or.seek(off, false)
		if h, err = or.object(); err != nil {
			return stored{}, fmt.Errorf("reading the mirror: %w", err)
		}
	}
	rc, err := or.data(h.size)
	if err != nil {
		return stored{}, fmt.Errorf("reading the mirror: %w", err)
	}
	w := s.st.writer()
	if isDelta(typ) {
		dr, err := newDeltaReader(rc, newWindowReaderAt(s.st.reader(base), base.size, s.win), base.size, nil)
		if err != nil {
			return stored{}, fmt.Errorf("reading the mirror: %w", err)
		}
		if _, err := io.Copy(w, dr); err != nil {
			return stored{}, fmt.Errorf("reading the mirror: %w", err)
		}
		typ = base.typ
	} else if _, err := io.Copy(w, rc); err != nil {
		return stored{}, fmt.Errorf("reading the mirror: %w", err)
	}
	st, err := w.done(typ)
	if err != nil {
		return stored{}, err
	}
	s.memo[key] = st
	return st, nil
}

// fetch brings the mirror up to the upstream's refs: every object they
// reach that the mirror has no pack of yet (a filter narrows it), indexed
// and kept.
func (m *Mirror) fetch(ctx context.Context, base, filter string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	refs, caps, err := advertisement(ctx, m.Client, base)
	if err != nil {
		return err
	}
	// A filtered fetch wants what no pack has; a full one what no full
	// fetch brought (a commits-only pack has none of the trees), and says
	// it has only what a full fetch did, lest the upstream leave out
	// objects the mirror never got.
	inPacks := func(id string) bool {
		h := hashOf(id)
		for _, pk := range m.packs {
			if _, ok := pk.find(h); ok {
				return true
			}
		}
		return false
	}
	full := m.fullTips()
	var wants, haves []string
	seen := map[string]bool{}
	for _, r := range refs {
		if strings.HasSuffix(r.name, "^{}") || seen[r.id] {
			continue
		}
		seen[r.id] = true
		had := full[r.id]
		if filter != "" {
			had = inPacks(r.id)
		}
		if had {
			haves = append(haves, r.id)
		} else {
			wants = append(wants, r.id)
		}
	}
	if len(wants) == 0 {
		return nil
	}
	if len(haves) > 256 {
		haves = haves[:256]
	}
	tmp, err := os.CreateTemp(m.Dir, "tmp-*.pack")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	bw := bufio.NewWriterSize(tmp, 64<<10)
	if err := fetchPack(ctx, m.Client, base, wants, haves, caps, filter, bw, m.Limits.MaxPack); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	size, err := tmp.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	st, err := newStore(m.Dir, m.Limits.MaxResolved)
	if err != nil {
		return err
	}
	defer st.Close()
	p, err := readPack(ctx, io.NewSectionReader(tmp, 0, size), func() (int64, error) { return size, nil }, st, &m.Limits, discardVisit, nil)
	if err != nil {
		return fmt.Errorf("reading the upstream's pack: %w", err)
	}
	name := filepath.Join(m.Dir, fmt.Sprintf("pack-%04d", len(m.packs)))
	if err := writeIndex(name+".idx.tmp", p); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), name+".pack"); err != nil {
		return err
	}
	if err := os.Rename(name+".idx.tmp", name+".idx"); err != nil {
		return err
	}
	pk, err := openMirrorPack(name + ".pack")
	if err != nil {
		return err
	}
	m.packs = append(m.packs, pk)
	if filter == "" {
		return m.saveFullTips(wants, haves)
	}
	return nil
}

// fullTips are the ids the full fetches brought with all they reach.
func (m *Mirror) fullTips() map[string]bool {
	full := map[string]bool{}
	data, err := os.ReadFile(filepath.Join(m.Dir, "full-tips"))
	if err != nil {
		return full
	}
	for _, l := range strings.Fields(string(data)) {
		full[l] = true
	}
	return full
}

func (m *Mirror) saveFullTips(wants, haves []string) error {
	old := m.fullTips()
	for _, id := range append(slices.Clone(wants), haves...) {
		old[id] = true
	}
	tips := ""
	for id := range old {
		tips += id + "\n"
	}
	tmp := filepath.Join(m.Dir, "tmp-full-tips")
	if err := os.WriteFile(tmp, []byte(tips), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(m.Dir, "full-tips"))
}

// Close closes the mirror's packs.
func (m *Mirror) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, pk := range m.packs {
		pk.close()
	}
	m.packs, m.open = nil, false
	return nil
}
