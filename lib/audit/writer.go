package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Writer appends entries to an audit log, chaining each line to the one
// before it. It is safe for concurrent use.
//
// It sits on the sidecar's request path, so a Write is one marshal and one
// write(2) under a mutex and nothing more: no fsync per line. A line that
// reached the kernel survives the sidecar crashing; only a crash of the
// whole host can lose the last lines, and the head file (see HeadPath)
// bounds what goes unnoticed to about HeadInterval.
type Writer struct {
	mu   sync.Mutex
	w    io.Writer
	f    *os.File // nil for a stream writer
	seq  uint64
	prev string
	err  error  // sticky: set when a line was written only in part
	buf  []byte // the last line's bytes, reused for the next
	// failing is set while the last Write failed (or the writer is
	// closed or stuck), so a caller can refuse what it cannot audit.
	failing atomic.Bool

	path string
	rot  Rotate
	size int64 // of the current file
	// The current file's first seq and its lines that are blocks and
	// carry the canary: its rotation line records them.
	fileFirst              uint64
	fileBlocks, fileCanary int
	canaryAway             int // Rotation.CanaryRotatedAway of the last rotation

	headPath  string
	headMu    sync.Mutex // serialises head writes
	headDirty bool
	stop      chan struct{}
	done      chan struct{}
	closed    bool
}

// maxKeptLine bounds the line buffer a Writer keeps between writes.
const maxKeptLine = 64 << 10

// HeadInterval is how often, at most, a file writer rewrites its head file.
const HeadInterval = time.Second

// NewWriter opens the log at path for appending (creating it 0600) and
// continues the chain of the lines already in it.
//
// A torn last line — bytes after the last newline, left by a crash in the
// middle of a write — is kept as evidence, never cut off: NewWriter ends it
// with a newline and chains the next line to it (its Prev is the torn
// line's hash, its Seq follows the last line that parses). Verify lists such
// sealed lines in Report.Torn; the chain stays provable across them.
//
// The writer also keeps the head file HeadPath(path) — the last seq and
// hash — rewritten atomically at most once per HeadInterval and on Close,
// so that VerifyFile can tell when whole lines were cut from the end. When
// the head it finds is ahead of the log (lines were cut while no writer
// ran), it continues from the head's seq, so the gap stays in the log as
// evidence rather than being papered over.
//
// The log never rotates; see OpenWriter.
func NewWriter(path string) (*Writer, error) { return OpenWriter(path, Rotate{}) }

// Rotate bounds a log's size on disk. When a line would take the current
// file past MaxSize, the writer ends it with a rotation line, moves it to
// RotatedPath(path, 1) (and each older file one number up), and goes on in
// a new file whose first line chains to the rotation line. Only MaxFiles
// rotated files are kept: the rotation line records the oldest, which it
// deletes (its seq range, last hash and how many blocks and canaries it
// held), so Verify can tell lines rotated away from lines cut.
type Rotate struct {
	MaxSize  int64 // bytes of the current file; 0 never rotates
	MaxFiles int   // rotated files kept beside it (at least 1)
}

// OpenWriter is NewWriter with rotation. When the log at path is missing
// or empty and a rotated file is there (the writer stopped between moving
// a file aside and writing the next), it continues that file's chain.
func OpenWriter(path string, rot Rotate) (*Writer, error) {
	rot.MaxFiles = max(rot.MaxFiles, 1)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	seq, prev, torn, err := tail(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading audit log %s: %w", path, err)
	}
	if seq == 0 && prev == Genesis {
		if seq, prev, err = tailOf(RotatedPath(path, 1)); err != nil {
			f.Close()
			return nil, err
		}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading audit log %s: %w", path, err)
	}
	// Lines cut from the end while no writer ran must not vanish without a
	// trace when this writer rewrites the head: the next line takes the seq
	// after the head's, and verify reports the gap as removed lines.
	if h, ok, err := ReadHead(HeadPath(path)); err == nil && ok && h.Seq > seq {
		seq = h.Seq
	}
	if torn {
		if _, err := f.Write([]byte{'\n'}); err != nil {
			f.Close()
			return nil, fmt.Errorf("sealing the torn last line of %s: %w", path, err)
		}
	}
	w := &Writer{w: f, f: f, seq: seq, prev: prev, headPath: HeadPath(path), path: path, rot: rot, size: fi.Size(),
		headDirty: true, stop: make(chan struct{}), done: make(chan struct{})}
	if last, _, err := lastEntryOf(RotatedPath(path, 1)); err == nil && last.Rotation != nil {
		w.canaryAway = last.Rotation.CanaryRotatedAway
	}
	if rot.MaxSize > 0 && fi.Size() > 0 {
		if d, ok, err := describe(path); err == nil && ok {
			w.fileFirst, w.fileBlocks, w.fileCanary = d.FirstSeq, d.Blocks, d.Canary
		}
	}
	// The head is written now, not a HeadInterval later: a verify right
	// after the first lines has one to check against.
	if err := w.writeHead(); err != nil {
		f.Close()
		return nil, err
	}
	go w.keepHead()
	return w, nil
}

