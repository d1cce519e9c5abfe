package httpcache

import (
	"slices"
	"strings"
	"time"
)

// parseHTTPDate parses an HTTP-date (RFC 9110 5.6.7) strictly: one of
//
//	IMF-fixdate    Sun, 06 Nov 1994 08:49:37 GMT
//	rfc850-date    Sunday, 06-Nov-94 08:49:37 GMT
//	asctime-date   Sun Nov  6 08:49:37 1994
//
// with the exact spacing, digit counts and letter case of the grammar
// (HTTP-date is case-sensitive), a real calendar date, and the day name of
// that date. Anything else is not an HTTP-date: net/http.ParseTime accepts
// more (for instance a wrong-case "gmt"), which a cache must not, since an
// invalid Expires means "already expired" (RFC 9111 5.3). A two-digit
// rfc850 year more than 50 years after now is taken as the most recent
// year in the past with the same last two digits (RFC 9110 5.6.7).
// A leap second (second 60) is accepted and read as the next second.
func parseHTTPDate(s string, now time.Time) (time.Time, bool) {
	switch {
	case len(s) == len("Sun, 06 Nov 1994 08:49:37 GMT") && s[3] == ',':
		return parseIMFFixdate(s)
	case len(s) == len("Sun Nov  6 08:49:37 1994") && s[3] == ' ':
		return parseAsctime(s)
	}
	return parseRFC850(s, now)
}

var (
	shortDays = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	longDays  = [7]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	months    = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// parseIMFFixdate parses "Sun, 06 Nov 1994 08:49:37 GMT".
func parseIMFFixdate(s string) (time.Time, bool) {
	wd, ok := index(shortDays[:], s[:3])
	if !ok || s[3:5] != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[25:] != " GMT" {
		return time.Time{}, false
	}
	day, ok1 := digits(s[5:7])
	mon, ok2 := index(months[:], s[8:11])
	year, ok3 := digits(s[12:16])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	return build(year, mon, day, s[17:25], wd)
}

// parseRFC850 parses "Sunday, 06-Nov-94 08:49:37 GMT".
func parseRFC850(s string, now time.Time) (time.Time, bool) {
	name, rest, ok := strings.Cut(s, ",")
	if !ok {
		return time.Time{}, false
	}
	wd, ok := index(longDays[:], name)
	// rest: " 06-Nov-94 08:49:37 GMT"
	if !ok || len(rest) != len(" 06-Nov-94 08:49:37 GMT") || rest[0] != ' ' || rest[3] != '-' ||
		rest[7] != '-' || rest[10] != ' ' || rest[19:] != " GMT" {
		return time.Time{}, false
	}
	day, ok1 := digits(rest[1:3])
	mon, ok2 := index(months[:], rest[4:7])
	yy, ok3 := digits(rest[8:10])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	year := now.UTC().Year()/100*100 + yy
	if year > now.UTC().Year()+50 {
		year -= 100
	}
	return build(year, mon, day, rest[11:19], wd)
}

// parseAsctime parses "Sun Nov  6 08:49:37 1994" (a one-digit day is
// padded with a space, a two-digit one is not).
func parseAsctime(s string) (time.Time, bool) {
	wd, ok := index(shortDays[:], s[:3])
	if !ok || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	mon, ok1 := index(months[:], s[4:7])
	var day int
	var ok2 bool
	if s[8] == ' ' {
		day, ok2 = digits(s[9:10])
	} else {
		day, ok2 = digits(s[8:10])
		ok2 = ok2 && day >= 10
	}
	year, ok3 := digits(s[20:24])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	return build(year, mon, day, s[11:19], wd)
}

// build checks the time of day "hh:mm:ss", the calendar date and the day
// name, and returns the instant.
func build(year, mon, day int, hms string, weekday int) (time.Time, bool) {
	if hms[2] != ':' || hms[5] != ':' {
		return time.Time{}, false
	}
	hh, ok1 := digits(hms[0:2])
	mm, ok2 := digits(hms[3:5])
	ss, ok3 := digits(hms[6:8])
	if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 60 || day < 1 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(mon+1), day, hh, mm, 0, 0, time.UTC)
	if t.Day() != day || int(t.Weekday()) != weekday { // 31 Apr, or the wrong day name
		return time.Time{}, false
	}
	return t.Add(time.Duration(ss) * time.Second), true
}

// digits parses s, made of ASCII digits only.
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(s) > 0
}

// index is the position of s in names.
func index(names []string, s string) (int, bool) {
	i := slices.Index(names, s)
	return i, i >= 0
}
