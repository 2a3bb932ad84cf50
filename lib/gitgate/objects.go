package gitgate

import (
	"bytes"
	"encoding/hex"
	"fmt"
)

// commitInfo is what the gate keeps of a commit: its tree and parents.
type commitInfo struct {
	tree    Hash
	parents []Hash
}

// parseCommit reads a commit's tree and parents from its headers ("tree
// <id>" first, then "parent <id>" lines), as git's parse_commit_buffer
// does; the rest of the commit is only scanned.
func parseCommit(b []byte) (commitInfo, error) {
	var c commitInfo
	line, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return c, fmt.Errorf("a commit with no header")
	}
	id, ok := bytes.CutPrefix(line, []byte("tree "))
	if !ok {
		return c, fmt.Errorf("a commit that does not start with its tree")
	}
	var err error
	if c.tree, err = hexHash(id); err != nil {
		return c, fmt.Errorf("a commit's tree: %w", err)
	}
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		id, isParent := bytes.CutPrefix(line, []byte("parent "))
		if !ok || !isParent {
			return c, nil
		}
		h, err := hexHash(id)
		if err != nil {
			return c, fmt.Errorf("a commit's parent: %w", err)
		}
		c.parents = append(c.parents, h)
	}
}

func hexHash(b []byte) (Hash, error) {
	var h Hash
	if len(b) != 40 {
		return h, fmt.Errorf("%q is not an object id", truncate(b, 80))
	}
	if _, err := hex.Decode(h[:], b); err != nil {
		return h, fmt.Errorf("%q is not an object id", truncate(b, 80))
	}
	return h, nil
}

// treeEntry is one entry of a tree.
type treeEntry struct {
	mode []byte
	name []byte
	id   Hash
}

// eachTreeEntry calls f for every entry of tree b ("<mode> <name>\0<20
// bytes of id>" after one another), failing on any that does not parse.
func eachTreeEntry(b []byte, f func(treeEntry) error) error {
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return fmt.Errorf("a tree entry without a mode")
		}
		nul := bytes.IndexByte(b[sp+1:], 0)
		if nul < 0 {
			return fmt.Errorf("a tree entry without a name's end")
		}
		e := treeEntry{mode: b[:sp], name: b[sp+1 : sp+1+nul]}
		b = b[sp+1+nul+1:]
		if len(b) < 20 {
			return fmt.Errorf("a tree entry without its id")
		}
		copy(e.id[:], b[:20])
		b = b[20:]
		if err := f(e); err != nil {
			return err
		}
	}
	return nil
}

// isTreeMode reports a subtree entry's mode.
func isTreeMode(mode []byte) bool { return string(mode) == "40000" || string(mode) == "040000" }
