// Package freeze holds bottle snapshots: the Freezer each backend implements
// (Docker commits a paused container; Apple's container exports a stopped
// one and rebuilds an image from it; smolvm packs a stopped VM), and the
// backend-neutral steps around it — naming snapshots bb/<slug>:<UTC time>,
// moving bb/<slug>:latest, recording them in the bottle's metadata under its
// lock, pruning old ones, and undoing all of it when a step fails, so a
// failed commit never costs the previous snapshot.
package freeze

import (
	"context"
	"errors"
	"time"
)

// Freezer snapshots the bottles of one backend. Commit makes exactly one
// new reference and touches nothing else; Tag, Remove and Exists work on
// references Commit made. Everything else (names, latest, metadata) is
// done by this package's functions, the same for every backend.
type Freezer interface {
	// Backend is the name metadata records (docker, macos-container,
	// smolvm).
	Backend() string
	// NeedsStop reports whether Commit stops the bottle (and starts it
	// again): then a person must agree first.
	NeedsStop() bool
	// Running lists the slugs of the backend's running bottles.
	Running(ctx context.Context) ([]string, error)
	// Commit snapshots t.Container as t.Ref and returns the snapshot's
	// content ID. On error t.Ref must not be left behind, as far as the
	// backend allows (an interrupted engine may still finish; Commit's
	// caller removes t.Ref then).
	Commit(ctx context.Context, t Target) (id string, err error)
	// Tag points ref dst at the snapshot src (a reference or an ID),
	// replacing what dst named.
	Tag(ctx context.Context, src, dst string) error
	// Remove removes ref. A ref that does not exist is not an error.
	Remove(ctx context.Context, ref string) error
	// Exists reports whether ref names a snapshot the backend still has.
	Exists(ctx context.Context, ref string) (bool, error)
}

// Target is what to snapshot and what to call it.
type Target struct {
	Slug string
	// Container is the backend's name of the bottle's agent container or
	// VM: bot-bottle-<slug>.
	Container string
	// Ref is the new snapshot's reference, bb/<slug>:<UTC time>.
	Ref string
	// Labels go on the snapshot besides bb.slug and bb.role=snapshot (tests
	// add bb.test=1). Backends without labels ignore them.
	Labels map[string]string
}

// Repo returns the image repository of a bottle's snapshots.
func Repo(slug string) string { return "bb/" + slug }

// LatestRef returns the reference that follows a bottle's newest snapshot.
func LatestRef(slug string) string { return Repo(slug) + ":latest" }

// TagFormat is a snapshot tag: the commit's UTC time to the second. Tags sort
// as times do.
const TagFormat = "20060102T150405Z"

// ErrNotFound is wrapped by errors about a snapshot the metadata does not
// list.
var ErrNotFound = errors.New("no such snapshot")

// timeTag returns the tag of a snapshot committed at t.
func timeTag(t time.Time) string { return t.UTC().Format(TagFormat) }
