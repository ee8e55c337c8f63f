package policy

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func mustCompile(t testing.TB, perms ...Permission) *Set {
	t.Helper()
	s, err := Compile(perms)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var noon = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestEvaluateAllowsExactWildcardAndAnyAction(t *testing.T) {
	s := mustCompile(t,
		Permission{Resource: "mcp:github:*", Actions: []string{"read"}},
		Permission{Resource: "db:prod", Actions: []string{"*"}},
	)
	for _, c := range []struct {
		action, resource string
		want             bool
	}{
		{"read", "mcp:github:repos", true},
		{"write", "mcp:github:repos", false},
		{"drop", "db:prod", true},
		{"read", "db:prod:x", false},
	} {
		out, err := s.Evaluate(&Input{Action: c.action, Resource: c.resource, Now: noon}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out.Allowed != c.want {
			t.Errorf("%s %s: allowed=%v, want %v (%s)", c.action, c.resource, out.Allowed, c.want, out.Reason)
		}
	}
}

func TestEvaluateNoMatchReasonNamesAgentActionAndResource(t *testing.T) {
	s := mustCompile(t, Permission{Resource: "a", Actions: []string{"read"}})
	out, _ := s.Evaluate(&Input{Agent: "bot", Action: "write", Resource: "b", Now: noon}, nil)
	if out.Allowed || out.Code != NoMatchingPermission || out.Permission != -1 {
		t.Fatalf("got %+v", out)
	}
	if want := `No permission grants agent "bot" access to "write" on "b"`; out.Reason != want {
		t.Errorf("reason %q, want %q", out.Reason, want)
	}
}

func TestEvaluateConsidersEveryMatchingPermission(t *testing.T) {
	// The reference stops at the first match, so a constrained broad permission stored first
	// denies what a later unconstrained one grants. Order must not matter.
	broad := Permission{Resource: "mcp:*", Actions: []string{"read"}, Constraints: &Constraints{RequireApproval: true}}
	exact := Permission{Resource: "mcp:github:repos", Actions: []string{"read"}}
	for _, perms := range [][]Permission{{broad, exact}, {exact, broad}} {
		out, _ := mustCompile(t, perms...).Evaluate(&Input{Action: "read", Resource: "mcp:github:repos", Now: noon}, nil)
		if !out.Allowed {
			t.Errorf("denied with %v", out)
		}
	}
	// Both constrained and failing: the most specific permission's failure is reported.
	ipOnly := Permission{Resource: "mcp:github:repos", Actions: []string{"read"}, Constraints: &Constraints{IPAllowlist: []string{"10.0.0.0/8"}}}
	out, _ := mustCompile(t, broad, ipOnly).Evaluate(&Input{Action: "read", Resource: "mcp:github:repos", Now: noon}, nil)
	if out.Allowed || out.Code != IPNotAllowed || out.Permission != 1 {
		t.Errorf("got %+v, want the IP denial of permission 1", out)
	}
}

func TestConstraintTimeWindow(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 1, 1, h, m, 0, 0, time.UTC) }
	day := mustCompile(t, Permission{Resource: "*", Actions: []string{"*"}, Constraints: &Constraints{TimeWindow: &TimeWindow{"09:00", "17:00"}}})
	night := mustCompile(t, Permission{Resource: "*", Actions: []string{"*"}, Constraints: &Constraints{TimeWindow: &TimeWindow{"22:00", "06:00"}}})
	for _, c := range []struct {
		s    *Set
		t    time.Time
		want bool
	}{
		{day, at(9, 0), true}, {day, at(17, 0), true}, {day, at(17, 1), false}, {day, at(8, 59), false},
		{night, at(23, 30), true}, {night, at(3, 0), true}, {night, at(6, 0), true}, {night, at(12, 0), false},
		// A non-UTC clock reading is converted: 10:00 in UTC-5 is 15:00 UTC.
		{day, time.Date(2026, 1, 1, 10, 0, 0, 0, time.FixedZone("x", -5*3600)), true},
		{day, time.Date(2026, 1, 1, 14, 0, 0, 0, time.FixedZone("x", -5*3600)), false},
	} {
		out, _ := c.s.Evaluate(&Input{Action: "a", Resource: "r", Now: c.t}, nil)
		if out.Allowed != c.want {
			t.Errorf("at %v: allowed=%v want %v (%s)", c.t, out.Allowed, c.want, out.Reason)
		}
		if !out.Allowed && out.Code != OutsideTimeWindow {
			t.Errorf("code %s", out.Code)
		}
	}
}

