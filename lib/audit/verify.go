package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Problems that Verify names in a Break.
const (
	ProblemNotEntry      = "not_entry"      // a line that is not an audit entry
	ProblemEdited        = "edited"         // a line's bytes differ from the hash chained to them
	ProblemRemoved       = "removed"        // seq jumps forward: lines are missing
	ProblemReordered     = "reordered"      // seq goes back, or a missing seq turns up later
	ProblemTruncatedHead = "truncated_head" // the log does not start at seq 1, nor where a rotation deleted a file
	ProblemTornTail      = "torn_tail"      // the last line has no newline: cut mid-line
	ProblemTruncatedTail = "truncated_tail" // the head file knows lines the log no longer has
)

// Break is where a log's chain first breaks.
type Break struct {
	File    string `json:"file,omitempty"` // of a log in several files: the one the line is in
	Line    int    `json:"line"`           // 1-based line number in the file
	Problem string `json:"problem"`
	Reason  string `json:"reason"`
}

// Report is the result of verifying a log.
type Report struct {
	File string `json:"file,omitempty"`
	// Files are the files read, oldest first, when the log has rotated.
	Files []string `json:"files,omitempty"`
	Lines int      `json:"lines"`
	OK    bool     `json:"ok"`
	// FirstSeq is the seq of the first line when it is not 1: rotation
	// deleted the files before it (RotatedAway is then FirstSeq-1, and
	// Dropped what the rotation line recorded of the deleted file), or
	// they were removed (Broken says so).
	FirstSeq    uint64   `json:"first_seq,omitempty"`
	RotatedAway uint64   `json:"rotated_away,omitempty"`
	Dropped     *Dropped `json:"dropped,omitempty"`
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
// and that the first is Genesis — or, for a log whose oldest files
// rotation deleted, that a rotation line in it recorded deleting exactly
// the lines before its first. It reports the first break; the error is for
// a reader that fails, never for a broken log.
//
// Lines cut whole from the end leave a valid, shorter chain: nothing in the
// log itself can tell. VerifyFile checks the head file for that.
func Verify(r io.Reader) (Report, error) { return verify([]source{{r: r}}, nil) }

// VerifyFile verifies the log at path, with its rotated files before it
// (see Files) as one chain, and, when its head file exists, checks the
// log's end against it too.
func VerifyFile(path string) (Report, error) {
	files, err := Files(path)
	if err != nil {
		return Report{File: path}, err
	}
	if len(files) == 0 {
		_, err := os.Stat(path) // gone: say it as the system does
		return Report{File: path}, fmt.Errorf("opening audit log: %w", &os.PathError{Op: "open", Path: path, Err: errors.Unwrap(err)})
	}
	// Without path itself but with rotated files, the rotated files are
	// the log: its head says whether lines are missing after them.
	h, ok, err := ReadHead(HeadPath(path))
	if err != nil {
		return Report{File: path}, err
	}
	var hp *Head
	if ok {
		hp = &h
	}
	var srcs []source
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return Report{File: path}, fmt.Errorf("opening audit log: %w", err)
		}
		defer f.Close()
		srcs = append(srcs, source{name: name, r: f})
	}
	rep, err := verify(srcs, hp)
	rep.File = path
	if len(files) > 1 {
		rep.Files = files
	}
	if err != nil {
		return rep, fmt.Errorf("reading audit log %s: %w", path, err)
	}
	return rep, nil
}

// source is one file of a log, read in order; name is "" for a stream.
type source struct {
	name string
	r    io.Reader
}

