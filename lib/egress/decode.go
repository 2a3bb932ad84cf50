package egress

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/detect"
)

// contentEncodings lists a request's content codings in the order they
// were applied; identity is dropped. A coding the sidecar cannot undo is
// an error: what cannot be scanned does not leave.
func contentEncodings(h http.Header) ([]string, error) {
	var out []string
	for _, v := range h.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			switch c = strings.ToLower(strings.TrimSpace(c)); c {
			case "", "identity":
			case "gzip", "x-gzip", "deflate":
				out = append(out, c)
			default:
				return nil, fmt.Errorf("the request body's content-encoding %q cannot be scanned", c)
			}
		}
	}
	if len(out) > 4 {
		return nil, fmt.Errorf("the request body has %d content-encodings; at most 4 are scanned", len(out))
	}
	return out, nil
}

// scanDecoded undoes the codings of a whole body and scans the result as
// it streams out of the decompressor, never holding more than the cap: a
// body that expands beyond MaxDecompressed is refused, one that does not
// decode is blocked.
func (s *Server) scanDecoded(det *detect.Detector, body []byte, encs []string) *bodyFail {
	var r io.Reader = bytes.NewReader(body)
	for i := len(encs) - 1; i >= 0; i-- {
		var err error
		switch encs[i] {
		case "gzip", "x-gzip":
			r, err = gzip.NewReader(r)
		case "deflate":
			r, err = newDeflateReader(r)
		}
		if err != nil {
			return &bodyFail{status: http.StatusForbidden, decision: audit.Block,
				reason: fmt.Sprintf("the request body does not decode as %s: %v", encs[i], err)}
		}
	}
	n, err := io.Copy(io.Discard, det.GuardFlat(io.LimitReader(r, s.cfg.MaxDecompressed+1)))
	if h, ok := detect.IsHit(err); ok {
		h.Encoding = strings.Join(encs, "+") + "/" + h.Encoding
		return &bodyFail{hit: &h}
	}
	if err != nil {
		return &bodyFail{status: http.StatusForbidden, decision: audit.Block,
			reason: fmt.Sprintf("the request body does not decode as %s: %v", strings.Join(encs, ","), err)}
	}
	if n > s.cfg.MaxDecompressed {
		return &bodyFail{status: http.StatusRequestEntityTooLarge, decision: audit.Block,
			reason: fmt.Sprintf("the request body decompresses to more than %d bytes", s.cfg.MaxDecompressed)}
	}
	return nil
}

// isGzip reports a gzip stream's magic at the start of b.
func isGzip(b []byte) bool { return len(b) >= 3 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 8 }

// sniffCompressed names the coding b starts like, "" if none: gzip's
// magic, or a zlib header (two bytes a text can start with too: a caller
// must take a failure to decode as "not compressed").
func sniffCompressed(b []byte) string {
	switch {
	case isGzip(b):
		return "gzip"
	case len(b) >= 2 && b[0]&0x0f == 8 && b[0]>>4 <= 7 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0:
		return "deflate"
	}
	return ""
}

// newDeflateReader reads "deflate" as RFC 9110 means it (zlib), or as raw
// DEFLATE, which some clients send under that name.
func newDeflateReader(r io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(io.LimitReader(r, 2))
	if err != nil {
		return nil, err
	}
	rest := io.MultiReader(bytes.NewReader(b), r)
	if len(b) == 2 && b[0]&0x0f == 8 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0 {
		return zlib.NewReader(rest)
	}
	return flate.NewReader(rest), nil
}