func TestConstraintIPAllowlist(t *testing.T) {
	s := mustCompile(t, Permission{Resource: "*", Actions: []string{"*"}, Constraints: &Constraints{IPAllowlist: []string{"10.0.0.0/8", "192.168.1.7", "2001:db8::/32"}}})
	for _, c := range []struct {
		ip   string
		want bool
	}{
		{"10.1.2.3", true}, {"::ffff:10.1.2.3", true}, {"192.168.1.7", true}, {"192.168.1.8", false},
		{"2001:db8::1", true}, {"2001:db9::1", false}, {"", false},
	} {
		in := &Input{Action: "a", Resource: "r", Now: noon}
		if c.ip != "" {
			in.IP = netip.MustParseAddr(c.ip)
		}
		out, _ := s.Evaluate(in, nil)
		if out.Allowed != c.want || (!out.Allowed && out.Code != IPNotAllowed) {
			t.Errorf("ip %q: %+v, want allowed=%v", c.ip, out, c.want)
		}
	}
}

func TestConstraintArgumentPatterns(t *testing.T) {
	s := mustCompile(t, Permission{Resource: "*", Actions: []string{"*"}, Constraints: &Constraints{AllowedArgPatterns: []string{`^[a-z/]+$`}}})
	ok, _ := s.Evaluate(&Input{Action: "a", Resource: "r", Now: noon, Arguments: map[string]any{"path": "/tmp/x", "n": 5.0}}, nil)
	if !ok.Allowed {
		t.Errorf("denied: %s", ok.Reason)
	}
	bad, _ := s.Evaluate(&Input{Action: "a", Resource: "r", Now: noon, Arguments: map[string]any{"path": "/tmp/x", "q": "DROP TABLE"}}, nil)
	if bad.Allowed || bad.Code != ArgumentNotAllowed || !strings.Contains(bad.Reason, `"q"`) {
		t.Errorf("got %+v", bad)
	}
}

func TestConstraintRequireApprovalDenies(t *testing.T) {
	s := mustCompile(t, Permission{Resource: "*", Actions: []string{"*"}, Constraints: &Constraints{RequireApproval: true}})
	out, _ := s.Evaluate(&Input{Action: "a", Resource: "r", Now: noon}, nil)
	if out.Allowed || out.Code != ApprovalRequired {
		t.Errorf("got %+v", out)
	}
}

func TestRateLimitConsumedOnlyWhenOtherwiseAllowed(t *testing.T) {
	s := mustCompile(t,
		Permission{Resource: "t:*", Actions: []string{"read"}, Constraints: &Constraints{MaxCallsPerHour: 2, IPAllowlist: []string{"10.0.0.1"}}},
	)
	calls := 0
	consume := func(rl RateLimit) (bool, error) {
		calls++
		if rl.PerHour != 2 || rl.Key != "t:* read" {
			t.Errorf("unexpected limit %+v", rl)
		}
		return calls <= 2, nil
	}
	// Wrong IP: denied before the counter is touched.
	out, _ := s.Evaluate(&Input{Action: "read", Resource: "t:a", Now: noon}, consume)
	if out.Allowed || calls != 0 {
		t.Fatalf("got %+v after %d counter calls", out, calls)
	}
	in := &Input{Action: "read", Resource: "t:a", Now: noon, IP: netip.MustParseAddr("10.0.0.1")}
	for i, want := range []bool{true, true, false} {
		out, err := s.Evaluate(in, consume)
		if err != nil || out.Allowed != want {
			t.Fatalf("call %d: %+v %v", i, out, err)
		}
		if !want && out.Code != RateLimited {
			t.Errorf("code %s", out.Code)
		}
	}
	boom := errors.New("db down")
	out, err := s.Evaluate(in, func(RateLimit) (bool, error) { return false, boom })
	if !errors.Is(err, boom) || out.Allowed || out.Code != StorageError {
		t.Errorf("storage failure gave %+v, %v", out, err)
	}
}

