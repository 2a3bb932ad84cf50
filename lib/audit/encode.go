package audit

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// appendEntry appends e as encoding/json with SetEscapeHTML(false) writes
// it, byte for byte but for DEL and the C1 controls (see appendString),
// without reflection: it is on the sidecar's request
// path, where the reflective encoder was most of a Write. It reports false
// for what encoding/json refuses (a NaN or infinite duration, a time
// outside years 0-9999), so the caller can let encoding/json say why.
func appendEntry(b []byte, e *Entry) ([]byte, bool) {
	if math.IsNaN(e.DurationMS) || math.IsInf(e.DurationMS, 0) {
		return b, false
	}
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":"`...)
	b, err := e.Time.AppendText(b)
	if err != nil {
		return b, false
	}
	b = append(b, `","method":`...)
	b = appendString(b, e.Method)
	b = append(b, `,"host":`...)
	b = appendString(b, e.Host)
	b = append(b, `,"path":`...)
	b = appendString(b, e.Path)
	if e.Query != "" {
		b = append(b, `,"query":`...)
		b = appendString(b, e.Query)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"decision":`...)
	b = appendString(b, e.Decision)
	b = append(b, `,"reason":`...)
	b = appendString(b, e.Reason)
	if e.Route != "" {
		b = append(b, `,"route":`...)
		b = appendString(b, e.Route)
	}
	if e.Secret != "" {
		b = append(b, `,"secret":`...)
		b = appendString(b, e.Secret)
	}
	if e.Encoding != "" {
		b = append(b, `,"encoding":`...)
		b = appendString(b, e.Encoding)
	}
	b = append(b, `,"canary":`...)
	b = strconv.AppendBool(b, e.Canary)
	b = append(b, `,"bytes_up":`...)
	b = strconv.AppendInt(b, e.BytesUp, 10)
	b = append(b, `,"bytes_down":`...)
	b = strconv.AppendInt(b, e.BytesDown, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendFloat(b, e.DurationMS)
	if e.Client != "" {
		b = append(b, `,"client":`...)
		b = appendString(b, e.Client)
	}
	if g := e.Git; g != nil {
		b = appendGit(b, g)
	}
	if e.Thinned != nil || e.Rotation != nil {
		return b, false // rare lines: encoding/json writes them (marshalLine)
	}
	b = append(b, `,"prev":`...)
	b = appendString(b, e.Prev)
	return append(b, "}\n"...), true
}

func appendGit(b []byte, g *Git) []byte {
	b = append(b, `,"git":{"repo":`...)
	b = appendString(b, g.Repo)
	b = append(b, `,"service":`...)
	b = appendString(b, g.Service)
	if len(g.Refs) > 0 {
		b = append(b, `,"refs":[`...)
		for i, r := range g.Refs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"ref":`...)
			b = appendString(b, r.Ref)
			b = append(b, `,"old":`...)
			b = appendString(b, r.Old)
			b = append(b, `,"new":`...)
			b = appendString(b, r.New)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if g.RefCount != 0 {
		b = append(b, `,"ref_count":`...)
		b = strconv.AppendInt(b, int64(g.RefCount), 10)
	}
	if g.Objects != 0 {
		b = append(b, `,"objects":`...)
		b = strconv.AppendInt(b, g.Objects, 10)
	}
	if g.PackBytes != 0 {
		b = append(b, `,"pack_bytes":`...)
		b = strconv.AppendInt(b, g.PackBytes, 10)
	}
	return append(b, '}')
}

// appendFloat is encoding/json's float64 format: like %g as ES6 prints
// numbers, exponents unpadded.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	fmt := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmt = 'e'
	}
	b = strconv.AppendFloat(b, f, fmt, -1, 64)
	if fmt == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString is encoding/json's string format without HTML escaping:
// quotes, backslashes and control bytes escaped, invalid UTF-8 as \ufffd,
// U+2028 and U+2029 escaped. It also escapes DEL and the C1 controls
// (U+007F-U+009F), which encoding/json leaves raw: the agent's paths and
// hosts reach the log, `bb-egress log` prints lines as they are, and
// U+009B is CSI to a terminal that honours 8-bit controls.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r <= 0x9f { // C1: two bytes, C2 80-9F
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
