package detect

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Encodings a hit can name.
const (
	Raw       = "raw"
	URL       = "url"       // url.QueryEscape or url.PathEscape, hex in either case
	Percent   = "percent"   // every byte %XX, hex in either case
	Base64    = "base64"    // standard alphabet, any alignment, padded or not
	Base64URL = "base64url" // URL alphabet, any alignment, padded or not
	Base32    = "base32"    // standard alphabet, upper or lower case, any alignment, padded or not
	Hex       = "hex"       // lower or upper case
	JSON      = "json"      // JSON string escaping that changes the value
	UTF16     = "utf-16"    // UTF-16 little- or big-endian (Windows tools, PowerShell); base64 of little-endian (PowerShell's -EncodedCommand)
)

// form is one byte string that stands for a secret in some encoding.
type form struct {
	enc string
	b   []byte
}

// forms lists the byte strings that reveal v, in the order their encodings
// are preferred when two give the same bytes. Forms shorter than MinLen are
// left out: a short pattern matches ordinary text by chance, and it would
// shrink the stride of the sampling filter for every pattern.
func forms(v string) []form {
	var out []form
	add := func(enc string, s string) {
		if len(s) < MinLen {
			return
		}
		for _, f := range out {
			if string(f.b) == s {
				return
			}
		}
		out = append(out, form{enc, []byte(s)})
	}
	add(Raw, v)
	for _, s := range []string{url.QueryEscape(v), url.PathEscape(v)} {
		add(URL, s)
		add(URL, lowerPercent(s))
	}
	add(Percent, percentAll(v, "0123456789ABCDEF"))
	add(Percent, percentAll(v, "0123456789abcdef"))
	for _, enc := range []struct {
		name string
		e    *base64.Encoding
	}{{Base64, base64.RawStdEncoding}, {Base64URL, base64.RawURLEncoding}} {
		for align := range 3 {
			add(enc.name, base64Middle(enc.e, v, align))
		}
	}
	add(Hex, hex.EncodeToString([]byte(v)))
	add(Hex, strings.ToUpper(hex.EncodeToString([]byte(v))))
	for align := range 5 {
		s := base32Middle(v, align)
		add(Base32, s)
		add(Base32, strings.ToLower(s)) // DNS labels, and what a case-folding server sees
	}
	for _, s := range jsonForms(v) {
		add(JSON, s)
	}
	// UTF-16 is the text of Windows tools (PowerShell's files and
	// -EncodedCommand, .NET's Encoding.Unicode): a file written so carries
	// the secret whole to whoever reads it back.
	le, be := utf16Of(v)
	add(UTF16, le)
	add(UTF16, be)
	for align := range 3 {
		add(UTF16, base64Middle(base64.RawStdEncoding, le, align))
	}
	return out
}

// base64Middle returns the characters of the base64 encoding of v that
// depend on v's bytes alone when v starts align bytes into a 3-byte group:
// the characters at either end also carry bits of the neighbouring bytes,
// which can be anything, so they are not part of the pattern. Padding never
// falls in the middle, so this matches padded and unpadded text alike.
func base64Middle(e *base64.Encoding, v string, align int) string {
	buf := make([]byte, align+len(v))
	copy(buf[align:], v)
	s := e.EncodeToString(buf)
	// Character i holds bits [6i, 6i+6) of the input; v holds bits
	// [8*align, 8*(align+len(v))).
	start := (8*align + 5) / 6
	end := 8 * (align + len(v)) / 6
	if end <= start {
		return ""
	}
	return s[start:end]
}

// base32Middle is base64Middle for base32: v starts align bytes into a
// 5-byte group, and character i holds bits [5i, 5i+5).
func base32Middle(v string, align int) string {
	buf := make([]byte, align+len(v))
	copy(buf[align:], v)
	s := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(buf)
	start := (8*align + 4) / 5
	end := 8 * (align + len(v)) / 5
	if end <= start {
		return ""
	}
	return s[start:end]
}

// utf16Of returns v in UTF-16, little- and big-endian, without a byte
// order mark.
func utf16Of(v string) (le, be string) {
	var l, b []byte
	for _, c := range utf16.Encode([]rune(v)) {
		l = binary.LittleEndian.AppendUint16(l, c)
		b = binary.BigEndian.AppendUint16(b, c)
	}
	return string(l), string(b)
}

func lowerPercent(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1] = lowerHex(b[i+1])
			b[i+2] = lowerHex(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func lowerHex(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

func percentAll(v string, digits string) string {
	b := make([]byte, 0, 3*len(v))
	for i := 0; i < len(v); i++ {
		b = append(b, '%', digits[v[i]>>4], digits[v[i]&15])
	}
	return string(b)
}

// jsonForms returns the ways common JSON encoders write v inside a string:
// Go's (with and without HTML escaping), with "/" escaped as "\/" (PHP,
// some Java), and ASCII-only with \uXXXX for every non-ASCII rune (Python's
// default).
func jsonForms(v string) []string {
	plain := jsonString(v, false)
	forms := []string{plain, jsonString(v, true), strings.ReplaceAll(plain, "/", `\/`)}
	var ascii strings.Builder
	for _, r := range plain {
		if r < utf8.RuneSelf {
			ascii.WriteRune(r)
			continue
		}
		r1, r2 := r, rune(-1)
		if r > 0xFFFF {
			r -= 0x10000
			r1, r2 = 0xD800+(r>>10)&0x3FF, 0xDC00+r&0x3FF
		}
		ascii.WriteString(`\u` + hex4(r1))
		if r2 >= 0 {
			ascii.WriteString(`\u` + hex4(r2))
		}
	}
	return append(forms, ascii.String())
}

func jsonString(v string, escapeHTML bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	_ = enc.Encode(v) // a string always encodes
	s := strings.TrimSuffix(buf.String(), "\n")
	return s[1 : len(s)-1]
}

func hex4(r rune) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[r>>12&15], digits[r>>8&15], digits[r>>4&15], digits[r&15]})
}