func TestCompileRejectsInvalidPermissions(t *testing.T) {
	cases := map[string]Permission{
		"permissions[0].resource":                  {Resource: "a::b", Actions: []string{"read"}},
		"permissions[0].actions: at least one":     {Resource: "a", Actions: nil},
		"permissions[0].actions[1]":                {Resource: "a", Actions: []string{"read", "bad action"}},
		"allowedArgPatterns[0] is not a valid RE2": {Resource: "a", Actions: []string{"r"}, Constraints: &Constraints{AllowedArgPatterns: []string{"(?=x)"}}},
		"timeWindow.start":                         {Resource: "a", Actions: []string{"r"}, Constraints: &Constraints{TimeWindow: &TimeWindow{"9:00", "17:00"}}},
		"timeWindow.end":                           {Resource: "a", Actions: []string{"r"}, Constraints: &Constraints{TimeWindow: &TimeWindow{"09:00", "24:00"}}},
		"ipAllowlist[0]":                           {Resource: "a", Actions: []string{"r"}, Constraints: &Constraints{IPAllowlist: []string{"10.0.0.0/33"}}},
		"maxCallsPerHour must be positive":         {Resource: "a", Actions: []string{"r"}, Constraints: &Constraints{MaxCallsPerHour: -1}},
	}
	for want, p := range cases {
		_, err := Compile([]Permission{p})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%+v) = %v, want an error containing %q", p, err, want)
		}
	}
	if _, err := Compile(make([]Permission, MaxPermissions+1)); err == nil {
		t.Error("too many permissions accepted")
	}
}

func TestConstraintsRejectUnknownFields(t *testing.T) {
	var p Permission
	err := json.Unmarshal([]byte(`{"resource":"a","actions":["r"],"constraints":{"maxCallsPerDay":5}}`), &p)
	if err == nil || !strings.Contains(err.Error(), "maxCallsPerDay") {
		t.Errorf("got %v", err)
	}
	if err := json.Unmarshal([]byte(`{"resource":"a","actions":["r"],"constraints":{"maxCallsPerHour":5,"timeWindow":{"start":"01:00","end":"02:00"}}}`), &p); err != nil {
		t.Fatal(err)
	}
	if p.Constraints.MaxCallsPerHour != 5 || p.Constraints.TimeWindow.End != "02:00" {
		t.Errorf("decoded %+v", p.Constraints)
	}
}

// benchSet is an agent's 5 permissions, as in the core's benchmark workload.
func benchSet(b *testing.B) *Set {
	return mustCompile(b,
		Permission{Resource: "mcp:slack:*", Actions: []string{"read", "write"}},
		Permission{Resource: "mcp:jira:issues", Actions: []string{"read"}},
		Permission{Resource: "db:analytics:*:read", Actions: []string{"query"}},
		Permission{Resource: "fs:tmp:*", Actions: []string{"read", "write", "delete"}},
		Permission{Resource: "mcp:github:*", Actions: []string{"read"}},
	)
}

// BenchmarkMatch is pure matching: one request against all of an agent's 5 permissions (none
// of which grants it, so every one is tried).
func BenchmarkMatch(b *testing.B) {
	s := benchSet(b)
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for i := range s.rules {
			r := &s.rules[i]
			if r.matchAction("write") && r.pattern.Match("mcp:github:repos") {
				n++
			}
		}
		if n != 0 {
			b.Fatal(n)
		}
	}
}

// BenchmarkEvaluate is a whole evaluation: matching, constraints, and for a denial the message
// that is recorded and returned with it (its one allocation).
func BenchmarkEvaluate(b *testing.B) {
	s := benchSet(b)
	for _, c := range []struct {
		name, action, resource string
		want                   Code
	}{
		{"allowed", "read", "mcp:github:repos", Allowed},
		{"no-match", "write", "mcp:github:repos", NoMatchingPermission},
	} {
		b.Run(c.name, func(b *testing.B) {
			in := &Input{Agent: "bench", Action: c.action, Resource: c.resource, Now: noon}
			b.ReportAllocs()
			for b.Loop() {
				if out, _ := s.Evaluate(in, nil); out.Code != c.want {
					b.Fatal(out)
				}
			}
		})
	}
}
