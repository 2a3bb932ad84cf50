// Package audit holds the sidecar's audit trail: one JSON line per decision,
// each carrying the SHA-256 of the line before it, so an edited or truncated
// log is detected.
package audit

import "time"

// Decisions.
const (
	Allow = "allow"
	Deny  = "deny"  // no route allows it
	Block = "block" // a route allows it, but it carries a known secret
)

// Entry is one line of the audit log. Secret is a secret's NAME, never its
// value; Canary is true when that secret is the canary. Query is the
// request's raw query, when it has one. A Writer cuts every string field
// to MaxField bytes, so a line stays small whatever the agent sends.
type Entry struct {
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"`
	Method     string    `json:"method"`
	Host       string    `json:"host"`
	Path       string    `json:"path"`
	Query      string    `json:"query,omitempty"`
	Status     int       `json:"status"`
	Decision   string    `json:"decision"`
	Reason     string    `json:"reason"`
	Route      string    `json:"route,omitempty"`
	Secret     string    `json:"secret,omitempty"`
	Encoding   string    `json:"encoding,omitempty"`
	Canary     bool      `json:"canary"`
	BytesUp    int64     `json:"bytes_up"`
	BytesDown  int64     `json:"bytes_down"`
	DurationMS float64   `json:"duration_ms"`
	Client     string    `json:"client,omitempty"`
	// Git is set on a request the git gate judged.
	Git *Git `json:"git,omitempty"`
	// Thinned is set on a summary line: what one client's lines the
	// sidecar did not write one by one (see Thinned).
	Thinned *Thinned `json:"thinned,omitempty"`
	// Rotation is set on the last line of a file before the log rotates.
	Rotation *Rotation `json:"rotation,omitempty"`
	// Prev is the hex SHA-256 of the previous line's bytes (without its
	// newline); the first line of a log carries Genesis.
	Prev string `json:"prev"`
}

// Genesis is the Prev of a log's first line.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Git is what a request through the git gate was: the repository and the
// service and, for a push, each ref it updates (old and new object ids),
// how many refs it carried in all (Refs is cut to MaxGitRefs), the objects
// of its pack and the pack's bytes. Ref names are the agent's: a Writer
// cuts each to MaxField.
type Git struct {
	Repo      string   `json:"repo"`
	Service   string   `json:"service"`
	Refs      []GitRef `json:"refs,omitempty"`
	RefCount  int      `json:"ref_count,omitempty"`
	Objects   int64    `json:"objects,omitempty"`
	PackBytes int64    `json:"pack_bytes,omitempty"`
}

// GitRef is one ref a push updates.
type GitRef struct {
	Ref string `json:"ref"`
	Old string `json:"old"`
	New string `json:"new"`
}

// MaxGitRefs is the most refs of one push a line lists.
const MaxGitRefs = 64

// Thinned sums up the lines of one client (Entry.Client) that were not
// written one by one because the client ran past its share of the log:
// how many, of what, to how many distinct hosts, between First and Last.
// Hosts is exact up to MaxThinnedHosts, and then a lower bound
// (HostsCapped). Sample lists a few of the hosts, each cut short.
type Thinned struct {
	Lines       int       `json:"lines"`
	Bytes       int64     `json:"bytes"`
	Denials     int       `json:"denials"`
	Blocks      int       `json:"blocks"`
	Other       int       `json:"other"`
	Hosts       int       `json:"hosts"`
	HostsCapped bool      `json:"hosts_capped,omitempty"`
	Sample      []string  `json:"sample,omitempty"`
	First       time.Time `json:"first"`
	Last        time.Time `json:"last"`
}

// MaxThinnedHosts is how many distinct hosts a Thinned counts exactly.
const MaxThinnedHosts = 4096

// Rotation is the last line of a log file before the writer moves it
// aside (audit.jsonl → audit.1.jsonl, ...) and starts a new one; the next
// line, in the new file, chains to it. Dropped is the oldest file, deleted
// by this rotation: its first and last seq and its last line's hash, which
// is what lets Verify tell lines rotated away from lines cut.
type Rotation struct {
	File string `json:"file"`
	// FirstSeq, Blocks and Canary describe the file this line ends: its
	// first seq, and how many of its lines were blocks and carried the
	// canary (what is left of them once rotation deletes it).
	FirstSeq uint64   `json:"first_seq"`
	Blocks   int      `json:"blocks"`
	Canary   int      `json:"canary"`
	Dropped  *Dropped `json:"dropped,omitempty"`
	// CanaryRotatedAway counts the canary lines of every file rotation has
	// deleted so far, this one's Dropped included: proof that outlives them.
	CanaryRotatedAway int `json:"canary_rotated_away,omitempty"`
}

// Dropped describes a file rotation deleted. Blocks and Canary count its
// lines with decision block and with the canary found.
type Dropped struct {
	File     string `json:"file"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	LastHash string `json:"last_hash"`
	Blocks   int    `json:"blocks"`
	Canary   int    `json:"canary"`
}
