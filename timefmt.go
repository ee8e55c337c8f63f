package kavach

import "time"

// Times in JSON use the form JavaScript's Date.toJSON produces, which the reference's clients
// parse: UTC with exactly three fractional digits.
const jsonTime = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string { return t.UTC().Format(jsonTime) }

func unix(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

// ParseTime accepts the forms API clients send: RFC 3339 with or without fractional seconds, a
// date (midnight UTC), or an integer count of milliseconds since the epoch (JavaScript's
// Date.getTime).
func ParseTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, true
	}
	neg := false
	digits := s
	if len(digits) > 0 && digits[0] == '-' {
		neg, digits = true, digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 {
		return time.Time{}, false
	}
	var ms int64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
		ms = ms*10 + int64(c-'0')
	}
	if neg {
		ms = -ms
	}
	return time.UnixMilli(ms).UTC(), true
}
