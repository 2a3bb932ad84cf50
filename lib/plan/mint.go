package plan

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"io"
	"regexp"
	"strings"

	"github.com/bb-bottles/bb/lib/canary"
)

var (
	slugRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hexRE  = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
)

// ValidSlug reports whether s can be a slug: a lower-case DNS label, since
// it names containers, networks, a VM, a hostname and a state folder.
func ValidSlug(s string) bool { return slugRE.MatchString(s) }

// ValidCanary reports whether s is canary-shaped: 43 base64url characters,
// the canonical encoding of 32 bytes (canary.Valid).
func ValidCanary(s string) bool { return canary.Valid(s) }

// MintCanary returns a new canary (canary.New), or, for reproducible tests,
// the canary made of the first 32 bytes of r.
func MintCanary(r io.Reader) (string, error) {
	if r == nil {
		return canary.New()
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("minting a canary: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

var slugSuffix = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// MintSlug returns a new slug for agent: the agent's name made a DNS label
// (lower case, runs of other characters become one '-', cut so the slug
// stays within 63 characters) and '-' and 4 random base32 characters from
// r (crypto/rand when nil). 20 random bits keep two bottles of one agent
// apart; bb-launch still refuses a slug already in use.
func MintSlug(agent string, r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, 3)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("minting a slug: %w", err)
	}
	return SlugBase(agent) + "-" + slugSuffix.EncodeToString(b)[:4], nil
}

// maxSlugBase leaves room for "-" and the 4 random characters in 63.
const maxSlugBase = 63 - 5

// SlugBase is the agent-name part of a minted slug; "agent" when nothing of
// the name is left.
func SlugBase(agent string) string {
	var sb strings.Builder
	dash := false
	for _, c := range strings.ToLower(agent) {
		if ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') {
			sb.WriteRune(c)
			dash = false
		} else if !dash {
			sb.WriteByte('-')
			dash = true
		}
	}
	s := strings.Trim(sb.String(), "-")
	if len(s) > maxSlugBase {
		s = strings.TrimRight(s[:maxSlugBase], "-")
	}
	if s == "" {
		return "agent"
	}
	return s
}

// Placeholder returns the stand-in the agent of bottle slug holds for the
// token name: token-shaped (clients that check a key's look accept it),
// derived from slug and name so a plan is reproducible, and different per
// bottle so one bottle's placeholder means nothing in another. It is no
// secret: the sidecar swaps it for the real token on its route only and
// blocks it anywhere else.
func Placeholder(slug, name string) string {
	sum := sha256.Sum256([]byte("bb-placeholder\x00" + slug + "\x00" + name))
	return "bb-placeholder-" + name + "-" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// Palette is the named colours a bottle can have.
var Palette = []string{"red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"}

// NormalizeColor returns c as a plan holds it — a Palette name, or "#rrggbb"
// in lower case — and whether it is a colour at all.
func NormalizeColor(c string) (string, bool) {
	if hexRE.MatchString(c) {
		return strings.ToLower(c), true
	}
	for _, p := range Palette {
		if c == p {
			return c, true
		}
	}
	return "", false
}

// paletteRGB is each Palette colour as #rrggbb: mid-tones that read on both
// dark and light terminals.
var paletteRGB = map[string]string{
	"red": "#e5484d", "orange": "#f76b15", "yellow": "#ffc53d", "green": "#30a46c",
	"cyan": "#00a2c7", "blue": "#0090ff", "purple": "#8e4ec6", "pink": "#d6409f",
}

// RGB returns a plan's colour (a Palette name or #rrggbb) as #rrggbb, and
// "" for anything else.
func RGB(color string) string {
	if c, ok := paletteRGB[color]; ok {
		return c
	}
	if hexRE.MatchString(color) {
		return strings.ToLower(color)
	}
	return ""
}

// ColorFor picks a Palette colour from slug, the same every time.
func ColorFor(slug string) string {
	h := fnv.New32a()
	h.Write([]byte(slug))
	return Palette[h.Sum32()%uint32(len(Palette))]
}
