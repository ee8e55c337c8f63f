package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Code is the stable, machine-readable reason of a decision. Messages may change; codes do not.
type Code string

const (
	Allowed              Code = "ALLOWED"
	NoMatchingPermission Code = "NO_MATCHING_PERMISSION"
	RateLimited          Code = "RATE_LIMITED"
	ArgumentNotAllowed   Code = "ARGUMENT_NOT_ALLOWED"
	ApprovalRequired     Code = "APPROVAL_REQUIRED"
	OutsideTimeWindow    Code = "OUTSIDE_TIME_WINDOW"
	IPNotAllowed         Code = "IP_NOT_ALLOWED"

	// Decided before permissions are looked at.
	AgentNotFound Code = "AGENT_NOT_FOUND"
	InvalidToken  Code = "INVALID_TOKEN"
	AgentRevoked  Code = "AGENT_REVOKED"
	AgentExpired  Code = "AGENT_EXPIRED"
	// Fail closed: the decision could not be made or recorded, so it is a denial.
	StorageError Code = "STORAGE_ERROR"
)

// Input is one request to decide, with the facts constraints look at.
type Input struct {
	Agent     string // agent name, used in messages only
	Action    string
	Resource  string
	Arguments map[string]any // top-level string values are checked by allowedArgPatterns
	IP        netip.Addr     // zero when unknown
	Now       time.Time
}

// Outcome is the result of evaluating a permission set.
type Outcome struct {
	Allowed bool
	Code    Code
	Reason  string // empty when allowed
	// Permission is the index, in the agent's permission list, of the permission that allowed
	// the request or whose constraint produced the denial; -1 when no permission matched.
	Permission int
}

// RateLimit identifies the counter a rate-limited permission consumes.
type RateLimit struct {
	Key     string // stable per permission content: pattern and actions
	PerHour int
}

// Consume counts one call against a rate limit and reports whether it was within the cap. It is
// called at most once per evaluation, for the permission that would otherwise allow the
// request, so calls denied by another constraint never use up quota.
type Consume func(RateLimit) (ok bool, err error)

// Set is an agent's compiled permission list, ordered most specific first.
type Set struct {
	perms []Permission
	rules []rule
}

type rule struct {
	pattern   Pattern
	actions   []string
	anyAction bool
	c         *compiledConstraints
	index     int
	rateKey   string
}

// Compile validates and compiles a permission list. Errors name the offending entry
// ("permissions[2].actions[0]: ...").
func Compile(perms []Permission) (*Set, error) {
	if len(perms) > MaxPermissions {
		return nil, fmt.Errorf("permissions: %d entries; the limit is %d", len(perms), MaxPermissions)
	}
	s := &Set{perms: perms, rules: make([]rule, 0, len(perms))}
	for i := range perms {
		r, err := compileRule(&perms[i], i)
		if err != nil {
			return nil, err
		}
		s.rules = append(s.rules, r)
	}
	// Most specific first: more literal segments, then exact before trailing '*', then longer.
	// Ties keep list order, so evaluation order is deterministic.
	slices.SortStableFunc(s.rules, func(a, b rule) int {
		if a.pattern.lits != b.pattern.lits {
			return b.pattern.lits - a.pattern.lits
		}
		if a.pattern.tail != b.pattern.tail {
			if a.pattern.tail {
				return 1
			}
			return -1
		}
		return len(b.pattern.segs) - len(a.pattern.segs)
	})
	return s, nil
}

func compileRule(p *Permission, i int) (rule, error) {
	r, err := compileRuleAt(p, i)
	if err != nil {
		return rule{}, fmt.Errorf("permissions[%d]%w", i, err)
	}
	return r, nil
}

// fieldError is an error about a field of a permission, its message starting with ".field: ";
// compileRule adds the "permissions[i]" prefix, so a valid list costs no formatting.
type fieldError struct {
	msg string
}

func (e *fieldError) Error() string { return e.msg }

func ferr(format string, args ...any) error { return &fieldError{fmt.Sprintf(format, args...)} }

func compileRuleAt(p *Permission, i int) (rule, error) {
	const field = ""
	pat, err := ParsePattern(p.Resource)
	if err != nil {
		return rule{}, ferr("%s.resource: %v", field, err)
	}
	if len(p.Actions) == 0 {
		return rule{}, ferr("%s.actions: at least one action is required (use \"*\" for every action)", field)
	}
	if len(p.Actions) > MaxActions {
		return rule{}, ferr("%s.actions: %d entries; the limit is %d", field, len(p.Actions), MaxActions)
	}
	r := rule{pattern: pat, actions: p.Actions, index: i}
	for j, a := range p.Actions {
		if a == "*" {
			r.anyAction = true
			continue
		}
		if err := checkAction(a); err != nil {
			return rule{}, ferr("%s.actions[%d]: %v", field, j, err)
		}
	}
	if r.c, err = compileConstraints(p.Constraints, field+".constraints"); err != nil {
		return rule{}, err
	}
	if r.c != nil && r.c.limit > 0 {
		r.rateKey = rateKey(p)
	}
	return r, nil
}

