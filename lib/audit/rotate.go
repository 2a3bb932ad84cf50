package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// RotatedPath is the n-th rotated file of the log at path:
// audit.jsonl → audit.1.jsonl, audit.2.jsonl, ... (1 is the newest).
func RotatedPath(path string, n int) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "." + strconv.Itoa(n) + ext
}

// Files lists the files of the log at path, oldest first: its rotated
// files, then path itself (when it exists). A missing number among the
// rotated files is not skipped over silently: Verify finds the gap in seq.
func Files(path string) ([]string, error) {
	ext := filepath.Ext(path)
	stem := strings.TrimSuffix(path, ext)
	matches, err := filepath.Glob(globEscape(stem) + ".*" + globEscape(ext))
	if err != nil {
		return nil, fmt.Errorf("listing the files of audit log %s: %w", path, err)
	}
	type numbered struct {
		n    int
		path string
	}
	var rotated []numbered
	for _, m := range matches {
		mid := strings.TrimSuffix(strings.TrimPrefix(m, stem+"."), ext)
		if n, err := strconv.Atoi(mid); err == nil && n > 0 && strconv.Itoa(n) == mid {
			rotated = append(rotated, numbered{n, m})
		}
	}
	sort.Slice(rotated, func(i, j int) bool { return rotated[i].n > rotated[j].n })
	var out []string
	for _, r := range rotated {
		out = append(out, r.path)
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	return out, nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// rotateLocked ends the current file with a rotation line, deletes the
// oldest rotated file if there are MaxFiles, moves the others one number
// up and the current file to number 1, and opens a new current file. A
// rename that fails leaves the writer appending to the file it has: the
// rotation line then sits mid-file, which Verify accepts, and the next
// attempt waits for another MaxSize.
func (w *Writer) rotateLocked() error {
	rot := &Rotation{File: filepath.Base(w.path), FirstSeq: w.fileFirst, Blocks: w.fileBlocks, Canary: w.fileCanary}
	reason := "rotating: " + filepath.Base(w.path) + " is moved to " + filepath.Base(RotatedPath(w.path, 1))
	// The files to delete: number MaxFiles, and any beyond it (left by a
	// writer that kept more). The record is of the newest of them, which
	// the oldest file kept follows; the counts are of them all.
	doomed := w.doomed()
	for i, name := range doomed {
		d, ok, err := dropping(name)
		if err != nil || !ok {
			continue
		}
		w.canaryAway += d.Canary
		if rot.Dropped == nil {
			rot.Dropped = &d
			continue
		}
		rot.Dropped.FirstSeq = min(rot.Dropped.FirstSeq, d.FirstSeq)
		rot.Dropped.Blocks += d.Blocks
		rot.Dropped.Canary += d.Canary
		if i == len(doomed)-1 {
			rot.Dropped.File += " and older"
		}
	}
	if d := rot.Dropped; d != nil {
		reason += fmt.Sprintf("; %s (seq %d to %d, %d blocks, %d with the canary) is deleted: %d files are kept",
			d.File, d.FirstSeq, d.LastSeq, d.Blocks, d.Canary, w.rot.MaxFiles)
	}
	rot.CanaryRotatedAway = w.canaryAway
	e := Entry{Time: time.Now().UTC(), Method: "ROTATE", Reason: reason, Rotation: rot}
	if err := w.writeLocked(&e); err != nil {
		return err
	}
	w.size = 0 // a failure below retries only after another MaxSize
	for _, name := range doomed {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	for i := w.rot.MaxFiles - 1; i >= 1; i-- {
		if err := os.Rename(RotatedPath(w.path, i), RotatedPath(w.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	if err := os.Rename(w.path, RotatedPath(w.path, 1)); err != nil {
		return nil
	}
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		// The old file is moved aside but still open: keep writing to it
		// rather than lose lines; the next rotation tries again.
		return nil
	}
	w.f.Close()
	w.f, w.w = f, f
	w.fileFirst, w.fileBlocks, w.fileCanary = 0, 0, 0
	return nil
}

// doomed lists the rotated files a rotation deletes, newest first: number
// MaxFiles and any after it.
func (w *Writer) doomed() []string {
	files, err := Files(w.path)
	if err != nil {
		return []string{RotatedPath(w.path, w.rot.MaxFiles)}
	}
	var out []string
	for i := len(files) - 1; i >= 0; i-- { // Files is oldest first
		if n := rotatedNumber(w.path, files[i]); n >= w.rot.MaxFiles {
			out = append(out, files[i])
		}
	}
	return out
}

// rotatedNumber is n of RotatedPath(path, n) == name, or 0.
func rotatedNumber(path, name string) int {
	ext := filepath.Ext(path)
	mid := strings.TrimSuffix(strings.TrimPrefix(name, strings.TrimSuffix(path, ext)+"."), ext)
	n, err := strconv.Atoi(mid)
	if err != nil || n <= 0 || strconv.Itoa(n) != mid {
		return 0
	}
	return n
}

// dropping describes the rotated file about to be deleted from its last
// line, the rotation line that ended it, which carries its counts; a file
// that does not end in one (the writer failed to move it aside) is read
// whole.
func dropping(path string) (Dropped, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Dropped{}, false, nil
	}
	if err != nil {
		return Dropped{}, false, err
	}
	last, hash, err := lastEntry(f)
	f.Close()
	if err != nil {
		return Dropped{}, false, err
	}
	if r := last.Rotation; r != nil && r.FirstSeq > 0 {
		return Dropped{File: filepath.Base(path), FirstSeq: r.FirstSeq, LastSeq: last.Seq, LastHash: hash,
			Blocks: r.Blocks, Canary: r.Canary}, true, nil
	}
	return describe(path)
}

// lastEntryOf is lastEntry of the file at path.
func lastEntryOf(path string) (Entry, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return Entry{}, "", err
	}
	defer f.Close()
	return lastEntry(f)
}

// lastEntry reads the last line of an open log, and its hash.
func lastEntry(f *os.File) (Entry, string, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return Entry{}, "", err
	}
	for chunk := int64(64 << 10); ; chunk *= 2 {
		start := max(fi.Size()-chunk, 0)
		buf := make([]byte, fi.Size()-start)
		if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
			return Entry{}, "", err
		}
		body := bytes.TrimSuffix(buf, []byte{'\n'})
		i := bytes.LastIndexByte(body, '\n')
		if i < 0 && start > 0 {
			continue
		}
		line := body[i+1:]
		var e Entry
		json.Unmarshal(line, &e) //nolint:errcheck // not an entry: no rotation counts
		return e, hashLine(line), nil
	}
}

// describe reads a log file about to be deleted: its first and last seq,
// its last line's hash, and how many of its lines are blocks and carry the
// canary. A raw `"decision":"block"` or `"canary":true` can only be a
// field: inside a string its quotes would be escaped. It runs under the
// writer's lock, once per rotation, so it only counts: about 50 ms for a
// 64 MiB file.
func describe(path string) (Dropped, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Dropped{}, false, nil
	}
	if err != nil {
		return Dropped{}, false, err
	}
	defer f.Close()
	d := Dropped{File: filepath.Base(path)}
	var prev string
	if d.LastSeq, prev, _, err = tail(f); err != nil {
		return Dropped{}, false, err
	}
	if d.LastSeq == 0 {
		return Dropped{}, false, nil // empty, or nothing in it parses
	}
	d.LastHash = prev
	br := bufio.NewReaderSize(f, 64<<10)
	first, err := br.ReadSlice('\n')
	var e struct {
		Seq uint64 `json:"seq"`
	}
	if err != nil || json.Unmarshal(first, &e) != nil {
		return Dropped{}, false, nil
	}
	d.FirstSeq = e.Seq
	if d.Blocks, d.Canary, err = countFields(io.MultiReader(bytes.NewReader(first), br)); err != nil {
		return Dropped{}, false, err
	}
	return d, true, nil
}

var (
	blockField  = []byte(`"decision":"block"`)
	canaryField = []byte(`"canary":true`)
)

// countFields counts the lines of r that are blocks and that carry the
// canary. A line longer than the buffer is looked at in pieces; a field
// split between two is missed (lines are a few KiB at most).
func countFields(r io.Reader) (blocks, canary int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if bytes.Contains(line, blockField) {
			blocks++
		}
		if bytes.Contains(line, canaryField) {
			canary++
		}
		if errors.Is(err, io.EOF) {
			return blocks, canary, nil
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return 0, 0, err
		}
	}
}
