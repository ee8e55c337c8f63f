package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Permission grants actions on the resources a pattern matches, optionally under constraints.
type Permission struct {
	Resource    string       `json:"resource"`
	Actions     []string     `json:"actions"`
	Constraints *Constraints `json:"constraints,omitempty"`
}

// Constraints restrict when a permission applies. A request is allowed by a permission only if
// every constraint set on it passes.
type Constraints struct {
	// MaxCallsPerHour caps the calls this permission allows per agent over a rolling hour
	// (5-minute buckets). 0 means no cap.
	MaxCallsPerHour int `json:"maxCallsPerHour,omitempty"`
	// AllowedArgPatterns are RE2 regular expressions (unanchored). Every pattern must match every
	// top-level string argument of the request.
	AllowedArgPatterns []string `json:"allowedArgPatterns,omitempty"`
	// RequireApproval denies the request until a human approves it.
	RequireApproval bool `json:"requireApproval,omitempty"`
	// TimeWindow allows requests only between Start and End (inclusive, "HH:MM", UTC). A window
	// whose start is after its end spans midnight.
	TimeWindow *TimeWindow `json:"timeWindow,omitempty"`
	// IPAllowlist allows requests only from these addresses or CIDR prefixes (IPv4 and IPv6).
	IPAllowlist []string `json:"ipAllowlist,omitempty"`
}

// TimeWindow is a daily window of wall-clock time in UTC.
type TimeWindow struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// UnmarshalJSON rejects unknown constraint names: a misspelt or unsupported constraint must not
// be silently dropped from a security policy.
func (c *Constraints) UnmarshalJSON(b []byte) error {
	type plain Constraints
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var v plain
	if err := dec.Decode(&v); err != nil {
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return fmt.Errorf("unknown constraint %s (supported: maxCallsPerHour, allowedArgPatterns, requireApproval, timeWindow, ipAllowlist)", f)
		}
		return err
	}
	*c = Constraints(v)
	return nil
}

// UnmarshalJSON rejects unknown fields in a time window for the same reason.
func (w *TimeWindow) UnmarshalJSON(b []byte) error {
	type plain TimeWindow
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var v plain
	if err := dec.Decode(&v); err != nil {
		return err
	}
	*w = TimeWindow(v)
	return nil
}

// Validate checks one permission; the error names the offending field.
func (p *Permission) Validate() error {
	_, err := compileRule(p, 0)
	return err
}

// ValidatePermissions checks a permission list as stored on an agent.
func ValidatePermissions(perms []Permission) error {
	_, err := Compile(perms)
	return err
}

// compiledConstraints holds parsed forms of a permission's constraints.
type compiledConstraints struct {
	args            []*regexp.Regexp
	argSrc          []string
	requireApproval bool
	window          bool
	start, end      int // minutes after midnight UTC
	startS, endS    string
	ips             []netip.Prefix // single addresses are /32 or /128
	limit           int
}

func compileConstraints(c *Constraints, field string) (*compiledConstraints, error) {
	if c == nil {
		return nil, nil
	}
	cc := &compiledConstraints{requireApproval: c.RequireApproval}
	if c.MaxCallsPerHour < 0 {
		return nil, fmt.Errorf("%s.maxCallsPerHour must be positive (0 or absent for no cap), not %d", field, c.MaxCallsPerHour)
	}
	cc.limit = c.MaxCallsPerHour
	if len(c.AllowedArgPatterns) > MaxArgPatterns {
		return nil, fmt.Errorf("%s.allowedArgPatterns has %d patterns; the limit is %d", field, len(c.AllowedArgPatterns), MaxArgPatterns)
	}
	for i, src := range c.AllowedArgPatterns {
		if len(src) > MaxArgPatternLen {
			return nil, fmt.Errorf("%s.allowedArgPatterns[%d] is %d bytes long; the limit is %d", field, i, len(src), MaxArgPatternLen)
		}
		re, err := regexp.Compile(src)
		if err != nil {
			return nil, fmt.Errorf("%s.allowedArgPatterns[%d] is not a valid RE2 regular expression: %v", field, i, err)
		}
		cc.args = append(cc.args, re)
		cc.argSrc = append(cc.argSrc, src)
	}
	if w := c.TimeWindow; w != nil {
		var err error
		if cc.start, err = parseClock(w.Start); err != nil {
			return nil, fmt.Errorf("%s.timeWindow.start: %v", field, err)
		}
		if cc.end, err = parseClock(w.End); err != nil {
			return nil, fmt.Errorf("%s.timeWindow.end: %v", field, err)
		}
		cc.window, cc.startS, cc.endS = true, w.Start, w.End
	}
	if len(c.IPAllowlist) > MaxIPAllowlist {
		return nil, fmt.Errorf("%s.ipAllowlist has %d entries; the limit is %d", field, len(c.IPAllowlist), MaxIPAllowlist)
	}
	for i, e := range c.IPAllowlist {
		pfx, err := parseIPEntry(e)
		if err != nil {
			return nil, fmt.Errorf("%s.ipAllowlist[%d]: %v", field, i, err)
		}
		cc.ips = append(cc.ips, pfx)
	}
	return cc, nil
}

func parseClock(s string) (int, error) {
	if len(s) != 5 || s[2] != ':' || !digit(s[0]) || !digit(s[1]) || !digit(s[3]) || !digit(s[4]) {
		return 0, fmt.Errorf("%q is not a time of day in HH:MM form", s)
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("%q is not a time of day (00:00 to 23:59)", s)
	}
	return h*60 + m, nil
}

func digit(c byte) bool { return c >= '0' && c <= '9' }

func parseIPEntry(e string) (netip.Prefix, error) {
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", e)
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped prefix needs at least 96 bits", e)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(e)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", e)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}