// rateKey names a rate-limited permission's counter by its content, so replacing an agent's
// permissions with the same ones keeps the count, and two permissions with different actions on
// one pattern count separately. Keys stay under 200 bytes (they are part of an index).
func rateKey(p *Permission) string {
	acts := slices.Clone(p.Actions)
	slices.Sort(acts)
	k := p.Resource + " " + strings.Join(acts, ",")
	if len(k) > 200 {
		sum := sha256.Sum256([]byte(k))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	return k
}

// Permissions returns the list the set was compiled from, in its original order.
func (s *Set) Permissions() []Permission { return s.perms }

// HasRateLimits reports whether evaluating may need a Consume function.
func (s *Set) HasRateLimits() bool {
	for i := range s.rules {
		if s.rules[i].rateKey != "" {
			return true
		}
	}
	return false
}

// Evaluate decides in. Every permission whose pattern and actions match is considered, most
// specific first; the first one whose constraints all pass allows the request. If some matched
// but none passed, the denial reports the first failure, so the answer never depends on the
// order permissions were stored in. consume may be nil if the set has no rate limits.
//
// The allowing path does not allocate.
func (s *Set) Evaluate(in *Input, consume Consume) (Outcome, error) {
	first := Outcome{Permission: -1}
	for i := range s.rules {
		r := &s.rules[i]
		if !r.matchAction(in.Action) || !r.pattern.Match(in.Resource) {
			continue
		}
		if r.c == nil {
			return Outcome{Allowed: true, Code: Allowed, Permission: r.index}, nil
		}
		code, reason := r.c.check(in)
		if code == "" && r.c.limit > 0 {
			if consume == nil {
				return Outcome{Code: StorageError, Reason: "rate limit cannot be checked", Permission: r.index}, fmt.Errorf("policy: permission %q has a rate limit but no counter was given", r.pattern.raw)
			}
			ok, err := consume(RateLimit{Key: r.rateKey, PerHour: r.c.limit})
			if err != nil {
				return Outcome{Code: StorageError, Reason: "Rate limit could not be checked: " + err.Error(), Permission: r.index}, err
			}
			if !ok {
				code = RateLimited
				reason = fmt.Sprintf("Rate limit exceeded: %d calls per hour allowed on %q", r.c.limit, r.pattern.raw)
			}
		}
		if code == "" {
			return Outcome{Allowed: true, Code: Allowed, Permission: r.index}, nil
		}
		if first.Code == "" {
			first = Outcome{Code: code, Reason: reason, Permission: r.index}
		}
	}
	if first.Code != "" {
		return first, nil
	}
	return Outcome{Code: NoMatchingPermission, Reason: noMatchReason(in), Permission: -1}, nil
}

// noMatchReason is `No permission grants agent "…" access to "…" on "…"`, built in one
// allocation: a denial is as common as an allowance, and fmt would take four.
func noMatchReason(in *Input) string {
	b := make([]byte, 0, 48+3*2+len(in.Agent)+len(in.Action)+len(in.Resource)+8)
	b = append(b, "No permission grants agent "...)
	b = strconv.AppendQuote(b, in.Agent)
	b = append(b, " access to "...)
	b = strconv.AppendQuote(b, in.Action)
	b = append(b, " on "...)
	b = strconv.AppendQuote(b, in.Resource)
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is not used again
}

func (r *rule) matchAction(a string) bool {
	if r.anyAction {
		return true
	}
	for _, x := range r.actions {
		if x == a {
			return true
		}
	}
	return false
}

// check evaluates the constraints that need no counter, cheapest first.
func (c *compiledConstraints) check(in *Input) (Code, string) {
	if len(c.ips) > 0 {
		if !in.IP.IsValid() {
			return IPNotAllowed, "No IP address provided; the permission requires an IP allowlist match"
		}
		ip := in.IP.Unmap().WithZone("")
		ok := false
		for _, p := range c.ips {
			if p.Contains(ip) {
				ok = true
				break
			}
		}
		if !ok {
			return IPNotAllowed, fmt.Sprintf("IP %q is not in the allowlist for this resource", ip.String())
		}
	}
	if c.window {
		t := in.Now.UTC()
		m := t.Hour()*60 + t.Minute()
		var ok bool
		if c.start <= c.end {
			ok = m >= c.start && m <= c.end
		} else { // spans midnight
			ok = m >= c.start || m <= c.end
		}
		if !ok {
			return OutsideTimeWindow, fmt.Sprintf("Action is only allowed between %s and %s UTC", c.startS, c.endS)
		}
	}
	if len(c.args) > 0 && len(in.Arguments) > 0 {
		keys := make([]string, 0, len(in.Arguments))
		for k, v := range in.Arguments {
			if _, ok := v.(string); ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys) // report the same failure every time
		for pi, re := range c.args {
			for _, k := range keys {
				v := in.Arguments[k].(string)
				if !re.MatchString(v) {
					return ArgumentNotAllowed, fmt.Sprintf("Argument %q value %q does not match pattern %q", k, abbreviate(v, 100), c.argSrc[pi])
				}
			}
		}
	}
	if c.requireApproval {
		return ApprovalRequired, "This action requires human approval before execution"
	}
	return "", ""
}

// abbreviate shortens s to at most n bytes without splitting a UTF-8 sequence.
func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
