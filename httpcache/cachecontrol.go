package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// directive is one cache directive as received.
type directive struct {
	arg    string // the argument, unquoted; "" when there is none
	hasArg bool
	// bad is set when the argument is malformed, or when the directive
	// was repeated with another argument: either way nothing can be read
	// from it but its presence.
	bad bool
}

// directives are parsed cache directives, keyed by lower-case name.
type directives map[string]directive

// parseCacheControl parses every Cache-Control line of h (RFC 9111 5.2).
func parseCacheControl(h http.Header) directives {
	lines := h["Cache-Control"]
	if len(lines) == 0 {
		return nil
	}
	d := make(directives, 4)
	for _, line := range lines {
		for len(line) > 0 {
			var item string
			item, line = nextItem(line)
			d.addItem(trimOWS(item))
		}
	}
	return d
}

// addItem parses one cache-directive: token [ "=" ( token / quoted-string ) ]
// (RFC 9111 5.2). Names are case-insensitive. An item whose name is not a
// token ("max-age =60") is no directive at all and is ignored; a directive
// whose argument is neither a token nor a quoted-string ("max-age= 60") is
// kept, marked bad.
func (d directives) addItem(item string) {
	name, arg, hasArg := strings.Cut(item, "=")
	if !isToken(name) {
		return
	}
	dir := directive{hasArg: hasArg}
	if hasArg {
		if isToken(arg) {
			dir.arg = arg
		} else if s, ok := unquote(arg); ok {
			dir.arg = s
		} else {
			dir.bad = true
		}
	}
	d.add(strings.ToLower(name), dir)
}

// add merges a repeated directive into the most restrictive reading (RFC
// 9111 4.2.1: a repeated directive is read as the first occurrence or as
// stale; of the two, this cache takes the stricter). private and no-cache
// without fields cover everything, and their field lists add up; any other
// directive repeated with a different argument is bad, which makes a
// max-age or s-maxage stale and turns the stale windows off.
func (d directives) add(name string, dir directive) {
	prev, dup := d[name]
	switch {
	case !dup:
	case name == "private" || name == "no-cache":
		switch {
		case !prev.hasArg || !dir.hasArg:
			dir = directive{}
		case prev.bad || dir.bad:
			dir = directive{hasArg: true, bad: true}
		default:
			dir = directive{hasArg: true, arg: prev.arg + "," + dir.arg}
		}
	case prev != dir:
		dir = directive{hasArg: prev.hasArg || dir.hasArg, arg: prev.arg, bad: true}
	}
	d[name] = dir
}

// nextItem splits off the first comma-separated item of s, honouring
// quoted strings.
func nextItem(s string) (item, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

func (d directives) has(name string) bool {
	_, ok := d[name]
	return ok
}

// unqualified reports a private or no-cache directive without a field
// list: the whole response is private, or must not be reused unvalidated.
func (d directives) unqualified(name string) bool {
	dir, ok := d[name]
	return ok && !dir.hasArg
}

// seconds returns a delta-seconds argument (RFC 9111 1.2.2). valid is false
// when the argument is missing, malformed or ambiguous; such a max-age or
// s-maxage makes the response stale (RFC 9111 4.2.1).
func (d directives) seconds(name string) (s time.Duration, present, valid bool) {
	dir, ok := d[name]
	if !ok {
		return 0, false, false
	}
	if dir.bad || dir.arg == "" {
		return 0, true, false
	}
	for _, c := range []byte(dir.arg) {
		if c < '0' || c > '9' {
			return 0, true, false
		}
	}
	n, err := strconv.ParseInt(dir.arg, 10, 64)
	if err != nil || n > maxDeltaSeconds {
		n = maxDeltaSeconds // RFC 9111 1.2.2: overflow means "a very long time"
	}
	return time.Duration(n) * time.Second, true, true
}

// maxDeltaSeconds caps delta-seconds at 2^31 (RFC 9111 1.2.2).
const maxDeltaSeconds = 1 << 31

// fieldList returns the field names of a qualified private="..." or
// no-cache="..." directive, canonicalized.
func (d directives) fieldList(name string) []string {
	dir := d[name]
	if !dir.hasArg || dir.bad {
		return nil
	}
	var out []string
	for f := range strings.SplitSeq(dir.arg, ",") {
		if f = trimOWS(f); f != "" {
			out = append(out, http.CanonicalHeaderKey(f))
		}
	}
	return out
}

// isToken reports whether s is a token (RFC 9110 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// unquote decodes a quoted-string (RFC 9110 5.6.4) that spans all of s.
func unquote(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
			if i == len(s)-1 || !isQuotedPairChar(s[i]) {
				return "", false
			}
			c = s[i]
		case c == '"', c < ' ' && c != '\t', c == 0x7f:
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

func isQuotedPairChar(c byte) bool { return c == '\t' || c >= ' ' && c != 0x7f }

// trimOWS removes optional whitespace (spaces and tabs) around s.
func trimOWS(s string) string { return strings.Trim(s, " \t") }
