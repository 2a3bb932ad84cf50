// Package detect holds the secret detector: given the values of known
// secrets, it finds them in text, raw or encoded (URL, percent, base64 and
// base32 at any alignment, hex, JSON escapes), in a buffer, in a stream,
// or in a reader that holds bytes back until they are known to be clean.
//
// A hit names the secret, never its value.
//
// A detector from NewFolded also finds every form in any mix of case (it
// scans a lower-cased copy of the text), and Search also looks through a
// decoded view of the text (percent escapes, even one of them, JSON \u and
// \n, HTML character references) and a flattened one (escapes and
// quoted-printable undone, then whitespace removed: wrapped or spaced
// base64, its line breaks escaped or not). GuardViews looks through the
// same views of a stream, decoding it as it arrives.
//
// Not found: compressed text (decompress first), escapes nested more than
// twice, and anything that transforms a secret otherwise (reversal, XOR,
// a secret split in pieces sent apart): the forms are what careless code
// and ordinary encoders write, not what a determined adversary can.
package detect

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// Secret is a known secret: Name is what hits and messages call it, Value is
// what must not get out.
type Secret struct{ Name, Value string }

// Hit is one match of a secret in a stream.
type Hit struct {
	Secret   string `json:"secret"`   // the secret's NAME, never its value
	Offset   int64  `json:"offset"`   // byte offset where the (encoded) match starts
	Encoding string `json:"encoding"` // raw, url, percent, base64, base64url, hex or json
}

// MinLen is the shortest secret value accepted: shorter values match
// ordinary text by chance.
const MinLen = 8

// Detector finds a fixed set of secrets. It is immutable and safe for
// concurrent use.
type Detector struct {
	names  []string
	pats   []pattern
	maxLen int
	tiers  []*tier
	// fold: the patterns are lower-cased, and so is the text before it is
	// scanned (ASCII letters only; every form but raw is ASCII).
	fold bool
	// space: a secret holds a space, so "+" in text may stand for one.
	space bool
	// first lists the patterns by their first byte: what a tight guard
	// checks to know which tail bytes could begin a match.
	first [256][]int32
}

// A tier is a sampling filter over the patterns of some range of lengths:
// every stride bytes, the q bytes there are looked up among all q-grams of
// its patterns. A pattern of length >= minLen always holds one sampled
// q-gram whole, so no match is missed; text whose samples are in no pattern
// is skipped stride bytes at a time. Short patterns (a short secret) get a
// tier of their own, so they shrink the stride of no other pattern and
// their small bit set stays in the CPU's nearest cache.
type tier struct {
	minLen int
	maxLen int
	q      int
	mask   uint64
	stride int
	shift  uint     // hash to bit index
	bloom  []uint64 // bit set of the hashes of all q-grams
	grams  map[uint64][]gramAt
}

// shortTier is the pattern length below which patterns go in a tier of
// their own, when there are longer ones too.
const shortTier = 32

type pattern struct {
	secret int
	enc    string
	b      []byte
	// origs are the forms that fold to b: text that equals none of them
	// differs from the secret's forms in case.
	origs [][]byte
}

// gramAt says a q-gram occurs in pattern pat at offset off.
type gramAt struct {
	pat int32
	off int32
}

// New returns a detector for secrets. Names must be non-empty and unique,
// values at least MinLen bytes long.
func New(secrets []Secret) (*Detector, error) { return newDetector(secrets, false) }

// NewFolded is New for a detector blind to case: it finds each form of
// each secret with any of its letters in either case (hex with mixed-case
// digits, an upper-cased token, base64 a server lower-cased), at the cost
// of lower-casing a copy of the text it scans. A hit whose text differs
// from every form in case is named "case-folded <encoding>".
func NewFolded(secrets []Secret) (*Detector, error) { return newDetector(secrets, true) }

