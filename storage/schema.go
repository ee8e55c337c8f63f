package storage

import (
	"fmt"
	"slices"
	"strings"
)

// Schema is the parsed form of schema.sql: the tables and indexes every backend must have.
// The DDL each dialect runs is rendered from it, so schema.sql stays the single source of truth.
type Schema struct {
	Tables  []*Table
	Indexes []*Index
	// Views are added by the program, not parsed from schema.sql (see View).
	Views []*View
}

// View is a view that some dialects have, with whatever else its DDL creates (an INSTEAD OF
// trigger, say): SQL that schema.sql's subset does not describe, so the program adds it to the
// parsed schema. DDL appends it after the tables and indexes; Verify checks that the view exists.
type View struct {
	Name    string
	Dialect Dialect
	DDL     []string // idempotent (IF NOT EXISTS)
}

// Table is one CREATE TABLE statement.
type Table struct {
	Name         string
	Columns      []*Column
	WithoutRowID bool // SQLite storage option; other dialects cluster or not by their own rules
}

// Column is one column definition. Type is one of TEXT, INTEGER, REAL, BLOB.
type Column struct {
	Name       string
	Type       string
	NotNull    bool
	PrimaryKey bool
	Unique     bool
	Default    string // SQL literal as written, "" for none
	Ref        *Reference
}

// Reference is a foreign key from a column to table(column).
type Reference struct {
	Table, Column string
	OnDelete      string // "", "CASCADE", "SET NULL", "RESTRICT", "NO ACTION"
}

// Index is one CREATE INDEX statement.
type Index struct {
	Name    string
	Table   string
	Columns []string
	Unique  bool
	// Dialects, when not empty, are the only dialects that have the index. schema.sql marks such
	// an index with a directive comment on the line before it: --@dialects postgres mysql
	Dialects []Dialect
}

// In reports whether dialect d has the index.
func (ix *Index) In(d Dialect) bool {
	return len(ix.Dialects) == 0 || slices.Contains(ix.Dialects, d)
}

// Table returns the table named name, or nil.
func (s *Schema) Table(name string) *Table {
	for _, t := range s.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// ColumnNames lists t's columns in declaration order.
func (t *Table) ColumnNames() []string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}

