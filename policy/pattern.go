// Package policy is Kavach's pure decision engine: resource patterns, permissions, constraints
// and their evaluation. It takes values and returns decisions; it performs no I/O, reads no clock
// and imports nothing else from the project, so it is trivially table-tested and fuzzed and runs
// identically natively and in WebAssembly.
package policy

import (
	"fmt"
	"strings"
)

// Limits on what callers may store and ask about. They bound the work one request can cause.
const (
	MaxResourceLen   = 512
	MaxSegments      = 64
	MaxActionLen     = 64
	MaxActions       = 32
	MaxPermissions   = 100
	MaxArgPatterns   = 16
	MaxArgPatternLen = 512
	MaxIPAllowlist   = 256
)

// Pattern is a compiled resource pattern: ':'-separated segments where
//   - a '*' that is the last segment matches one or more remaining segments
//     ("mcp:github:*" matches "mcp:github:repos" and "mcp:github:repos:issues", not "mcp:github");
//   - a '*' anywhere else matches exactly one segment
//     ("admin:*:delete" matches "admin:projects:delete", never "admin:projects:read");
//   - "*" alone matches every resource;
//   - every other segment matches itself exactly (case-sensitive; no partial globbing).
type Pattern struct {
	raw  string
	segs []string // segments before a trailing '*'; a middle '*' is kept as "*"
	tail bool     // the pattern ends in '*'
	lits int      // number of literal (non-'*') segments, for specificity
}

// ParsePattern validates and compiles a permission's resource pattern.
func ParsePattern(s string) (Pattern, error) {
	if err := checkResource(s, true); err != nil {
		return Pattern{}, err
	}
	segs := strings.Split(s, ":")
	p := Pattern{raw: s}
	if segs[len(segs)-1] == "*" {
		p.tail = true
		segs = segs[:len(segs)-1]
	}
	p.segs = segs
	for _, seg := range segs {
		if seg != "*" {
			p.lits++
		}
	}
	return p, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.raw }

// Match reports whether the concrete resource r is matched by p. It does not allocate.
func (p *Pattern) Match(r string) bool {
	i := 0 // start of the next segment of r; len(r)+1 once every segment is consumed
	for _, seg := range p.segs {
		if i > len(r) {
			return false
		}
		var s string
		if j := strings.IndexByte(r[i:], ':'); j < 0 {
			s, i = r[i:], len(r)+1
		} else {
			s, i = r[i:i+j], i+j+1
		}
		if seg != "*" && seg != s {
			return false
		}
	}
	if p.tail {
		return i <= len(r) // at least one segment left for the '*'
	}
	return i > len(r)
}

// ValidateResource checks that r is a concrete resource a request may name: non-empty segments,
// no '*' segment, no control characters, within the length limits.
func ValidateResource(r string) error { return checkResource(r, false) }

func checkResource(s string, pattern bool) error {
	what := "resource"
	if pattern {
		what = "resource pattern"
	}
	if s == "" {
		return fmt.Errorf("%s must not be empty", what)
	}
	if len(s) > MaxResourceLen {
		return fmt.Errorf("%s is %d bytes long; the limit is %d", what, len(s), MaxResourceLen)
	}
	n := 1
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != ':' {
			if c := s[i]; c < 0x20 || c == 0x7f {
				return fmt.Errorf("%s %q contains a control character", what, s)
			}
			continue
		}
		seg := s[start:i]
		switch {
		case seg == "":
			return fmt.Errorf("%s %q has an empty segment (segments are separated by ':')", what, s)
		case seg == "*" && !pattern:
			return fmt.Errorf("resource %q contains '*': a request names one concrete resource; wildcards belong in permission patterns", s)
		case seg != "*" && strings.Contains(seg, "*"):
			return fmt.Errorf("%s %q: '*' must be a whole segment (\"mcp:*\"), not part of one (%q)", what, s, seg)
		}
		if i < len(s) {
			n++
		}
		start = i + 1
	}
	if n > MaxSegments {
		return fmt.Errorf("%s has %d segments; the limit is %d", what, n, MaxSegments)
	}
	return nil
}

// ValidateAction checks an action a request names: 1 to 64 characters from letters, digits and
// _ - . : / (for example "read", "tools/call", "db:query"). "*" is not an action a request can
// name; permissions use it to grant every action.
func ValidateAction(a string) error {
	if a == "*" {
		return fmt.Errorf("action \"*\" is only meaningful in a permission; a request names one action")
	}
	return checkAction(a)
}

func checkAction(a string) error {
	if a == "" {
		return fmt.Errorf("action must not be empty")
	}
	if len(a) > MaxActionLen {
		return fmt.Errorf("action is %d bytes long; the limit is %d", len(a), MaxActionLen)
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':' || c == '/') {
			return fmt.Errorf("action %q contains %q; allowed are letters, digits and _ - . : /", a, c)
		}
	}
	return nil
}