func newDetector(secrets []Secret, fold bool) (*Detector, error) {
	d := &Detector{fold: fold}
	seen := map[string]bool{}
	for i, s := range secrets {
		switch {
		case s.Name == "":
			return nil, fmt.Errorf("secret #%d has no name", i+1)
		case seen[s.Name]:
			return nil, fmt.Errorf("secret %s is given twice", s.Name)
		case len(s.Value) < MinLen:
			return nil, fmt.Errorf("secret %s is %d bytes long, shorter than the minimum of %d", s.Name, len(s.Value), MinLen)
		}
		seen[s.Name] = true
		d.names = append(d.names, s.Name)
		d.space = d.space || strings.Contains(s.Value, " ")
		n0 := len(d.pats)
	forms:
		for _, f := range forms(s.Value) {
			b := f.b
			if fold {
				b = lowerASCII(make([]byte, len(b)), b)
				for j := n0; j < len(d.pats); j++ {
					if string(d.pats[j].b) == string(b) {
						d.pats[j].origs = append(d.pats[j].origs, f.b)
						continue forms
					}
				}
			}
			d.pats = append(d.pats, pattern{secret: i, enc: f.enc, b: b, origs: [][]byte{f.b}})
		}
	}
	for i, p := range d.pats {
		d.first[p.b[0]] = append(d.first[p.b[0]], int32(i))
	}
	var short, long []int
	for i, p := range d.pats {
		d.maxLen = max(d.maxLen, len(p.b))
		if len(p.b) < shortTier {
			short = append(short, i)
		} else {
			long = append(long, i)
		}
	}
	for _, pis := range [][]int{short, long} {
		if len(pis) > 0 {
			d.tiers = append(d.tiers, newTier(d.pats, pis))
		}
	}
	return d, nil
}

func newTier(pats []pattern, pis []int) *tier {
	t := &tier{minLen: len(pats[pis[0]].b), grams: map[uint64][]gramAt{}}
	for _, pi := range pis {
		t.minLen = min(t.minLen, len(pats[pi].b))
		t.maxLen = max(t.maxLen, len(pats[pi].b))
	}
	// Longer q-grams are more selective, but the stride is minLen-q+1:
	// half the shortest pattern balances the two, up to a machine word.
	t.q = min(8, t.minLen/2)
	t.mask = ^uint64(0) >> (64 - 8*t.q)
	t.stride = t.minLen - t.q + 1
	for _, pi := range pis {
		p := pats[pi].b
		for off := 0; off+t.q <= len(p); off++ {
			g := t.gram(p, off)
			t.grams[g] = append(t.grams[g], gramAt{int32(pi), int32(off)})
		}
	}
	// About 64 bits per distinct q-gram keeps false positives near 1.5%.
	logBits := max(16, min(24, bits.Len(uint(64*len(t.grams)))))
	t.shift = uint(64 - logBits)
	t.bloom = make([]uint64, 1<<logBits/64)
	for g := range t.grams {
		h := (g * hashMul) >> t.shift
		t.bloom[h>>6] |= 1 << (h & 63)
	}
	return t
}

// hashMul spreads q-grams over the bit set (Fibonacci hashing).
const hashMul = 0x9E3779B97F4A7C15

// Names returns the names of the secrets, in the order given to New.
func (d *Detector) Names() []string { return slices.Clone(d.names) }

// MaxLen returns the length of the longest pattern: a stream scanner must
// hold back MaxLen-1 bytes to see every match.
func (d *Detector) MaxLen() int { return d.maxLen }

// Find returns the hit with the lowest offset in b.
func (d *Detector) Find(b []byte) (Hit, bool) {
	text, sp := d.folded(b)
	ms := d.scan(text, true, nil)
	putScratch(sp)
	if len(ms) == 0 {
		return Hit{}, false
	}
	return d.hit(ms[0], 0, b), true
}

// folded returns the text to scan for b: b itself, or for a folding
// detector a lower-cased copy in a scratch buffer to give back.
func (d *Detector) folded(b []byte) ([]byte, *[]byte) {
	if !d.fold {
		return b, nil
	}
	sp := getScratch(len(b))
	return lowerASCII((*sp)[:len(b)], b), sp
}

// FindString is Find on a string.
func (d *Detector) FindString(s string) (Hit, bool) {
	// The conversion does not escape, so the compiler does not copy s.
	return d.Find([]byte(s))
}

// FindAll returns every hit in b, by offset.
func (d *Detector) FindAll(b []byte) []Hit {
	text, sp := d.folded(b)
	ms := d.scan(text, false, nil)
	putScratch(sp)
	if len(ms) == 0 {
		return nil
	}
	return d.appendHits(nil, ms, 0, b)
}

