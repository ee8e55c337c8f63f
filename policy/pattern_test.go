package policy

import (
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern, resource string
		want              bool
	}{
		{"mcp:github:repos", "mcp:github:repos", true},
		{"mcp:github:*", "mcp:github:issues", true},
		{"mcp:*", "mcp:github:repos", true}, // trailing '*' matches any depth
		{"mcp:github:*", "mcp:github:repos:issues:1", true},
		{"mcp:github:*", "mcp:github", false}, // one or more segments: not the parent itself
		{"mcp:github", "mcp:github:repos", false},
		{"mcp:github:*", "mcp:slack:channels", false},
		{"admin:*:delete", "admin:projects:delete", true},
		{"admin:*:delete", "admin:projects:read", false}, // the reference's mid-pattern hole, closed
		{"admin:*:delete", "admin:projects:x:delete", false},
		{"admin:*:delete", "admin:delete", false},
		{"a:*:*", "a:b", false},
		{"a:*:*", "a:b:c", true},
		{"a:*:*", "a:b:c:d", true},
		{"*:x", "y:x", true},
		{"*:x", "x", false},
		{"*", "anything", true},
		{"*", "a:b:c", true},
		{"mcp:git*", "mcp:github", false}, // rejected at parse time; see below
		{"MCP:github", "mcp:github", false},
		{"a:b", "a:b:", false},
	}
	for _, c := range cases {
		p, err := ParsePattern(c.pattern)
		if err != nil {
			if c.pattern == "mcp:git*" {
				continue
			}
			t.Fatalf("ParsePattern(%q): %v", c.pattern, err)
		}
		if got := p.Match(c.resource); got != c.want {
			t.Errorf("%q matches %q = %v, want %v", c.pattern, c.resource, got, c.want)
		}
		if got := p.Match(c.resource); got != naiveMatch(c.pattern, c.resource) {
			t.Errorf("%q vs %q disagrees with the reference model", c.pattern, c.resource)
		}
	}
}

func TestParsePatternRejectsMalformedPatterns(t *testing.T) {
	for _, s := range []string{"", ":", "a::b", "a:", ":a", "mcp:git*", "*a", "a:**", "a\x00b", "a\nb", strings.Repeat("a", MaxResourceLen+1), strings.Repeat("a:", MaxSegments) + "a"} {
		if _, err := ParsePattern(s); err == nil {
			t.Errorf("ParsePattern(%q) succeeded, want an error", s)
		}
	}
	for _, s := range []string{"*", "a", "a:*", "a:*:b", "*:*", "files:/tmp/x y", "ünï:cødé"} {
		if _, err := ParsePattern(s); err != nil {
			t.Errorf("ParsePattern(%q): %v", s, err)
		}
	}
}

func TestValidateResourceRejectsWildcardsAndEmptySegments(t *testing.T) {
	for _, s := range []string{"", "*", "a:*", "a::b", "a:", "x\x7f"} {
		if err := ValidateResource(s); err == nil {
			t.Errorf("ValidateResource(%q) succeeded", s)
		}
	}
	if err := ValidateResource("mcp:github:repos"); err != nil {
		t.Error(err)
	}
}

func TestValidateAction(t *testing.T) {
	for _, a := range []string{"read", "tools/call", "db:query", "a.b-c_d", "X9"} {
		if err := ValidateAction(a); err != nil {
			t.Errorf("ValidateAction(%q): %v", a, err)
		}
	}
	for _, a := range []string{"", "*", "re ad", "read\n", "ä", strings.Repeat("a", MaxActionLen+1)} {
		if err := ValidateAction(a); err == nil {
			t.Errorf("ValidateAction(%q) succeeded", a)
		}
	}
}

// naiveMatch is the matching rule written the obvious way, as a model for the fuzzer.
func naiveMatch(pattern, resource string) bool {
	ps := strings.Split(pattern, ":")
	rs := strings.Split(resource, ":")
	if ps[len(ps)-1] == "*" {
		prefix := ps[:len(ps)-1]
		if len(rs) < len(prefix)+1 {
			return false
		}
		rs = rs[:len(prefix)]
		ps = prefix
	} else if len(ps) != len(rs) {
		return false
	}
	for i := range ps {
		if ps[i] != "*" && ps[i] != rs[i] {
			return false
		}
	}
	return true
}

func FuzzPatternMatch(f *testing.F) {
	for _, s := range [][2]string{{"mcp:*", "mcp:a:b"}, {"a:*:c", "a:b:c"}, {"*", "x"}, {"a:b", "a:b"}, {"a:*:*", "a:b"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, resource string) {
		p, perr := ParsePattern(pattern)
		rerr := ValidateResource(resource)
		if perr != nil || rerr != nil {
			return
		}
		if p.String() != pattern {
			t.Fatalf("pattern %q round-trips as %q", pattern, p.String())
		}
		if got, want := p.Match(resource), naiveMatch(pattern, resource); got != want {
			t.Fatalf("%q matches %q = %v, model says %v", pattern, resource, got, want)
		}
	})
}