// tailOf is tail of the file at path: Genesis when it does not exist.
func tailOf(path string) (uint64, string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, Genesis, nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("reading audit log: %w", err)
	}
	defer f.Close()
	seq, prev, _, err := tail(f)
	if err != nil {
		return 0, "", fmt.Errorf("reading audit log %s: %w", path, err)
	}
	return seq, prev, nil
}

// NewStreamWriter starts a new chain on w (the first line carries Genesis).
// It keeps no head file.
func NewStreamWriter(w io.Writer) *Writer {
	return &Writer{w: w, prev: Genesis}
}

// MaxField is the most bytes of one string field a Writer logs; a longer
// one is cut at a character boundary and ends in a note of how much was
// cut. The agent chooses paths, queries and hosts: one request must not
// write a line of any size it likes.
const MaxField = 1 << 10

// A summary line names at most maxSample hosts, each cut to maxSampleLen.
const (
	maxSample    = 8
	maxSampleLen = 128
)

// Write fills e's Seq and Prev, and its Time when zero (in UTC), cuts its
// string fields to MaxField, and appends it as one line with a single
// write call.
func (w *Writer) Write(e Entry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	for _, f := range []*string{&e.Method, &e.Host, &e.Path, &e.Query, &e.Decision, &e.Reason,
		&e.Route, &e.Secret, &e.Encoding, &e.Client} {
		*f = cut(*f, MaxField)
	}
	if g := e.Git; g != nil {
		c := *g
		c.Repo, c.Service = cut(c.Repo, MaxField), cut(c.Service, MaxField)
		if len(c.Refs) > MaxGitRefs {
			c.RefCount = max(c.RefCount, len(c.Refs))
			c.Refs = c.Refs[:MaxGitRefs]
		}
		c.Refs = append([]GitRef(nil), c.Refs...)
		for i := range c.Refs {
			r := &c.Refs[i]
			r.Ref, r.Old, r.New = cut(r.Ref, MaxField), cut(r.Old, 80), cut(r.New, 80)
		}
		e.Git = &c
	}

	if t := e.Thinned; t != nil {
		c := *t
		c.Sample = append([]string(nil), c.Sample[:min(len(c.Sample), maxSample)]...)
		for i := range c.Sample {
			c.Sample[i] = Truncate(c.Sample[i], maxSampleLen)
		}
		e.Thinned = &c
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.writeLocked(&e)
	w.failing.Store(err != nil)
	return err
}

func (w *Writer) writeLocked(e *Entry) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("writing audit log: writer is closed")
	}
	e.Seq = w.seq + 1
	e.Prev = w.prev
	line, err := marshalLine(w.buf[:0], e)
	if cap(line) <= maxKeptLine {
		w.buf = line // the kernel has its own copy once written
	}
	if err != nil {
		return fmt.Errorf("writing audit log: %w", err)
	}
	if w.rot.MaxSize > 0 && w.f != nil && w.size > 0 && w.size+int64(len(line)) > w.rot.MaxSize && e.Rotation == nil {
		if err := w.rotateLocked(); err != nil {
			return err
		}
		return w.writeLocked(e) // after the rotation line: the next seq
	}
	n, err := w.w.Write(line)
	if err != nil {
		if n > 0 {
			// The log now ends in a fragment; appending after it would merge
			// two lines. Stop, and let the next NewWriter seal it.
			w.err = fmt.Errorf("writing audit log: line %d written in part: %w", e.Seq, err)
			return w.err
		}
		return fmt.Errorf("writing audit log: %w", err)
	}
	w.seq = e.Seq
	w.prev = hashLine(line[:len(line)-1])
	w.headDirty = true
	w.size += int64(n)
	if w.fileFirst == 0 {
		w.fileFirst = e.Seq
	}
	if e.Decision == Block {
		w.fileBlocks++
	}
	if e.Canary {
		w.fileCanary++
	}
	return nil
}

// Failing reports whether the last Write failed, or the writer is closed:
// what it would record is not being recorded. It is one atomic load, for
// a caller to check before each thing it audits; a Write that succeeds
// clears it.
func (w *Writer) Failing() bool { return w.failing.Load() }

