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
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bb-bottles/bb/lib/state"
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
	data, err := os.ReadFile(s.file(path))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, fmt.Errorf("reading the trust store: %w", err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil || r.Path != path {
		// Not ours, or another path's: trust nothing from it.
		return false, nil, nil
	}
	return r.SHA256 == sum, []byte(r.Content), nil
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

func lines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
