package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Head is what a file writer last knew of its log's end: the seq and hash
// of the last line. A log's lines carry no memory of lines after them, so
// cutting whole lines off the end leaves a chain that verifies; the head,
// kept beside the log, is what notices. It lags the log by up to
// HeadInterval, so a log may run past its head, never fall short of it.
// Like the log, it only detects tampering by someone who does not rewrite
// both: it is evidence, not a signature.
type Head struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
}

// HeadPath is the head file of the log at path: audit.jsonl → audit.head.
func HeadPath(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".head"
}

// ReadHead reads a head file; ok is false when there is none.
func ReadHead(path string) (h Head, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Head{}, false, nil
	}
	if err != nil {
		return Head{}, false, fmt.Errorf("reading audit head: %w", err)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return Head{}, false, fmt.Errorf("reading audit head %s: %w", path, err)
	}
	return h, true, nil
}

// writeHeadFile replaces the head file atomically (temp file + rename), so
// a reader never sees half of one.
func writeHeadFile(path string, h Head) (err error) {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing audit head: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("writing audit head %s: %w", path, err)
		}
	}()
	if _, err = f.Write(append(data, '\n')); err != nil {
		return err
	}
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
