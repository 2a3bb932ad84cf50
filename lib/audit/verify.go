package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Problems that Verify names in a Break.
const (
	ProblemNotEntry      = "not_entry"      // a line that is not an audit entry
	ProblemEdited        = "edited"         // a line's bytes differ from the hash chained to them
	ProblemRemoved       = "removed"        // seq jumps forward: lines are missing
	ProblemReordered     = "reordered"      // seq goes back, or a missing seq turns up later
	ProblemTruncatedHead = "truncated_head" // the log does not start at seq 1
	ProblemTornTail      = "torn_tail"      // the last line has no newline: cut mid-line
	ProblemTruncatedTail = "truncated_tail" // the head file knows lines the log no longer has
)

// Break is where a log's chain first breaks.
type Break struct {
	Line    int    `json:"line"` // 1-based line number in the file
	Problem string `json:"problem"`
	Reason  string `json:"reason"`
}

// Report is the result of verifying a log.
type Report struct {
	File  string `json:"file,omitempty"`
	Lines int    `json:"lines"`
	OK    bool   `json:"ok"`
	// LastSeq and LastHash are those of the last line (the next line's
	// seq - 1 and Prev).
	LastSeq  uint64 `json:"last_seq"`
	LastHash string `json:"last_hash"`
	// Torn lists lines cut short by a crash and sealed by the next writer:
	// the line after each commits to its exact bytes, so the chain holds,
	// but the entry it was writing is lost.
	Torn []int `json:"torn,omitempty"`
	// Head is the head file the log was checked against, when there was one.
	Head   *Head  `json:"head,omitempty"`
	Broken *Break `json:"broken,omitempty"`
}

// Verify reads a log and checks that every line is an entry, that seq runs
// from 1 without gaps, that each line's Prev is the previous line's hash
// and that the first is Genesis. It reports the first break; the error is
// for a reader that fails, never for a broken log.
//
// Lines cut whole from the end leave a valid, shorter chain: nothing in the
// log itself can tell. VerifyFile checks the head file for that.
func Verify(r io.Reader) (Report, error) { return verify(r, nil) }

// VerifyFile verifies the log at path and, when its head file exists,
// checks the log against it too.
func VerifyFile(path string) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{File: path}, fmt.Errorf("opening audit log: %w", err)
	}
	defer f.Close()
	h, ok, err := ReadHead(HeadPath(path))
	if err != nil {
		return Report{File: path}, err
	}
	var hp *Head
	if ok {
		hp = &h
	}
	rep, err := verify(f, hp)
	rep.File = path
	if err != nil {
		return rep, fmt.Errorf("reading audit log %s: %w", path, err)
	}
	return rep, nil
}

func verify(r io.Reader, head *Head) (Report, error) {
	rep := Report{LastHash: Genesis, Head: head}
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		pending   int // a line that did not parse, waiting to see if the next seals it
		pendHash  string
		missing   uint64 // after a jump in seq: the first seq skipped
		jumpSeq   uint64 // and the seq it jumped to
		breakFunc = func(b Break) {
			if rep.Broken == nil {
				rep.Broken = &b
			}
		}
	)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return rep, err
		}
		rep.Lines = n
		if line[len(line)-1] != '\n' {
			breakFunc(Break{n, ProblemTornTail, fmt.Sprintf("line %d has no newline: the log was cut in the middle of a line", n)})
			break
		}
		line = line[:len(line)-1]
		h := hashLine(line)
		var e Entry
		if json.Unmarshal(line, &e) != nil || e.Prev == "" {
			if pending != 0 {
				breakFunc(Break{pending, ProblemNotEntry, fmt.Sprintf("line %d is not an audit entry", pending)})
			}
			pending, pendHash = n, h
			rep.LastHash = h
			continue
		}
		if missing != 0 && e.Seq == missing && rep.Broken != nil && rep.Broken.Problem == ProblemRemoved {
			rep.Broken.Problem = ProblemReordered
			rep.Broken.Reason = fmt.Sprintf("line %d has seq %d, but seq %d comes later: lines were reordered", rep.Broken.Line, jumpSeq, missing)
		}
		if rep.Broken != nil {
			continue // only counting lines, and looking for the missing seq
		}
		want := rep.LastSeq + 1
		switch {
		case pending != 0:
			if e.Prev != pendHash || e.Seq != want {
				breakFunc(Break{pending, ProblemNotEntry, fmt.Sprintf("line %d is not an audit entry", pending)})
				continue
			}
			rep.Torn = append(rep.Torn, pending)
			pending = 0
		case n == 1 && e.Seq > 1:
			breakFunc(Break{1, ProblemTruncatedHead, fmt.Sprintf("the log starts at seq %d: the %d line(s) before it were removed", e.Seq, e.Seq-1)})
			continue
		case e.Seq > want:
			missing, jumpSeq = want, e.Seq
			breakFunc(Break{n, ProblemRemoved, fmt.Sprintf("line %d has seq %d after seq %d: %d line(s) were removed", n, e.Seq, want-1, e.Seq-want)})
			continue
		case e.Seq < want:
			breakFunc(Break{n, ProblemReordered, fmt.Sprintf("line %d has seq %d after seq %d: lines were reordered or repeated", n, e.Seq, want-1)})
			continue
		case e.Prev != rep.LastHash:
			if n == 1 {
				breakFunc(Break{1, ProblemEdited, "line 1 does not start the chain (its prev is not the genesis hash): it was edited"})
			} else {
				breakFunc(Break{n - 1, ProblemEdited, fmt.Sprintf("line %d does not match the hash line %d records for it: one of them was edited", n-1, n)})
			}
			continue
		}
		rep.LastSeq, rep.LastHash = e.Seq, h
		if head != nil && e.Seq == head.Seq && h != head.Hash {
			breakFunc(Break{n, ProblemEdited, fmt.Sprintf("line %d does not match the hash in the head file: it was edited", n)})
		}
	}
	if pending != 0 {
		breakFunc(Break{pending, ProblemNotEntry, fmt.Sprintf("line %d is not an audit entry", pending)})
	}
	if head != nil && rep.Broken == nil && head.Seq > rep.LastSeq {
		breakFunc(Break{rep.Lines + 1, ProblemTruncatedTail,
			fmt.Sprintf("the log ends at seq %d, but its head file records seq %d: %d line(s) were cut from the end", rep.LastSeq, head.Seq, head.Seq-rep.LastSeq)})
	}
	rep.OK = rep.Broken == nil
	return rep, nil
}
