// Package trust holds what a person has trusted: files bb takes
// configuration from (a manifest, a prompt file) that lie where an agent
// can write them. A bottle's workspace is the agent's to change; a
// manifest in it may have been rewritten by the last agent that worked
// there, with wider routes, or a token read from a file the agent could
// not reach. Such a file is used only when the person trusted that exact
// content: its SHA-256 is kept here, outside every workspace, with the
// content itself so that a change can be shown as a change.
package trust

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/workspace"
)

// DirName is the trust store's folder in bb's state folder; its leading dot
// keeps it from ever being taken for a bottle.
const DirName = ".trust"

// maxKept is the most of a file's content kept for showing a change.
const maxKept = 1 << 20

// Store is the trust store, a folder with one record per trusted path.
type Store struct {
	Dir string
}

// Open returns the store in bb's state folder stateDir.
func Open(stateDir string) *Store { return &Store{Dir: filepath.Join(stateDir, DirName)} }

type record struct {
	Path    string    `json:"path"`
	SHA256  string    `json:"sha256"`
	Trusted time.Time `json:"trusted"`
	Content string    `json:"content,omitempty"`
}

// Sum is the SHA-256 of content, in hex: what a record and a manifest's
// list of files name a content by.
func Sum(content []byte) string {
	h := sha256.Sum256(content)
	return hex.EncodeToString(h[:])
}

func (s *Store) file(path string) string {
	h := sha256.Sum256([]byte(path))
	return filepath.Join(s.Dir, hex.EncodeToString(h[:16])+".json")
}

// Lookup reports whether the content whose SHA-256 is sum is trusted at
// path, and returns the content trusted there before, if any (nil when
// none was, or it was too large to keep).
func (s *Store) Lookup(path, sum string) (ok bool, before []byte, err error) {
	r, err := s.read(path)
	if r == nil || err != nil {
		return false, nil, err
	}
	if r.Content == "" {
		return r.SHA256 == sum, nil, nil
	}
	return r.SHA256 == sum, []byte(r.Content), nil
}

// read returns path's record, nil if there is none.
func (s *Store) read(path string) (*record, error) {
	data, err := os.ReadFile(s.file(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the trust store: %w", err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil || r.Path != path {
		// Not ours, or another path's: trust nothing from it.
		return nil, nil
	}
	return &r, nil
}

// Trust records content as trusted at path.
func (s *Store) Trust(path string, content []byte) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("writing the trust store: %w", err)
	}
	r := record{Path: path, SHA256: Sum(content), Trusted: time.Now().UTC()}
	if len(content) <= maxKept {
		r.Content = string(content)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := state.WriteFileAtomic(s.file(path), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing the trust store: %w", err)
	}
	return nil
}

// wsPrefix names the records of folders bottles were launched on.
const wsPrefix = "workspace-"

// Remember records ws (resolved) as a folder an agent was given. It stays
// the agent's writing after its bottle is removed, so a file bb takes
// configuration from there needs trust for as long as this store lives.
func (s *Store) Remember(ws string) error {
	if ws == "" {
		return nil
	}
	h := sha256.Sum256([]byte(ws))
	f := filepath.Join(s.Dir, wsPrefix+hex.EncodeToString(h[:16])+".json")
	if r, err := readWorkspace(f); err == nil && r == ws {
		return nil
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("writing the trust store: %w", err)
	}
	data, err := json.Marshal(map[string]string{"workspace": ws})
	if err != nil {
		return err
	}
	if err := state.WriteFileAtomic(f, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing the trust store: %w", err)
	}
	return nil
}

// Workspaces are the folders Remember recorded.
func (s *Store) Workspaces() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the trust store: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), wsPrefix) || !e.Type().IsRegular() {
			continue
		}
		if ws, err := readWorkspace(filepath.Join(s.Dir, e.Name())); err == nil && filepath.IsAbs(ws) {
			out = append(out, ws)
		}
	}
	return out, nil
}