func verify(srcs []source, head *Head) (Report, error) {
	rep := Report{LastHash: Genesis, Head: head}
	var (
		pending   int // a line that did not parse, waiting to see if the next seals it
		pendFile  string
		pendHash  string
		missing   uint64 // after a jump in seq: the first seq skipped
		jumpSeq   uint64 // and the seq it jumped to
		first     *Entry // the first line, when it does not start at seq 1
		dropped   []Dropped
		file      string
		breakFunc = func(b Break) {
			if rep.Broken == nil {
				rep.Broken = &b
			}
		}
		notEntry = func(f string, n int) Break {
			return Break{f, n, ProblemNotEntry, fmt.Sprintf("line %d%s is not an audit entry", n, in(f))}
		}
	)
	total := 0
	for si, src := range srcs {
		if len(srcs) > 1 {
			file = src.name // a single file is named by Report.File
		}
		br := bufio.NewReaderSize(src.r, 64<<10)
		last := si == len(srcs)-1
		for n := 1; ; n++ {
			line, err := br.ReadBytes('\n')
			if len(line) == 0 && errors.Is(err, io.EOF) {
				break
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return rep, err
			}
			total++
			rep.Lines = total
			if line[len(line)-1] != '\n' {
				why := "the log was cut in the middle of a line"
				if !last {
					why = "a file that is not the newest ends mid-line"
				}
				breakFunc(Break{file, n, ProblemTornTail, fmt.Sprintf("line %d%s has no newline: %s", n, in(file), why)})
				break
			}
			line = line[:len(line)-1]
			h := hashLine(line)
			var e Entry
			if json.Unmarshal(line, &e) != nil || e.Prev == "" {
				if pending != 0 {
					breakFunc(notEntry(pendFile, pending))
				}
				pending, pendFile, pendHash = n, file, h
				rep.LastHash = h
				continue
			}
			if r := e.Rotation; r != nil && r.Dropped != nil {
				dropped = append(dropped, *r.Dropped)
			}
			if missing != 0 && e.Seq == missing && rep.Broken != nil && rep.Broken.Problem == ProblemRemoved {
				rep.Broken.Problem = ProblemReordered
				rep.Broken.Reason = fmt.Sprintf("line %d%s has seq %d, but seq %d comes later: lines were reordered", rep.Broken.Line, in(rep.Broken.File), jumpSeq, missing)
			}
			if rep.Broken != nil {
				continue // only counting lines, and looking for the missing seq
			}
			want := rep.LastSeq + 1
			switch {
			case pending != 0:
				if e.Prev != pendHash || e.Seq != want {
					breakFunc(notEntry(pendFile, pending))
					continue
				}
				rep.Torn = append(rep.Torn, pending)
				pending = 0
			case total == 1 && e.Seq > 1:
				// Rotation may have deleted what came before: decided at
				// the end, once every rotation line has been read.
				first = &e
			case e.Seq > want:
				missing, jumpSeq = want, e.Seq
				why := ""
				if n == 1 {
					why = " (the first line of this file: a file before it is missing)"
				}
				breakFunc(Break{file, n, ProblemRemoved, fmt.Sprintf("line %d%s has seq %d after seq %d: %d line(s) were removed%s", n, in(file), e.Seq, want-1, e.Seq-want, why)})
				continue
			case e.Seq < want:
				breakFunc(Break{file, n, ProblemReordered, fmt.Sprintf("line %d%s has seq %d after seq %d: lines were reordered or repeated", n, in(file), e.Seq, want-1)})
				continue
			case e.Prev != rep.LastHash:
				switch {
				case total == 1:
					breakFunc(Break{file, 1, ProblemEdited, "line 1 does not start the chain (its prev is not the genesis hash): it was edited"})
				case n == 1:
					breakFunc(Break{file, 1, ProblemEdited, fmt.Sprintf("line 1%s does not match the hash of the last line of the file before it: one of them was edited", in(file))})
				default:
					breakFunc(Break{file, n - 1, ProblemEdited, fmt.Sprintf("line %d%s does not match the hash line %d records for it: one of them was edited", n-1, in(file), n)})
				}
				continue
			}
			rep.LastSeq, rep.LastHash = e.Seq, h
			if head != nil && e.Seq == head.Seq && h != head.Hash {
				breakFunc(Break{file, n, ProblemEdited, fmt.Sprintf("line %d%s does not match the hash in the head file: it was edited", n, in(file))})
			}
		}
	}
	if pending != 0 {
		breakFunc(notEntry(pendFile, pending))
	}
	if first != nil {
		rep.FirstSeq = first.Seq
		if d := matchDrop(dropped, first); d != nil {
			rep.RotatedAway, rep.Dropped = first.Seq-1, d
		} else {
			// The first line is the first break, whatever came after it.
			name := ""
			if len(srcs) > 1 {
				name = srcs[0].name
			}
			rep.Broken = &Break{name, 1, ProblemTruncatedHead, fmt.Sprintf("the log starts at seq %d, and no rotation line records deleting the %d line(s) before it: they were removed", first.Seq, first.Seq-1)}
		}
	}
	if head != nil && rep.Broken == nil && head.Seq > rep.LastSeq {
		breakFunc(Break{file, rep.Lines + 1, ProblemTruncatedTail,
			fmt.Sprintf("the log ends at seq %d, but its head file records seq %d: %d line(s) were cut from the end", rep.LastSeq, head.Seq, head.Seq-rep.LastSeq)})
	}
	rep.OK = rep.Broken == nil
	return rep, nil
}

// matchDrop returns the rotation record of deleting exactly the lines
// before first: its last seq and hash are what first follows.
func matchDrop(dropped []Dropped, first *Entry) *Dropped {
	for i := len(dropped) - 1; i >= 0; i-- {
		if d := dropped[i]; d.LastSeq+1 == first.Seq && d.LastHash == first.Prev {
			return &d
		}
	}
	return nil
}

// in names a file in a reason, for a log in several files.
func in(file string) string {
	if file == "" {
		return ""
	}
	return " of " + filepath.Base(file)
}
