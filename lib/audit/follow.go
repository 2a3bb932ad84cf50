package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// PollInterval is how often Follow looks for new lines.
const PollInterval = 200 * time.Millisecond

// Follow calls fn with every complete line of the log at path (without its
// newline), from the first — of its oldest rotated file (see Files) — and
// then with each line appended to it, until ctx is done (it then returns
// ctx.Err()) or fn returns an error. It polls, so it works on any file
// system and across the sidecar restarting; a log that does not exist yet
// is waited for. When the log rotates, the rest of the file moved aside is
// read before the new one; a log that shrinks (truncated) is read again
// from the start. A line still being written is held back until its
// newline arrives.
func Follow(ctx context.Context, path string, fn func(line []byte) error) error {
	return follow(ctx, path, PollInterval, fn)
}

func follow(ctx context.Context, path string, every time.Duration, fn func([]byte) error) error {
	var (
		f       *os.File
		off     int64
		partial []byte
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	if err := readRotated(path, fn); err != nil {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if f == nil {
			var err error
			f, err = os.Open(path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("following audit log: %w", err)
			}
			off, partial = 0, nil
		}
		if f != nil {
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("following audit log %s: %w", path, err)
			}
			switch {
			case fi.Size() < off:
				f.Close()
				f = nil
				continue
			case replaced(path, fi):
				// Rotated: what was appended to the old file before it
				// was moved aside comes first.
				if _, err := readLines(f, off, &partial, fn); err != nil {
					return err
				}
				if err := readNewer(path, fi, fn); err != nil {
					return err
				}
				f.Close()
				f = nil
				continue
			case fi.Size() > off:
				n, err := readLines(f, off, &partial, fn)
				off += n
				if err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// readRotated calls fn with every line of the log's rotated files, oldest
// first.
func readRotated(path string, fn func([]byte) error) error {
	files, err := Files(path)
	if err != nil {
		return err
	}
	for _, name := range files {
		if name == path {
			break
		}
		if err := ReadLines(name, fn); err != nil {
			return err
		}
	}
	return nil
}

// readNewer calls fn with the lines of the rotated files newer than old
// (which was the log, and was moved aside): the log rotated more than once
// between two polls.
func readNewer(path string, old os.FileInfo, fn func([]byte) error) error {
	files, err := Files(path)
	if err != nil {
		return err
	}
	after := false
	for _, name := range files {
		if name == path {
			break
		}
		if after {
			if err := ReadLines(name, fn); err != nil {
				return err
			}
		} else if fi, err := os.Stat(name); err == nil && os.SameFile(fi, old) {
			after = true
		}
	}
	return nil
}

// ReadLines calls fn with every complete line of the file at path, without
// its newline; a last line without one (being written, or torn) is left
// out.
func ReadLines(path string, fn func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading audit log: %w", err)
	}
	defer f.Close()
	var partial []byte
	_, err = readLines(f, 0, &partial, fn)
	return err
}

// replaced reports whether path now names another file than the open one.
func replaced(path string, open os.FileInfo) bool {
	fi, err := os.Stat(path)
	return err == nil && !os.SameFile(fi, open)
}

// readLines reads from off to the end, calls fn per complete line and keeps
// an unfinished one in partial. It returns how many bytes it consumed.
func readLines(f *os.File, off int64, partial *[]byte, fn func([]byte) error) (int64, error) {
	br := bufio.NewReader(io.NewSectionReader(f, off, 1<<62))
	var n int64
	for {
		chunk, err := br.ReadBytes('\n')
		n += int64(len(chunk))
		*partial = append(*partial, chunk...)
		if len(*partial) > 0 && (*partial)[len(*partial)-1] == '\n' {
			line := bytes.TrimSuffix(*partial, []byte{'\n'})
			*partial = nil
			if ferr := fn(line); ferr != nil {
				return n, ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("following audit log: %w", err)
		}
	}
}
