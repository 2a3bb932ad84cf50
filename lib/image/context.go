// Package image holds what building a container image needs short of an
// engine: build contexts as in-memory tars, and the content hashes that name
// images so an unchanged one is never rebuilt. It does not import the Docker
// client.
package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
)

// DockerfileName is where a context's Dockerfile is stored.
const DockerfileName = "Dockerfile"

// File is one file of a build context besides the Dockerfile.
type File struct {
	Data []byte
	// Mode holds the permission bits; 0 means 0644.
	Mode int64
}

// Context is a build context: a Dockerfile and the files it copies, keyed by
// slash-separated relative path.
type Context struct {
	Dockerfile []byte
	Files      map[string]File
}

// paths returns the context's file paths, sorted, after checking each is a
// clean relative path that stays inside the context.
func (c Context) paths() ([]string, error) {
	names := make([]string, 0, len(c.Files))
	for name := range c.Files {
		if name == "" || path.IsAbs(name) || path.Clean(name) != name ||
			name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, `\`) {
			return nil, fmt.Errorf("context file %q: want a clean relative path", name)
		}
		if name == DockerfileName || name == ".dockerignore" {
			return nil, fmt.Errorf("context file %q: reserved name", name)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// Tar writes the context as an uncompressed tar. The tar is deterministic:
// entries are sorted, owned by root and dated at the epoch, so equal
// contexts give equal bytes (and the engine's build cache can match them).
func (c Context) Tar() ([]byte, error) {
	names, err := c.paths()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(name string, mode int64, data []byte) error {
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode & 0o7777,
			Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing %s to the build context: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("writing %s to the build context: %w", name, err)
		}
		return nil
	}
	if err := write(DockerfileName, 0o644, c.Dockerfile); err != nil {
		return nil, err
	}
	for _, name := range names {
		if err := write(name, c.Files[name].Mode, c.Files[name].Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the build context: %w", err)
	}
	return buf.Bytes(), nil
}

// Hash is the hex SHA-256 of everything that decides what a build makes:
// the Dockerfile, each file's path, mode and bytes, the build arguments and
// the labels. Its encoding is length-prefixed, so no two different inputs
// share one.
func Hash(c Context, args, labels map[string]string) (string, error) {
	names, err := c.paths()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	field(h, []byte("bb.image.v1"))
	field(h, c.Dockerfile)
	count(h, len(names))
	for _, name := range names {
		f := c.Files[name]
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		field(h, []byte(name))
		count(h, int(mode&0o7777))
		field(h, f.Data)
	}
	for _, m := range []map[string]string{args, labels} {
		keys := slices.Sorted(maps.Keys(m))
		count(h, len(keys))
		for _, k := range keys {
			field(h, []byte(k))
			field(h, []byte(m[k]))
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Tag is the short form of a hash used in image tags: its first 12 hex digits.
func Tag(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// FileHash is the hex SHA-256 of r's bytes.
func FileHash(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func field(h hash.Hash, b []byte) {
	count(h, len(b))
	h.Write(b)
}

func count(h hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}