// Truncate cuts s to at most max bytes, at a character boundary, ending
// in a note of how many bytes were cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// The count of cut bytes has at most as many digits as len(s).
	keep := max(0, n-len("…[cut  bytes]")-len(strconv.Itoa(len(s))))
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + "…[cut " + strconv.Itoa(len(s)-keep) + " bytes]"
}

// cut is Truncate by the bytes s takes in a line once escaped, where a
// control byte takes six: a path of %01s must not make a line six times
// MaxField.
func cut(s string, n int) string {
	if len(s) <= n/6 {
		return s // fits even if every byte is escaped
	}
	note := len("…[cut  bytes]") + len(strconv.Itoa(len(s)))
	size, keep, fits := 0, 0, -1
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		size += escapedLen(s[i], r, w)
		i += w
		if size <= n-note {
			keep = i
		}
		if size > n {
			break
		}
		if i == len(s) {
			fits = i
		}
	}
	if fits >= 0 {
		return s
	}
	return s[:keep] + "…[cut " + strconv.Itoa(len(s)-keep) + " bytes]"
}

// escapedLen is how many bytes appendString writes for the rune r, of w
// bytes starting with byte b.
func escapedLen(b byte, r rune, w int) int {
	switch {
	case b < utf8.RuneSelf:
		switch {
		case b == '"' || b == '\\' || b == '\b' || b == '\f' || b == '\n' || b == '\r' || b == '\t':
			return 2
		case b < 0x20 || b == 0x7f:
			return 6
		}
		return 1
	case r == utf8.RuneError && w == 1, r <= 0x9f, r == '\u2028', r == '\u2029':
		return 6
	}
	return w
}

// Close writes the head file a last time and closes the log.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.failing.Store(true)
	w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	close(w.stop)
	<-w.done
	herr := w.writeHead()
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("closing audit log: %w", err)
	}
	return herr
}

func (w *Writer) keepHead() {
	defer close(w.done)
	t := time.NewTicker(HeadInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			// A failed head write is retried on the next tick; the log
			// itself is what matters.
			_ = w.writeHead()
		}
	}
}

func (w *Writer) writeHead() error {
	w.headMu.Lock()
	defer w.headMu.Unlock()
	w.mu.Lock()
	if !w.headDirty {
		w.mu.Unlock()
		return nil
	}
	h := Head{Seq: w.seq, Hash: w.prev, Time: time.Now().UTC()}
	w.headDirty = false
	w.mu.Unlock()
	if err := writeHeadFile(w.headPath, h); err != nil {
		w.mu.Lock()
		w.headDirty = true
		w.mu.Unlock()
		return err
	}
	return nil
}

// marshalLine appends e's line, newline included, to b.
func marshalLine(b []byte, e *Entry) ([]byte, error) {
	if line, ok := appendEntry(b, e); ok {
		return line, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	// As appendString does: no raw DEL or C1 control reaches a line. In
	// encoding/json's output they can only be inside strings.
	return append(b, c1Escapes.Replace(buf.String())...), nil // Encode ends it with exactly one '\n'
}

var c1Escapes = func() *strings.Replacer {
	var oldnew []string
	for r := rune(0x7f); r <= 0x9f; r++ {
		oldnew = append(oldnew, string(r), `\u00`+string(hexDigits[r>>4])+string(hexDigits[r&0xF]))
	}
	return strings.NewReplacer(oldnew...)
}()

// hashLine is the hex SHA-256 of a line's bytes without its newline: the
// next line's Prev.
func hashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// tail reads the end of an open log: the seq of its last line that parses,
// the hash of its last line, and whether it ends in a torn line (no
// newline), which then counts as its last line. It reads backwards in
// growing chunks, so opening a long log is cheap.
func tail(f *os.File) (seq uint64, prev string, torn bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, "", false, err
	}
	size := fi.Size()
	if size == 0 {
		return 0, Genesis, false, nil
	}
	for chunk := int64(64 << 10); ; chunk *= 2 {
		start := max(size-chunk, 0)
		buf := make([]byte, size-start)
		if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, "", false, err
		}
		torn = buf[len(buf)-1] != '\n'
		body := bytes.TrimSuffix(buf, []byte{'\n'})
		lines := bytes.Split(body, []byte{'\n'})
		if start > 0 {
			lines = lines[1:] // the first may begin before the chunk
		}
		if len(lines) == 0 {
			continue // one line longer than the chunk
		}
		prev = hashLine(lines[len(lines)-1])
		for i := len(lines) - 1; i >= 0; i-- {
			var e Entry
			if json.Unmarshal(lines[i], &e) == nil {
				return e.Seq, prev, torn, nil
			}
		}
		if start == 0 {
			return 0, prev, torn, nil // nothing in it parses: Verify will say so
		}
	}
}
