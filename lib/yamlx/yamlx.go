// Package yamlx holds strict YAML decoding with positions, shared by the
// manifest index and the sidecar's routes file. A document is parsed into
// yaml.v3 nodes and decoded by walking them, so that every error names the
// file, line, column and field path; unknown and duplicate keys are refused
// at any depth, and no value is coerced from one type to another.
package yamlx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Pos is a place in a file. Line and Column are 1-based; 0 means unknown.
type Pos struct {
	File   string
	Line   int
	Column int
}

func (p Pos) String() string {
	s := p.File
	if p.Line > 0 {
		s += ":" + strconv.Itoa(p.Line)
		if p.Column > 0 {
			s += ":" + strconv.Itoa(p.Column)
		}
	}
	return s
}

// Error is bad input at a place in a file: "file:line:col: field: msg".
// Field is the path from the document's root ("agents.demo.bottle",
// "[0].inject.token"); Hints say what a person can do about it.
type Error struct {
	Pos
	Field string
	Msg   string
	Hints []string
}

func (e *Error) Error() string {
	parts := make([]string, 0, 3)
	if p := e.Pos.String(); p != "" {
		parts = append(parts, p)
	}
	if e.Field != "" {
		parts = append(parts, e.Field)
	}
	return strings.Join(append(parts, e.Msg), ": ")
}

// WithHints adds hints to e and returns it.
func (e *Error) WithHints(hints ...string) *Error {
	e.Hints = append(e.Hints, hints...)
	return e
}

// Parse parses data, which must hold at most one YAML document, and returns
// the document's root node, or nil when the document is empty.
func Parse(data []byte, file string) (*yaml.Node, error) {
	if err := checkText(data, file); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(data, file, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		at := &extra
		if len(extra.Content) > 0 {
			at = extra.Content[0]
		}
		return nil, &Error{Pos: Pos{file, at.Line, at.Column}, Msg: "a second YAML document is not allowed",
			Hints: []string{"remove the --- line that starts it"}}
	case !errors.Is(err, io.EOF):
		return nil, syntaxError(data, file, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

var (
	lineRE   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	anchorRE = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// parserProblems start yaml.v3's parser errors (not its scanner's), whose
// "line N" is 0-based.
var parserProblems = []string{"did not find expected", "found duplicate %", "found incompatible YAML document",
	"found undefined tag handle"}

// syntaxError positions a yaml.v3 parse error, which carries a line only
// (none at all when the problem is on the first line).
func syntaxError(data []byte, file string, err error) error {
	msg := err.Error()
	line := 1
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		for _, p := range parserProblems {
			if strings.HasPrefix(msg, p) {
				line++
			}
		}
	} else if m := anchorRE.FindStringSubmatch(msg); m != nil {
		// The first use of the anchor is where it is unknown.
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			line = 1 + bytes.Count(data[:i], []byte("\n"))
			col := 1 + utf8.RuneCount(data[bytes.LastIndexByte(data[:i], '\n')+1:i])
			return &Error{Pos: Pos{file, line, col}, Msg: fmt.Sprintf("alias *%s has no anchor &%s before it", m[1], m[1])}
		}
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	// yaml.v3 names the line where the construct in trouble started (a
	// mapping), not where the trouble is; the first line whose addition
	// makes the text fail to parse is, and its first character the column.
	if bad := firstBadLine(data); bad > 0 {
		line = bad
	}
	return &Error{Pos: Pos{File: file, Line: line, Column: firstColumn(data, line)}, Msg: "YAML syntax error: " + msg}
}

// firstBadLine returns the smallest n such that data's first n lines do
// not parse, or 0 when every prefix short of the whole does (found by
// bisection: a prefix that parses is followed by one that does not).
func firstBadLine(data []byte) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 100_000 {
		return 0
	}
	parses := func(n int) bool {
		var doc yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(bytes.Join(lines[:n], nil)))
		for {
			if err := dec.Decode(&doc); err != nil {
				return errors.Is(err, io.EOF)
			}
		}
	}
	lo, hi := 0, len(lines) // parses(lo), !parses(hi)
	if parses(hi) {
		return 0
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if parses(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// firstColumn is the column of line's first character that is not a space
// (1 when there is none).
func firstColumn(data []byte, line int) int {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return 0
	}
	l := lines[line-1]
	return 1 + utf8.RuneCount(l[:len(l)-len(bytes.TrimLeft(l, " "))])
}

// checkText refuses what yaml.v3 would refuse without a line: bytes that
// are not UTF-8 and characters YAML does not allow.
func checkText(data []byte, file string) error {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return &Error{Pos: Pos{file, line, col}, Msg: fmt.Sprintf("byte 0x%02x is not UTF-8", data[i]),
				Hints: []string{"save the file as UTF-8"}}
		case r == '\n':
			line, col = line+1, 0
		case r == '\ufeff' && i == 0, printable(r):
		default:
			return &Error{Pos: Pos{file, line, col}, Msg: fmt.Sprintf("character %U is not allowed in YAML", r)}
		}
		i += size
		col++
	}
	return nil
}

// printable is YAML's set of characters allowed in a stream.
func printable(r rune) bool {
	switch {
	case r == '\t', r == '\n', r == '\r', r == 0x85:
		return true
	case r >= 0x20 && r <= 0x7e:
		return true
	case r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

// Positions records where each field path's key and value were, so that
// checks made after decoding can still point into the source.
type Positions struct {
	key map[string]Pos
	val map[string]Pos
}

// NewPositions returns an empty record.
func NewPositions() *Positions {
	return &Positions{key: map[string]Pos{}, val: map[string]Pos{}}
}

// SetKey records where path's key was, for a name that is not a key in
// YAML (an agent named by its file).
func (p *Positions) SetKey(path string, key Pos) { p.key[path] = key }

// Has reports whether path's value was decoded from the source.
func (p *Positions) Has(path string) bool {
	if p == nil {
		return false
	}
	_, ok := p.val[path]
	return ok
}

// At returns where path's value was or, for a field that was absent, where
// the key of its nearest present ancestor was.
func (p *Positions) At(path string) Pos {
	if p == nil {
		return Pos{}
	}
	if v, ok := p.val[path]; ok {
		return v
	}
	return p.Key(Parent(path))
}

// Key returns where path's key was (its value, for a list item or the
// root), or its nearest present ancestor's.
func (p *Positions) Key(path string) Pos {
	if p == nil {
		return Pos{}
	}
	for {
		if k, ok := p.key[path]; ok {
			return k
		}
		if v, ok := p.val[path]; ok {
			return v
		}
		if path == "" {
			return Pos{}
		}
		path = Parent(path)
	}
}

// Errorf returns an error about path's value.
func (p *Positions) Errorf(path, format string, a ...any) *Error {
	return &Error{Pos: p.At(path), Field: path, Msg: fmt.Sprintf(format, a...)}
}

// KeyErrorf returns an error about path's key (a name, a duplicate).
func (p *Positions) KeyErrorf(path, format string, a ...any) *Error {
	return &Error{Pos: p.Key(path), Field: path, Msg: fmt.Sprintf(format, a...)}
}

// Join appends a key to a field path.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Index appends a list index to a field path.
func Index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// Parent returns the path one level up ("" above a top-level field).
func Parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