// appendHits appends the hits of ms, at base plus their start; orig is the
// text as written (before folding), nil when unknown. Two patterns of one
// secret and encoding (two base64 alignments, say) can match at one
// offset; that is one hit.
func (d *Detector) appendHits(hits []Hit, ms []match, base int64, orig []byte) []Hit {
	n0 := len(hits)
	for _, m := range ms {
		h := d.hit(m, base, orig)
		dup := false
		for j := len(hits) - 1; j >= n0 && hits[j].Offset == h.Offset; j-- {
			dup = dup || hits[j] == h
		}
		if !dup {
			hits = append(hits, h)
		}
	}
	return hits
}

// match is a verified occurrence of pattern pat at start.
type match struct {
	pat   int
	start int
}

func (d *Detector) hit(m match, base int64, orig []byte) Hit {
	p := &d.pats[m.pat]
	enc := p.enc
	if d.fold && orig != nil {
		seg := string(orig[m.start : m.start+len(p.b)])
		same := false
		for _, o := range p.origs {
			same = same || string(o) == seg
		}
		if !same {
			enc = "case-folded " + enc
		}
	}
	return Hit{Secret: d.names[p.secret], Offset: base + int64(m.start), Encoding: enc}
}

func (t *tier) gram(b []byte, i int) uint64 {
	if i+8 <= len(b) {
		return binary.LittleEndian.Uint64(b[i:]) & t.mask
	}
	var w [8]byte
	copy(w[:], b[i:])
	return binary.LittleEndian.Uint64(w[:]) & t.mask
}

// scan appends to ms the matches in b, ordered by start and without
// duplicates. With first, it returns only the match with the lowest start.
func (d *Detector) scan(b []byte, first bool, ms []match) []match {
	n0 := len(ms)
	for _, t := range d.tiers {
		ms = t.scan(d.pats, b, first, ms)
	}
	if len(ms) == n0 {
		return ms
	}
	found := ms[n0:]
	slices.SortFunc(found, func(a, b match) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.pat, b.pat))
	})
	found = slices.Compact(found)
	if first {
		found = found[:1]
	}
	return append(ms[:n0], found...)
}

// scan appends the matches of t's patterns in b. With first, it stops once
// no match can start before the first one found.
func (t *tier) scan(pats []pattern, b []byte, first bool, ms []match) []match {
	if len(b) < t.minLen {
		return ms
	}
	n0 := len(ms)
	limit := len(b) // sample positions below this
	// Sample at stride-1, 2*stride-1, ...: any window of stride positions
	// holds one, and the first covers the end of a pattern at offset 0.
	// Locals, so the hot loop keeps them in registers.
	stride, mask, shift, bloom := t.stride, t.mask, t.shift, t.bloom
	i := stride - 1
	for ; i+8 <= limit; i += stride {
		g := binary.LittleEndian.Uint64(b[i:]) & mask
		h := (g * hashMul) >> shift
		if bloom[h>>6]&(1<<(h&63)) == 0 {
			continue
		}
		ms = t.verify(pats, b, i, g, ms)
		if first && len(ms) > n0 {
			// A match found later from a later sample i' holds it whole, so
			// it starts after i'-maxLen: past ms[n0] once i' is that far.
			limit = min(limit, ms[n0].start+t.maxLen)
		}
	}
	for ; i+t.q <= limit; i += t.stride {
		ms = t.verify(pats, b, i, t.gram(b, i), ms)
		if first && len(ms) > n0 {
			limit = min(limit, ms[n0].start+t.maxLen)
		}
	}
	return ms
}

// verify appends the patterns that the q-gram g at i is part of.
func (t *tier) verify(pats []pattern, b []byte, i int, g uint64, ms []match) []match {
	for _, at := range t.grams[g] {
		p := pats[at.pat].b
		start := i - int(at.off)
		if start < 0 || start+len(p) > len(b) || string(b[start:start+len(p)]) != string(p) {
			continue
		}
		ms = append(ms, match{int(at.pat), start})
	}
	return ms
}

// HitError is what a Guard's Read returns when it finds a secret.
type HitError struct{ Hit Hit }

func (e *HitError) Error() string {
	return fmt.Sprintf("found secret %s (%s)", e.Hit.Secret, e.Hit.Encoding)
}

// IsHit reports whether err is or wraps a *HitError, and returns its hit.
func IsHit(err error) (Hit, bool) {
	var he *HitError
	if errors.As(err, &he) {
		return he.Hit, true
	}
	return Hit{}, false
}
