package mysql

import (
	"errors"
	"strings"
)

// stmtKind is what a statement does, judged from its first keyword.
type stmtKind int

const (
	kindWrite stmtKind = iota // INSERT, UPDATE, DELETE and anything unrecognised
	kindRead                  // SELECT, SHOW, … : statements that return rows
	kindDDL                   // CREATE, ALTER, DROP, …: MySQL commits these implicitly
)

var errMultipleStatements = errors.New("more than one statement in one Stmt; send them as separate statements of the batch")

// parsed is what Exec needs to know about a statement's text.
type parsed struct {
	kind      stmtKind
	returning bool // INSERT/UPDATE/DELETE … RETURNING (MariaDB): it returns rows
}

// parse classifies sql and rejects text holding more than one statement (the driver is opened
// without multiStatements, so the server would reject it too, with a less helpful syntax error).
// Literals, quoted identifiers and comments are skipped; with the sql_mode this backend sets
// (NO_BACKSLASH_ESCAPES, ANSI_QUOTES), quotes are escaped only by doubling them.
func parse(sql string) (parsed, error) {
	p := parsed{kind: kindWrite}
	first, end, empty := true, false, true
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case isBlank(c):
			i++
		case startsComment(sql, i):
			i = skipComment(sql, i)
		case end:
			return p, errMultipleStatements
		case c == ';':
			end = true
			i++
		case c == '\'' || c == '"' || c == '`':
			empty = false
			i = skipQuoted(sql, i, c)
		case isIdentByte(c):
			j := i
			for j < len(sql) && isIdentByte(sql[j]) {
				j++
			}
			word := strings.ToUpper(sql[i:j])
			empty = false
			if first {
				first = false
				switch word {
				case "SELECT", "SHOW", "VALUES", "TABLE", "DESCRIBE", "DESC", "EXPLAIN", "WITH":
					p.kind = kindRead
				case "CREATE", "ALTER", "DROP", "TRUNCATE", "RENAME":
					p.kind = kindDDL
				}
			} else if word == "RETURNING" {
				p.returning = true
			}
			i = j
		default:
			empty = false
			i++
		}
	}
	if empty {
		return p, errors.New("empty statement")
	}
	return p, nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

func startsComment(s string, i int) bool {
	switch {
	case s[i] == '#':
		return true
	case i+1 >= len(s):
		return false
	case s[i] == '/' && s[i+1] == '*':
		return true
	case s[i] == '-' && s[i+1] == '-':
		// MySQL needs a blank (or the end) after "--".
		return i+2 >= len(s) || isBlank(s[i+2])
	}
	return false
}

func skipComment(s string, i int) int {
	if s[i] == '/' {
		if j := strings.Index(s[i+2:], "*/"); j >= 0 {
			return i + 2 + j + 2
		}
		return len(s)
	}
	for i < len(s) && s[i] != '\n' {
		i++
	}
	return i
}

func skipQuoted(s string, i int, q byte) int {
	for i++; i < len(s); i++ {
		if s[i] == q {
			if i+1 < len(s) && s[i+1] == q {
				i++
				continue
			}
			return i + 1
		}
	}
	return len(s)
}
