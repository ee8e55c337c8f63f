package pg

import (
	"errors"
	"strconv"
	"strings"
	"sync"
)

// stmtKind is what a statement does, judged from its first keyword. It decides how a batch is
// sent: reads may share a snapshot, DDL must run statement by statement (a later statement of
// the batch cannot be prepared before the table it uses exists).
type stmtKind int

const (
	kindWrite stmtKind = iota // INSERT, UPDATE, DELETE and anything unrecognised
	kindRead                  // SELECT, VALUES, TABLE, SHOW
	kindDDL                   // CREATE, ALTER, DROP, …
)

// rewritten is a statement in the form Postgres takes: $n placeholders.
type rewritten struct {
	sql    string
	params int
	kind   stmtKind
}

var errEmptyStatement = errors.New("empty statement")

var errMultipleStatements = errors.New("more than one statement in one Stmt; send them as separate statements of the batch")

// rewrite turns the ? placeholders of sql into $1, $2, … . Question marks inside string literals,
// quoted identifiers, dollar-quoted strings and comments are left alone. A statement followed by
// another one (text after a top-level ';') is an error: a batch is the only way to send several.
func rewrite(sql string) (rewritten, error) {
	var b strings.Builder
	b.Grow(len(sql) + 16)
	n := 0
	end := -1 // index of a top-level ';', after which only blanks and comments may follow
	empty := true
	for i := 0; i < len(sql); {
		c := sql[i]
		if empty && !isBlank(c) && c != ';' && !startsComment(sql, i) {
			empty = false
		}
		switch {
		case end >= 0 && !isBlank(c) && !startsComment(sql, i):
			return rewritten{}, errMultipleStatements
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i++
			continue
		case c == ';':
			end = i
			i++
			continue // the terminator is dropped: the extended protocol takes one statement
		case c == '\'':
			escapes := i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e') && (i == 1 || !isIdentByte(sql[i-2]))
			j := skipQuoted(sql, i, '\'', escapes)
			b.WriteString(sql[i:j])
			i = j
			continue
		case c == '"':
			j := skipQuoted(sql, i, '"', false)
			b.WriteString(sql[i:j])
			i = j
			continue
		case c == '$' && (i == 0 || !isIdentByte(sql[i-1])):
			if j := skipDollarQuoted(sql, i); j > i {
				b.WriteString(sql[i:j])
				i = j
				continue
			}
		case startsComment(sql, i):
			j := skipComment(sql, i)
			b.WriteString(sql[i:j])
			i = j
			continue
		}
		b.WriteByte(c)
		i++
	}
	if empty {
		return rewritten{}, errEmptyStatement
	}
	return rewritten{sql: strings.TrimRightFunc(b.String(), isSpace), params: n, kind: kindOf(sql)}, nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func isSpace(r rune) bool { return r < 128 && isBlank(byte(r)) }

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

func startsComment(s string, i int) bool {
	return i+1 < len(s) && (s[i] == '-' && s[i+1] == '-' || s[i] == '/' && s[i+1] == '*')
}

// skipComment returns the index just past the comment starting at i. Block comments nest, as
// in Postgres.
func skipComment(s string, i int) int {
	if s[i] == '-' {
		for i < len(s) && s[i] != '\n' {
			i++
		}
		return i
	}
	depth := 0
	for i+1 < len(s) {
		switch {
		case s[i] == '/' && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*' && s[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return len(s)
}

// skipQuoted returns the index just past the literal that starts with quote q at i; a doubled
// quote is an escaped quote, and with backslashes set (E'…' strings) so is \'.
func skipQuoted(s string, i int, q byte, backslashes bool) int {
	for i++; i < len(s); i++ {
		switch {
		case backslashes && s[i] == '\\':
			i++
		case s[i] == q:
			if i+1 < len(s) && s[i+1] == q {
				i++
				continue
			}
			return i + 1
		}
	}
	return len(s)
}

// skipDollarQuoted returns the index just past a $tag$…$tag$ string starting at i, or i if none
// starts there.
func skipDollarQuoted(s string, i int) int {
	j := i + 1
	for j < len(s) && s[j] != '$' && (isIdentByte(s[j]) && !(j == i+1 && s[j] >= '0' && s[j] <= '9')) {
		j++
	}
	if j >= len(s) || s[j] != '$' {
		return i
	}
	tag := s[i : j+1]
	if k := strings.Index(s[j+1:], tag); k >= 0 {
		return j + 1 + k + len(tag)
	}
	return len(s)
}

func kindOf(sql string) stmtKind {
	i := 0
	for i < len(sql) {
		switch {
		case isBlank(sql[i]) || sql[i] == '(':
			i++
		case startsComment(sql, i):
			i = skipComment(sql, i)
		default:
			j := i
			for j < len(sql) && isIdentByte(sql[j]) {
				j++
			}
			switch strings.ToUpper(sql[i:j]) {
			case "SELECT", "VALUES", "TABLE", "SHOW":
				return kindRead
			case "CREATE", "ALTER", "DROP", "TRUNCATE", "COMMENT", "GRANT", "REVOKE":
				return kindDDL
			}
			return kindWrite
		}
	}
	return kindWrite
}

// rewriteCache remembers rewrites by SQL text. The core builds its SQL from a finite set of
// fragments, so the cache stays small; it is cleared if it ever grows past maxRewrites.
type rewriteCache struct {
	mu sync.RWMutex
	m  map[string]rewritten
}

const maxRewrites = 4096

func (c *rewriteCache) get(sql string) (rewritten, error) {
	c.mu.RLock()
	r, ok := c.m[sql]
	c.mu.RUnlock()
	if ok {
		return r, nil
	}
	r, err := rewrite(sql)
	if err != nil {
		return r, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxRewrites {
		c.m = make(map[string]rewritten)
	}
	c.m[sql] = r
	c.mu.Unlock()
	return r, nil
}

// withCasts returns r with every placeholder cast to the Postgres type of the Go value bound to
// it. It is the fallback for statements where Postgres cannot infer a parameter's type (SQLSTATE
// 42P18, e.g. "? IS NULL"); values are already normalised by storage.NormalizeArg.
func withCasts(r rewritten, args []any) rewritten {
	out := r
	var b strings.Builder
	s := r.sql
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '$' && i+1 < len(s) && s[i+1] >= '1' && s[i+1] <= '9' && (i == 0 || !isIdentByte(s[i-1])):
			j := i + 1
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			n, _ := strconv.Atoi(s[i+1 : j])
			b.WriteString(s[i:j])
			if n >= 1 && n <= len(args) {
				b.WriteString("::" + pgTypeOf(args[n-1]))
			}
			i = j
			continue
		case c == '\'' || c == '"':
			j := skipQuoted(s, i, c, c == '\'' && i > 0 && (s[i-1] == 'E' || s[i-1] == 'e'))
			b.WriteString(s[i:j])
			i = j
			continue
		case c == '$':
			if j := skipDollarQuoted(s, i); j > i {
				b.WriteString(s[i:j])
				i = j
				continue
			}
		case startsComment(s, i):
			j := skipComment(s, i)
			b.WriteString(s[i:j])
			i = j
			continue
		}
		b.WriteByte(c)
		i++
	}
	out.sql = b.String()
	return out
}

func pgTypeOf(v any) string {
	switch v.(type) {
	case int64:
		return "int8"
	case float64:
		return "float8"
	case []byte:
		return "bytea"
	}
	return "text"
}