func readWorkspace(f string) (string, error) {
	data, err := os.ReadFile(f)
	if err != nil {
		return "", err
	}
	var r struct {
		Workspace string `json:"workspace"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return "", err
	}
	return r.Workspace, nil
}

// Diff shows how after differs from before, line by line: "-" for a
// removed line, "+" for an added one, and up to two unchanged lines around
// each change. Past maxDiffLines lines on either side it only counts.
func Diff(before, after []byte) string {
	a, b := lines(before), lines(after)
	if len(a) > maxDiffLines || len(b) > maxDiffLines {
		return fmt.Sprintf("(%d lines before, %d now: too long to show the change)\n", len(a), len(b))
	}
	// lcs[i][j] is the longest common subsequence of a[i:] and b[j:].
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind byte
		line string
	}
	var ops []op
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, op{' ', a[i]})
			i++
			j++
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', a[i]})
			i++
		default:
			ops = append(ops, op{'+', b[j]})
			j++
		}
	}
	const context = 2
	var out strings.Builder
	last := -1 // the last op written
	for k, o := range ops {
		if o.kind == ' ' {
			continue
		}
		from := max(k-context, last+1)
		if last >= 0 && from > last+1 {
			out.WriteString("  ...\n")
		}
		for x := from; x <= k; x++ {
			fmt.Fprintf(&out, "%c %s\n", ops[x].kind, ops[x].line)
		}
		last = k
		for x := k + 1; x < len(ops) && x <= k+context && ops[x].kind == ' '; x++ {
			fmt.Fprintf(&out, "  %s\n", ops[x].line)
			last = x
		}
	}
	return out.String()
}

const maxDiffLines = 4000

// lines splits b into lines, each made safe for a person's terminal: the
// file is the agent's, and an escape sequence in it must not reach the
// screen that shows it (tabs stay; other controls become '?').
func lines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	ls := strings.Split(s, "\n")
	for i, l := range ls {
		ls[i] = strings.Map(func(r rune) rune {
			if r == '\t' || unicode.IsPrint(r) {
				return r
			}
			return '?'
		}, l)
	}
	return ls
}

// File is a file configuration was taken from, and the SHA-256 of the
// content that was read.
type File struct {
	Path   string
	SHA256 string
}

// Pending is a file in a workspace whose content was not trusted.
type Pending struct {
	File
	// Workspace is the workspace it lies in (resolved).
	Workspace string
	// Before is what was trusted at its path before (nil: nothing, or it
	// was too large to keep); Now is its content, when it is still what
	// was read (nil: it changed since, and must be read again).
	Before, Now []byte
	Known       bool // something was trusted at its path before
	// TooLong: its content is more than can be shown (maxKept bytes,
	// maxDiffLines lines), so it is not offered to trust as shown: Now
	// is nil.
	TooLong bool
}

// Pending returns the files that lie in one of the workspaces (resolved
// folders) and whose content, as read, is not trusted.
func (s *Store) Pending(files []File, workspaces []string) ([]Pending, error) {
	var out []Pending
	for _, f := range files {
		real := workspace.Resolve(f.Path)
		var in string
		for _, ws := range workspaces {
			if ws != "" && (workspace.Within(ws, real) || workspace.Within(ws, f.Path)) {
				in = ws
				break
			}
		}
		ok, before, err := s.Lookup(f.Path, f.SHA256)
		if err != nil {
			return nil, err
		}
		r, _ := s.read(f.Path)
		// A file trusted once lay where an agent could write it: changed,
		// it is pending wherever it lies now.
		if ok || (in == "" && r == nil) {
			continue
		}
		p := Pending{File: f, Workspace: in, Before: before, Known: r != nil}
		if data, err := readAtMost(f.Path, maxKept); err == nil && Sum(data) == f.SHA256 {
			p.Now = data
		} else if errors.Is(err, errTooLong) {
			p.TooLong = true
		}
		if p.Now != nil && (len(lines(p.Now)) > maxDiffLines || len(lines(p.Before)) > maxDiffLines) {
			p.Now, p.TooLong = nil, true
		}
		out = append(out, p)
	}
	return out, nil
}

var errTooLong = errors.New("too long to show")

// readAtMost reads the file at path, up to max bytes: a longer one is
// errTooLong, not read into memory whole.
func readAtMost(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, errTooLong
	}
	return b, nil
}

// Where says why p needs trust: where it lies.
func (p Pending) Where() string {
	if p.Workspace == "" {
		return "lay where an agent could write it when you trusted it"
	}
	return "lies in the workspace " + p.Workspace + ", where an agent can write it"
}

// Describe says what a person must look at before trusting p: the whole
// file the first time, the change since the last trusted content after.
func Describe(p Pending) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s;\n", p.Path, p.Where())
	switch {
	case p.TooLong:
		fmt.Fprintf(&b, "it is too long to show here (past %d lines or %d KiB): read it yourself; if it is yours, trust it with bb-manifest --trust\n",
			maxDiffLines, maxKept>>10)
	case p.Now == nil:
		b.WriteString("it changed while bb was reading it: run the command again\n")
	case p.Before != nil:
		b.WriteString("it changed since you trusted it:\n")
		b.WriteString(Diff(p.Before, p.Now))
	case p.Known:
		b.WriteString("it changed since you trusted it (too large to show how). It reads now:\n")
		b.WriteString(Diff(nil, p.Now))
	default:
		b.WriteString("you have not trusted it yet. It reads:\n")
		b.WriteString(Diff(nil, p.Now))
	}
	return b.String()
}
