package docker

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/bb-bottles/bb/lib/state"
)

// imageFacts are what provisioning reads from an agent image's files: its
// users, its system CA bundle, whether it has a shell. Reading them takes
// a copy out of a created container each, a round trip to the engine, at
// every launch; an image's files never change (its ID is their hash), so
// they are kept by image ID in bb's state folder after the first launch,
// and a warm launch asks the engine only to copy files in.
type imageFacts struct {
	Users    map[string]userFacts `json:"users,omitempty"`
	CABundle []byte               `json:"ca_bundle,omitempty"`
	HasCA    bool                 `json:"has_ca,omitempty"`
	Shell    *bool                `json:"shell,omitempty"` // /bin/sh runs the wait for the sidecar (waitCommand)
}

type userFacts struct {
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Home string `json:"home"`
}

// factsDir is where imageFacts are kept, one file per image ID; its
// leading dot keeps it from being taken for a bottle.
const factsDir = ".cache/docker-images"

func factsPath(st *state.Store, imageID string) string {
	id := strings.TrimPrefix(imageID, "sha256:")
	if id == "" || strings.ContainsAny(id, `/\.`) {
		return ""
	}
	return filepath.Join(st.Dir, factsDir, id+".json")
}

// readFacts returns what is known of imageID (empty when nothing).
func readFacts(st *state.Store, imageID string) imageFacts {
	var f imageFacts
	if p := factsPath(st, imageID); p != "" {
		if b, err := os.ReadFile(p); err == nil {
			json.Unmarshal(b, &f) //nolint:errcheck // unreadable facts are read again from the image
		}
	}
	return f
}

// writeFacts keeps f for imageID; a failure only costs the next launch a
// round trip.
func writeFacts(st *state.Store, imageID string, f imageFacts) {
	p := factsPath(st, imageID)
	if p == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return
	}
	if b, err := json.Marshal(f); err == nil {
		state.WriteFileAtomic(p, b, 0o600) //nolint:errcheck
	}
}
