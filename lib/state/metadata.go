package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/bb-bottles/bb/lib/names"
)

// Metadata is a bottle's metadata.json: what bb ls shows and what resume
// and freeze need besides the plan. Scripts read this file; every field is
// always present.
type Metadata struct {
	// Slug names the bottle: a DNS label (see CheckSlug), equal to the
	// name of its folder, its container names and its hostname.
	Slug string `json:"slug"`
	// Agent is the agent's name in the manifest index (bb start AGENT).
	Agent string `json:"agent"`
	// Template is the agent's provider: claude, codex, shell or a plugin.
	Template string `json:"template"`
	// Label is the human-readable name shown in prompts, titles and bb ls.
	Label string `json:"label"`
	// Color is the colour a terminal shows the bottle in, as the plan has
	// it; "" for none.
	Color string `json:"color"`
	// Backend runs the bottle: docker, macos-container or smolvm (one
	// written as "container" reads as macos-container).
	Backend string `json:"backend"`
	// Created is when the bottle was first launched, RFC 3339 in UTC.
	Created time.Time `json:"created"`
	// Preserved keeps the bottle's container (and state) when it stops,
	// so it can be resumed; false means it is thrown away on exit.
	Preserved bool `json:"preserved"`
	// Images are the committed snapshots of the bottle (bb commit), oldest
	// first: resume boots the last one. Never null, [] when none.
	Images []Image `json:"images"`
}

// Image is one committed snapshot of a bottle.
type Image struct {
	// Ref is the image reference the backend knows it by (repo:tag).
	Ref string `json:"ref"`
	// ID is the backend's content ID of the image (sha256:...).
	ID string `json:"id"`
	// Created is when it was committed, RFC 3339 in UTC.
	Created time.Time `json:"created"`
}

// ReadMetadata reads a bottle's metadata. A bottle without metadata gives
// a *NotFoundError (errors.Is(err, fs.ErrNotExist)); other errors name the
// file.
func (s *Store) ReadMetadata(slug string) (Metadata, error) {
	if err := CheckSlug(slug); err != nil {
		return Metadata{}, fmt.Errorf("reading metadata: %w", err)
	}
	path := filepath.Join(s.Dir, slug, MetadataFile)
	var md Metadata
	if err := readJSON(path, &md); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Metadata{}, &NotFoundError{Slug: slug, Dir: s.Dir}
		}
		return Metadata{}, err
	}
	if md.Slug != slug {
		return Metadata{}, fmt.Errorf("reading %s: slug %q does not match its folder %q", path, md.Slug, slug)
	}
	if md.Images == nil {
		md.Images = []Image{}
	}
	md.Backend = names.Backend(md.Backend)
	return md, nil
}

// WriteMetadata writes a bottle's metadata atomically, creating its folder.
// md.Slug is set to slug when empty and must equal it otherwise. Times are
// stored in UTC. It does not lock: to change existing metadata use Update,
// and hold Lock while creating a bottle.
func (s *Store) WriteMetadata(slug string, md Metadata) error {
	if err := CheckSlug(slug); err != nil {
		return fmt.Errorf("writing metadata: %w", err)
	}
	if md.Slug == "" {
		md.Slug = slug
	}
	if md.Slug != slug {
		return fmt.Errorf("writing metadata of bottle %s: it names bottle %q", slug, md.Slug)
	}
	md.Created = md.Created.UTC()
	images := make([]Image, len(md.Images))
	for i, im := range md.Images {
		im.Created = im.Created.UTC()
		images[i] = im
	}
	md.Images = images
	data, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return fmt.Errorf("writing metadata of bottle %s: %w", slug, err)
	}
	return s.writeFile(slug, MetadataFile, append(data, '\n'))
}

// Update changes a bottle's metadata under its lock: it waits for the lock
// (until ctx is done), reads the metadata, calls fn and, if fn returns nil,
// writes the result atomically. fn's error is returned as is, and nothing
// is written. fn may not change the slug.
func (s *Store) Update(ctx context.Context, slug string, fn func(*Metadata) error) error {
	if err := CheckSlug(slug); err != nil {
		return fmt.Errorf("updating metadata: %w", err)
	}
	// Checked before locking, so that updating a missing bottle does not
	// leave an empty folder behind for its lock file.
	if !s.Exists(slug) {
		return &NotFoundError{Slug: slug, Dir: s.Dir}
	}
	unlock, err := s.Lock(ctx, slug)
	if err != nil {
		return err
	}
	defer unlock()
	md, err := s.ReadMetadata(slug)
	if err != nil {
		return err
	}
	if err := fn(&md); err != nil {
		return err
	}
	if md.Slug != slug {
		return fmt.Errorf("updating metadata of bottle %s: the slug cannot change (to %q)", slug, md.Slug)
	}
	if err := s.WriteMetadata(slug, md); err != nil {
		return err
	}
	return unlock()
}

// WritePlan stores a bottle's plan (bb-plan's output, as is) atomically,
// creating its folder. The plan holds the canary, so the file is 0600.
func (s *Store) WritePlan(slug string, plan []byte) error {
	if err := CheckSlug(slug); err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	if !json.Valid(plan) {
		return fmt.Errorf("writing plan of bottle %s: not valid JSON", slug)
	}
	return s.writeFile(slug, PlanFile, plan)
}

// ReadPlan returns a bottle's stored plan. A missing bottle gives a
// *NotFoundError; either way a missing plan matches fs.ErrNotExist.
func (s *Store) ReadPlan(slug string) ([]byte, error) {
	if err := CheckSlug(slug); err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	path := filepath.Join(s.Dir, slug, PlanFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !s.Exists(slug) {
		return nil, &NotFoundError{Slug: slug, Dir: s.Dir}
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, unwrapPath(err))
	}
	if !json.Valid(bytes.TrimSpace(data)) {
		return nil, fmt.Errorf("reading %s: not valid JSON", path)
	}
	return data, nil
}

// writeFile writes one file of a bottle's folder atomically, 0600.
func (s *Store) writeFile(slug, name string, data []byte) error {
	dir := s.BottleDir(slug)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the folder of bottle %s: %w", slug, err)
	}
	return WriteFileAtomic(filepath.Join(dir, name), data, 0o600)
}
