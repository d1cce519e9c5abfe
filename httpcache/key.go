package httpcache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// keyVersion is part of every hashed key, so that a change in the encoding
// below can never make an old entry answer a new request.
const keyVersion = "httpcache/1"

// keyBuf accumulates the fields of a key. Each field is written as its
// length (uvarint) followed by its bytes, so that no two distinct field
// sequences have the same encoding: "ab"+"c" and "a"+"bc" differ.
type keyBuf struct{ b []byte }

func (k *keyBuf) add(s string) {
	k.b = binary.AppendUvarint(k.b, uint64(len(s)))
	k.b = append(k.b, s...)
}

// sum hashes the fields into a cache key: a short prefix and 64 hex digits,
// far below the core's key length limit whatever the URL's length, and never
// starting with '}'.
func (k *keyBuf) sum() string {
	h := sha256.Sum256(k.b)
	var out [2 + 2*sha256.Size]byte
	out[0], out[1] = 'h', ':'
	hex.Encode(out[2:], h[:])
	return string(out[:])
}

// primaryKey is the key of a request's stored response (or of its Vary
// record): method, scheme, host, path and normalized query. GET and HEAD
// share it: a HEAD is answered from the GET's entry, and its misses are
// filled by running the handler as a GET.
func primaryKey(r *http.Request) string {
	var scheme string
	if r.TLS != nil {
		scheme = "https"
	} else {
		scheme = "http"
	}
	return primaryKeyOf(scheme, r.Host, r.URL)
}

func primaryKeyOf(scheme, host string, u *url.URL) string {
	var k keyBuf
	k.b = make([]byte, 0, 64+len(host)+len(u.Path)+len(u.RawQuery))
	k.add(keyVersion)
	k.add(http.MethodGet)
	k.add(scheme)
	k.add(strings.ToLower(host))
	k.add(u.EscapedPath())
	q, ok := normalizeQuery(u.RawQuery)
	if ok {
		k.add("q")
	} else {
		k.add("raw") // unparsable: keyed on its exact bytes
	}
	k.add(q)
	return k.sum()
}

// normalizeQuery sorts the parameters by name, keeping the order of the
// values of one name (handlers may depend on it), and re-encodes names and
// values canonically, so that "b=2&a=1" and "a=%31&b=2" share an entry. ok
// is false when raw does not parse; raw is then returned as it is.
func normalizeQuery(raw string) (string, bool) {
	if raw == "" || canonicalQuery(raw) {
		return raw, true
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return raw, false
	}
	// url.Values.Encode sorts by name and keeps the values' order.
	return vals.Encode(), true
}

// variantKey is the key of one variant of a response that carries Vary: the
// primary key, the Vary record's generation, and each varying request
// field's name and values.
func variantKey(primary, gen string, names []string, r *http.Request) string {
	var k keyBuf
	k.add(keyVersion)
	k.add(primary)
	k.add(gen)
	for _, name := range names {
		k.add(name)
		vs := r.Header.Values(name)
		k.b = binary.AppendUvarint(k.b, uint64(len(vs)))
		for _, v := range vs {
			k.add(normalizeFieldValue(v))
		}
	}
	return k.sum()
}

// normalizeFieldValue trims the whitespace around a field value and its
// list members, so "gzip,br" and "gzip, br" select the same variant.
func normalizeFieldValue(v string) string {
	if !strings.Contains(v, ",") {
		return strings.TrimSpace(v)
	}
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return strings.Join(parts, ",")
}

// varyNames returns the canonical field names listed in a response's Vary
// fields, sorted and without duplicates, and whether one of them is "*".
func varyNames(h http.Header) (names []string, star bool) {
	for _, line := range h.Values("Vary") {
		for f := range strings.SplitSeq(line, ",") {
			f = strings.TrimSpace(f)
			switch f {
			case "":
				continue
			case "*":
				star = true
				continue
			}
			names = append(names, http.CanonicalHeaderKey(f))
		}
	}
	slices.Sort(names)
	return slices.Compact(names), star
}

// canonicalQuery reports whether raw is already what normalizeQuery would
// make of it: name=value pairs of characters that need no escaping, names in
// non-decreasing order. It spares the hit path a parse and a re-encode.
func canonicalQuery(raw string) bool {
	prev := ""
	for pair := range strings.SplitSeq(raw, "&") {
		name, value, ok := strings.Cut(pair, "=")
		if !ok || name == "" || name < prev || !plainQueryChars(name) || !plainQueryChars(value) {
			return false
		}
		prev = name
	}
	return true
}

// plainQueryChars reports whether url.QueryEscape leaves s as it is.
func plainQueryChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~') {
			return false
		}
	}
	return true
}
