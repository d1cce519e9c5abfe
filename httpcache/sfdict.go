package httpcache

import "strconv"

// sfKind is the type of a Structured Field bare item (RFC 8941 3.3).
type sfKind uint8

const (
	sfInteger sfKind = iota + 1
	sfDecimal
	sfString
	sfToken
	sfBytes
	sfBoolean
	sfInnerList
)

// sfItem is a dictionary member's value; its parameters are dropped.
type sfItem struct {
	kind sfKind
	i    int64  // sfInteger
	s    string // sfString, sfToken (decoded); sfDecimal, sfBytes (as written)
	b    bool   // sfBoolean
}

type sfMember struct {
	key  string
	item sfItem
}

// parseSFDictionary parses a Dictionary Structured Field (RFC 8941 4.2.2)
// from the field's lines, strictly: any syntax error fails the whole field.
// A key given twice keeps its last value, in the place of its first.
func parseSFDictionary(lines []string) ([]sfMember, bool) {
	p := sfParser{}
	for i, l := range lines {
		if i > 0 {
			p.s += ","
		}
		p.s += l
	}
	p.trimSP()
	var out []sfMember
	for p.i < len(p.s) {
		key, ok := p.key()
		if !ok {
			return nil, false
		}
		it := sfItem{kind: sfBoolean, b: true}
		if p.peek() == '=' {
			p.i++
			if p.peek() == '(' {
				if ok = p.innerList(); !ok {
					return nil, false
				}
				it = sfItem{kind: sfInnerList}
			} else if it, ok = p.bareItem(); !ok {
				return nil, false
			}
		}
		if !p.params() {
			return nil, false
		}
		replaced := false
		for j := range out {
			if out[j].key == key {
				out[j].item, replaced = it, true
			}
		}
		if !replaced {
			out = append(out, sfMember{key, it})
		}
		p.ows()
		if p.i == len(p.s) {
			break
		}
		if p.s[p.i] != ',' {
			return nil, false
		}
		p.i++
		p.ows()
		if p.i == len(p.s) {
			return nil, false // a trailing comma
		}
	}
	return out, true
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// trimSP drops the leading and trailing spaces of the field (RFC 8941 4.2).
func (p *sfParser) trimSP() {
	for len(p.s) > 0 && p.s[len(p.s)-1] == ' ' {
		p.s = p.s[:len(p.s)-1]
	}
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) ows() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *sfParser) sp() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

// key parses ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ).
func (p *sfParser) key() (string, bool) {
	start := p.i
	if c := p.peek(); !(c >= 'a' && c <= 'z' || c == '*') {
		return "", false
	}
	for p.i < len(p.s) {
		c := p.s[p.i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*') {
			break
		}
		p.i++
	}
	return p.s[start:p.i], true
}

// params parses and drops parameters (RFC 8941 4.2.3.2).
func (p *sfParser) params() bool {
	for p.peek() == ';' {
		p.i++
		p.sp()
		if _, ok := p.key(); !ok {
			return false
		}
		if p.peek() == '=' {
			p.i++
			if _, ok := p.bareItem(); !ok {
				return false
			}
		}
	}
	return true
}

// innerList parses and drops an inner list (RFC 8941 4.2.1.2).
func (p *sfParser) innerList() bool {
	p.i++ // (
	for p.i < len(p.s) {
		p.sp()
		if p.peek() == ')' {
			p.i++
			return true
		}
		if _, ok := p.bareItem(); !ok || !p.params() {
			return false
		}
		if c := p.peek(); c != ' ' && c != ')' {
			return false
		}
	}
	return false
}

// bareItem parses an Integer, Decimal, String, Token, Byte Sequence or
// Boolean (RFC 8941 4.2.3.1).
func (p *sfParser) bareItem() (sfItem, bool) {
	c := p.peek()
	switch {
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == '"':
		return p.str()
	case c == '*' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		start := p.i
		p.i++
		for p.i < len(p.s) && (isTchar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
			p.i++
		}
		return sfItem{kind: sfToken, s: p.s[start:p.i]}, true
	case c == ':':
		start := p.i
		p.i++
		for p.i < len(p.s) && p.s[p.i] != ':' {
			c := p.s[p.i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
				return sfItem{}, false
			}
			p.i++
		}
		if p.i == len(p.s) {
			return sfItem{}, false
		}
		p.i++
		return sfItem{kind: sfBytes, s: p.s[start:p.i]}, true
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			p.i += 2
			return sfItem{kind: sfBoolean, b: p.s[p.i-1] == '1'}, true
		}
	}
	return sfItem{}, false
}

// number parses an Integer (at most 15 digits) or a Decimal (at most 12
// integer and 3 fractional digits) (RFC 8941 4.2.4).
func (p *sfParser) number() (sfItem, bool) {
	start := p.i
	if p.peek() == '-' {
		p.i++
	}
	digitsStart, dot := p.i, -1
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '.' && dot < 0 {
			dot = p.i
		} else if c < '0' || c > '9' {
			break
		}
		p.i++
	}
	text := p.s[start:p.i]
	if dot < 0 {
		n := p.i - digitsStart
		if n == 0 || n > 15 {
			return sfItem{}, false
		}
		v, err := strconv.ParseInt(text, 10, 64)
		return sfItem{kind: sfInteger, i: v}, err == nil
	}
	intDigits, fracDigits := dot-digitsStart, p.i-dot-1
	if intDigits == 0 || intDigits > 12 || fracDigits == 0 || fracDigits > 3 {
		return sfItem{}, false
	}
	return sfItem{kind: sfDecimal, s: text}, true
}

// str parses a String: printable ASCII, with \" and \\ the only escapes
// (RFC 8941 4.2.5).
func (p *sfParser) str() (sfItem, bool) {
	p.i++ // "
	var out []byte
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.i == len(p.s) || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return sfItem{}, false
			}
			out = append(out, p.s[p.i])
			p.i++
		case c == '"':
			return sfItem{kind: sfString, s: string(out)}, true
		case c < 0x20 || c > 0x7e:
			return sfItem{}, false
		default:
			out = append(out, c)
		}
	}
	return sfItem{}, false
}
