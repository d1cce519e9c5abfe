package httpcache

// hopByHop are the fields a cache must not store or forward (RFC 9110
// 7.6.1), besides those listed in Connection.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// defaultStatuses are the status codes cacheable by default (RFC 9110
// 15.1), less 206: this cache does not combine partial content.
var defaultStatuses = []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}

// heuristicallyCacheable reports the statuses RFC 9110 15.1 defines as
// heuristically cacheable.
func heuristicallyCacheable(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// isServerError reports the statuses that count as an error for
// stale-if-error (RFC 5861 4).
func isServerError(status int) bool {
	switch status {
	case 500, 502, 503, 504:
		return true
	}
	return false
}
