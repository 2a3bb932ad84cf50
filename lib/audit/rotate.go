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
	oldest := RotatedPath(w.path, w.rot.MaxFiles)
	rot := &Rotation{File: filepath.Base(w.path)}
	reason := "rotating: " + filepath.Base(w.path) + " is moved to " + filepath.Base(RotatedPath(w.path, 1))
	if d, ok, err := describe(oldest); err == nil && ok {
		rot.Dropped = &d
		reason += fmt.Sprintf("; %s (seq %d to %d, %d blocks, %d with the canary) is deleted: %d files are kept",
			d.File, d.FirstSeq, d.LastSeq, d.Blocks, d.Canary, w.rot.MaxFiles)
	}
	e := Entry{Time: time.Now().UTC(), Method: "ROTATE", Reason: reason, Rotation: rot}
	if err := w.writeLocked(&e); err != nil {
		return err
	}
	w.size = 0 // a failure below retries only after another MaxSize
	if rot.Dropped != nil {
		if err := os.Remove(oldest); err != nil && !errors.Is(err, os.ErrNotExist) {
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
	return nil
}

// describe reads a log file about to be deleted: its first and last seq,
// its last line's hash, and how many of its lines are blocks and carry the
// canary. A raw `"decision":"block"` or `"canary":true` can only be a
// field: inside a string its quotes would be escaped.
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
	br := bufio.NewReaderSize(f, 64<<10)
	var last []byte
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(line, []byte{'\n'})
			var e struct {
				Seq uint64 `json:"seq"`
			}
			if json.Unmarshal(line, &e) == nil {
				if d.FirstSeq == 0 {
					d.FirstSeq = e.Seq
				}
				d.LastSeq = e.Seq
			}
			if bytes.Contains(line, []byte(`"decision":"block"`)) {
				d.Blocks++
			}
			if bytes.Contains(line, []byte(`"canary":true`)) {
				d.Canary++
			}
			last = line
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Dropped{}, false, err
		}
	}
	if last == nil {
		return Dropped{}, false, nil
	}
	d.LastHash = hashLine(last)
	return d, true, nil
}
