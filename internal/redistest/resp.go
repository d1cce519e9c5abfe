package redistest

import (
	"bytes"
	"errors"
	"strconv"
)

// errBadFrame: the bytes are not RESP2 or RESP3.
var errBadFrame = errors.New("redistest: malformed RESP frame")

// frameLen returns the length of the first complete RESP2 or RESP3 frame in
// b, or 0 when b holds only the start of one.
func frameLen(b []byte) (int, error) {
	n, err := frameAt(b, 0)
	if errors.Is(err, errShort) {
		return 0, nil
	}
	return n, err
}

var errShort = errors.New("short")

// frameAt returns the offset just past the frame starting at b[i].
func frameAt(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errShort
	}
	end := bytes.Index(b[i:], []byte("\r\n"))
	if end < 0 {
		return 0, errShort
	}
	line := b[i+1 : i+end]
	next := i + end + 2
	switch b[i] {
	case '+', '-', ':', '_', ',', '#', '(':
		return next, nil
	case '$', '!', '=':
		n, err := strconv.Atoi(string(line))
		if err != nil {
			return 0, errBadFrame
		}
		if n < 0 {
			return next, nil
		}
		if next+n+2 > len(b) {
			return 0, errShort
		}
		return next + n + 2, nil
	case '*', '>', '~', '%', '|':
		n, err := strconv.Atoi(string(line))
		if err != nil {
			return 0, errBadFrame
		}
		if b[i] == '%' || b[i] == '|' {
			n *= 2
		}
		for range max(n, 0) {
			if next, err = frameAt(b, next); err != nil {
				return 0, err
			}
		}
		return next, nil
	}
	return 0, errBadFrame
}

// isPubSubMessage says whether a complete frame is a published message
// delivered to a subscriber ("message", "pmessage" or "smessage"), as
// opposed to a reply or a subscription confirmation.
func isPubSubMessage(frame []byte) bool {
	if len(frame) == 0 || (frame[0] != '*' && frame[0] != '>') {
		return false
	}
	first := bytes.Index(frame, []byte("\r\n"))
	if first < 0 {
		return false
	}
	rest := frame[first+2:]
	for _, kind := range []string{"message", "pmessage", "smessage"} {
		head := "$" + strconv.Itoa(len(kind)) + "\r\n" + kind + "\r\n"
		if bytes.HasPrefix(rest, []byte(head)) {
			return true
		}
	}
	return false
}