// ParseSchema parses the subset of SQL that schema.sql is written in: CREATE TABLE IF NOT EXISTS
// with column-level constraints (NOT NULL, PRIMARY KEY, UNIQUE, DEFAULT literal, REFERENCES
// t (c) [ON DELETE action]) and an optional WITHOUT ROWID, and CREATE [UNIQUE] INDEX IF NOT
// EXISTS, optionally preceded by a --@dialects directive. Anything else is an error naming the
// statement, so the file cannot drift into SQL the renderers do not understand.
func ParseSchema(src string) (*Schema, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	s := &Schema{}
	p := &parser{toks: toks}
	for !p.done() {
		start := p.pos
		if err := p.statement(s); err != nil {
			return nil, fmt.Errorf("schema: statement %q: %w", p.excerpt(start), err)
		}
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Schema) check() error {
	seen := map[string]bool{}
	for _, t := range s.Tables {
		if seen[t.Name] {
			return fmt.Errorf("schema: table %s defined twice", t.Name)
		}
		seen[t.Name] = true
		for _, c := range t.Columns {
			if c.Ref != nil {
				rt := s.Table(c.Ref.Table)
				if rt == nil || !slices.Contains(rt.ColumnNames(), c.Ref.Column) {
					return fmt.Errorf("schema: %s.%s references unknown column %s.%s", t.Name, c.Name, c.Ref.Table, c.Ref.Column)
				}
			}
		}
	}
	for _, ix := range s.Indexes {
		t := s.Table(ix.Table)
		if t == nil {
			return fmt.Errorf("schema: index %s on unknown table %s", ix.Name, ix.Table)
		}
		for _, c := range ix.Columns {
			if !slices.Contains(t.ColumnNames(), c) {
				return fmt.Errorf("schema: index %s on unknown column %s.%s", ix.Name, ix.Table, c)
			}
		}
	}
	return nil
}

type parser struct {
	toks []string
	pos  int
}

func (p *parser) done() bool { return p.pos >= len(p.toks) }

func (p *parser) peek() string {
	if p.done() {
		return ""
	}
	return p.toks[p.pos]
}

func (p *parser) next() string {
	t := p.peek()
	p.pos++
	return t
}

// accept consumes the keywords kws if they come next (case-insensitively).
func (p *parser) accept(kws ...string) bool {
	if p.pos+len(kws) > len(p.toks) {
		return false
	}
	for i, kw := range kws {
		if !strings.EqualFold(p.toks[p.pos+i], kw) {
			return false
		}
	}
	p.pos += len(kws)
	return true
}

func (p *parser) expect(kws ...string) error {
	if !p.accept(kws...) {
		return fmt.Errorf("expected %q, found %q", strings.Join(kws, " "), p.peek())
	}
	return nil
}

func (p *parser) ident() (string, error) {
	t := p.next()
	if t == "" || !isIdent(t) {
		return "", fmt.Errorf("expected a name, found %q", t)
	}
	return strings.ToLower(t), nil
}

func (p *parser) excerpt(start int) string {
	end := min(start+8, len(p.toks))
	return strings.Join(p.toks[start:end], " ")
}

const dialectsDirective = "--@dialects"

func (p *parser) statement(s *Schema) error {
	var dialects []Dialect
	if d := p.peek(); strings.HasPrefix(d, "--@") {
		p.next()
		words := strings.Fields(d)
		if words[0] != dialectsDirective || len(words) == 1 {
			return fmt.Errorf("unknown directive %q (known: %s followed by dialect names)", d, dialectsDirective)
		}
		for _, w := range words[1:] {
			dl, err := ParseDialect(w)
			if err != nil {
				return err
			}
			dialects = append(dialects, dl)
		}
		indexes := len(s.Indexes)
		if err := p.statement(s); err != nil {
			return err
		}
		if len(s.Indexes) == indexes {
			return fmt.Errorf("%s may only precede CREATE INDEX: every dialect has every table", dialectsDirective)
		}
		s.Indexes[indexes].Dialects = dialects
		return nil
	}
	switch {
	case p.accept("CREATE", "TABLE", "IF", "NOT", "EXISTS"):
		t, err := p.table()
		if err != nil {
			return err
		}
		s.Tables = append(s.Tables, t)
	case p.accept("CREATE", "UNIQUE", "INDEX", "IF", "NOT", "EXISTS"):
		ix, err := p.index(true)
		if err != nil {
			return err
		}
		s.Indexes = append(s.Indexes, ix)
	case p.accept("CREATE", "INDEX", "IF", "NOT", "EXISTS"):
		ix, err := p.index(false)
		if err != nil {
			return err
		}
		s.Indexes = append(s.Indexes, ix)
	default:
		return fmt.Errorf("only CREATE TABLE IF NOT EXISTS and CREATE [UNIQUE] INDEX IF NOT EXISTS are allowed")
	}
	return p.expect(";")
}

func (p *parser) table() (*Table, error) {
	name, err := p.ident()
	if err != nil {
		return nil, err
	}
	t := &Table{Name: name}
	if err := p.expect("("); err != nil {
		return nil, err
	}
	for {
		c, err := p.column()
		if err != nil {
			return nil, err
		}
		t.Columns = append(t.Columns, c)
		if p.accept(")") {
			break
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
	}
	if p.accept("WITHOUT", "ROWID") {
		t.WithoutRowID = true
	}
	return t, nil
}

func (p *parser) column() (*Column, error) {
	name, err := p.ident()
	if err != nil {
		return nil, err
	}
	c := &Column{Name: name, Type: strings.ToUpper(p.next())}
	switch c.Type {
	case "TEXT", "INTEGER", "REAL", "BLOB":
	default:
		return nil, fmt.Errorf("column %s: type %q is not one of TEXT, INTEGER, REAL, BLOB", name, c.Type)
	}
	for {
		switch {
		case p.accept("NOT", "NULL"):
			c.NotNull = true
		case p.accept("PRIMARY", "KEY"):
			c.PrimaryKey = true
		case p.accept("UNIQUE"):
			c.Unique = true
		case p.accept("DEFAULT"):
			c.Default = p.next()
			if c.Default == "" || c.Default == "," || c.Default == ")" {
				return nil, fmt.Errorf("column %s: DEFAULT needs a literal", name)
			}
		case p.accept("REFERENCES"):
			ref := &Reference{}
			if ref.Table, err = p.ident(); err != nil {
				return nil, err
			}
			if err := p.expect("("); err != nil {
				return nil, err
			}
			if ref.Column, err = p.ident(); err != nil {
				return nil, err
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			if p.accept("ON", "DELETE") {
				switch {
				case p.accept("CASCADE"):
					ref.OnDelete = "CASCADE"
				case p.accept("SET", "NULL"):
					ref.OnDelete = "SET NULL"
				case p.accept("RESTRICT"):
					ref.OnDelete = "RESTRICT"
				case p.accept("NO", "ACTION"):
					ref.OnDelete = "NO ACTION"
				default:
					return nil, fmt.Errorf("column %s: unknown ON DELETE action %q", name, p.peek())
				}
			}
			c.Ref = ref
		default:
			return c, nil
		}
	}
}

func (p *parser) index(unique bool) (*Index, error) {
	name, err := p.ident()
	if err != nil {
		return nil, err
	}
	ix := &Index{Name: name, Unique: unique}
	if err := p.expect("ON"); err != nil {
		return nil, err
	}
	if ix.Table, err = p.ident(); err != nil {
		return nil, err
	}
	if err := p.expect("("); err != nil {
		return nil, err
	}
	for {
		col, err := p.ident()
		if err != nil {
			return nil, err
		}
		ix.Columns = append(ix.Columns, col)
		if p.accept(")") {
			return ix, nil
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
	}
}

func isIdent(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// tokenize splits SQL into words, punctuation and quoted literals, dropping -- comments.
func tokenize(src string) ([]string, error) {
	var toks []string
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			j := i
			for j < len(src) && src[j] != '\n' {
				j++
			}
			if strings.HasPrefix(src[i:], "--@") {
				toks = append(toks, strings.TrimSpace(src[i:j])) // a directive for the next statement
			}
			i = j
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == ',' || c == ';':
			toks = append(toks, string(c))
			i++
		case c == '\'':
			j := i + 1
			for j < len(src) && src[j] != '\'' {
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("schema: unterminated string literal")
			}
			toks = append(toks, src[i:j+1])
			i = j + 1
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\n\r(),;'", rune(src[j])) {
				j++
			}
			toks = append(toks, src[i:j])
			i = j
		}
	}
	return toks, nil
}

// DDL renders the statements that create the schema in dialect d. Every statement is idempotent
// (IF NOT EXISTS), so running the list twice is harmless.
func (s *Schema) DDL(d Dialect) []string {
	var out []string
	for _, t := range s.Tables {
		out = append(out, s.createTable(d, t))
	}
	if d != MySQL { // MySQL gets its indexes inside CREATE TABLE (it has no CREATE INDEX IF NOT EXISTS)
		for _, ix := range s.Indexes {
			if ix.In(d) {
				out = append(out, createIndex(ix))
			}
		}
	}
	for _, v := range s.Views {
		if v.Dialect == d {
			out = append(out, v.DDL...)
		}
	}
	return out
}

func createIndex(ix *Index) string {
	u := ""
	if ix.Unique {
		u = "UNIQUE "
	}
	return "CREATE " + u + "INDEX IF NOT EXISTS " + ix.Name + " ON " + ix.Table + " (" + strings.Join(ix.Columns, ", ") + ")"
}

func (s *Schema) createTable(d Dialect, t *Table) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS " + t.Name + " (")
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.Name + " " + s.ColumnType(d, t, c))
		if c.NotNull {
			b.WriteString(" NOT NULL")
		}
		if c.Default != "" {
			b.WriteString(" DEFAULT " + c.Default)
		}
		if c.PrimaryKey {
			b.WriteString(" PRIMARY KEY")
		}
		if c.Unique {
			b.WriteString(" UNIQUE")
		}
		if c.Ref != nil && d != MySQL {
			b.WriteString(" REFERENCES " + c.Ref.Table + " (" + c.Ref.Column + ")")
			if c.Ref.OnDelete != "" {
				b.WriteString(" ON DELETE " + c.Ref.OnDelete)
			}
		}
	}
	if d == MySQL {
		// MySQL parses and ignores column-level REFERENCES: foreign keys must be table constraints.
		for _, c := range t.Columns {
			if c.Ref == nil {
				continue
			}
			b.WriteString(", FOREIGN KEY (" + c.Name + ") REFERENCES " + c.Ref.Table + " (" + c.Ref.Column + ")")
			if c.Ref.OnDelete != "" {
				b.WriteString(" ON DELETE " + c.Ref.OnDelete)
			}
		}
		for _, ix := range s.Indexes {
			if ix.Table != t.Name || !ix.In(d) {
				continue
			}
			kind := "INDEX "
			if ix.Unique {
				kind = "UNIQUE KEY "
			}
			b.WriteString(", " + kind + ix.Name + " (" + strings.Join(ix.Columns, ", ") + ")")
		}
	}
	b.WriteString(")")
	switch {
	case d == SQLite && t.WithoutRowID:
		b.WriteString(" WITHOUT ROWID")
	case d == MySQL:
		// Binary collation: ids, hashes and resources compare byte for byte, as in SQLite.
		b.WriteString(" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
	}
	return b.String()
}

// ColumnType is the type column c of table t gets in dialect d.
func (s *Schema) ColumnType(d Dialect, t *Table, c *Column) string {
	switch d {
	case Postgres:
		switch c.Type {
		case "INTEGER":
			return "BIGINT"
		case "REAL":
			return "DOUBLE PRECISION"
		case "BLOB":
			return "BYTEA"
		}
		return "TEXT"
	case MySQL:
		switch c.Type {
		case "INTEGER":
			return "BIGINT"
		case "REAL":
			return "DOUBLE"
		case "BLOB":
			return "LONGBLOB"
		}
		// MySQL cannot index or default a TEXT column: keyed and defaulted text is VARCHAR.
		if s.keyed(d, t, c) || c.Default != "" {
			return "VARCHAR(255)"
		}
		return "LONGTEXT"
	}
	return c.Type
}

// keyed reports whether c takes part in a key or an index of dialect d, or is the target of a
// reference.
func (s *Schema) keyed(d Dialect, t *Table, c *Column) bool {
	if c.PrimaryKey || c.Unique || c.Ref != nil {
		return true
	}
	for _, ix := range s.Indexes {
		if ix.Table == t.Name && ix.In(d) && slices.Contains(ix.Columns, c.Name) {
			return true
		}
	}
	for _, other := range s.Tables {
		for _, oc := range other.Columns {
			if oc.Ref != nil && oc.Ref.Table == t.Name && oc.Ref.Column == c.Name {
				return true
			}
		}
	}
	return false
}
