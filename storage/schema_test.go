package storage_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/kavachdev/kavach/storage"
)

const dialectSchema = `
CREATE TABLE IF NOT EXISTS t (id TEXT NOT NULL PRIMARY KEY, a TEXT NOT NULL, b INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS t_b_idx ON t (b);
-- a prose comment is not a directive
--@dialects postgres mysql
CREATE INDEX IF NOT EXISTS t_a_idx ON t (a, b);
--@dialects sqlite
CREATE UNIQUE INDEX IF NOT EXISTS t_ab_idx ON t (a, b);
`

func TestDialectsDirectiveLimitsAnIndexToTheNamedDialects(t *testing.T) {
	s, err := storage.ParseSchema(dialectSchema)
	if err != nil {
		t.Fatal(err)
	}
	indexes := func(d storage.Dialect) []string {
		var out []string
		for _, ddl := range s.DDL(d) {
			for _, name := range []string{"t_b_idx", "t_a_idx", "t_ab_idx"} {
				if strings.Contains(ddl, name) {
					out = append(out, name)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	for d, want := range map[storage.Dialect][]string{
		storage.SQLite:   {"t_ab_idx", "t_b_idx"},
		storage.Postgres: {"t_a_idx", "t_b_idx"},
		storage.MySQL:    {"t_a_idx", "t_b_idx"}, // inside CREATE TABLE
	} {
		if got := indexes(d); !slices.Equal(got, want) {
			t.Errorf("%s: indexes %v, want %v", d, got, want)
		}
	}
	// On MySQL a column only an index of another dialect uses stays unindexable text.
	for _, ddl := range s.DDL(storage.MySQL) {
		if strings.HasPrefix(ddl, "CREATE TABLE") && !strings.Contains(ddl, "a VARCHAR(255) NOT NULL") {
			t.Errorf("MySQL: column a is indexed there, so it must be VARCHAR: %s", ddl)
		}
	}
	one, _ := storage.ParseSchema(strings.Replace(dialectSchema, "--@dialects postgres mysql\n", "", 1))
	for _, ddl := range one.DDL(storage.MySQL) {
		if strings.HasPrefix(ddl, "CREATE TABLE") && !strings.Contains(ddl, "a VARCHAR(255)") {
			t.Errorf("MySQL without the directive: %s", ddl)
		}
	}
	ab, _ := storage.ParseSchema("CREATE TABLE IF NOT EXISTS t (id TEXT NOT NULL PRIMARY KEY, a TEXT);\n--@dialects sqlite\nCREATE INDEX IF NOT EXISTS t_a ON t (a);")
	for _, ddl := range ab.DDL(storage.MySQL) {
		if !strings.Contains(ddl, "a LONGTEXT") {
			t.Errorf("MySQL, column indexed on SQLite only: %s", ddl)
		}
	}
}

func TestSchemaRefusesMisplacedOrUnknownDirectives(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"--@dialects postgres\nCREATE TABLE IF NOT EXISTS t (id TEXT);", "may only precede CREATE INDEX"},
		{"CREATE TABLE IF NOT EXISTS t (id TEXT);\n--@dialects oracle\nCREATE INDEX IF NOT EXISTS i ON t (id);", "unknown dialect"},
		{"CREATE TABLE IF NOT EXISTS t (id TEXT);\n--@dialects\nCREATE INDEX IF NOT EXISTS i ON t (id);", "unknown directive"},
		{"CREATE TABLE IF NOT EXISTS t (id TEXT);\n--@only sqlite\nCREATE INDEX IF NOT EXISTS i ON t (id);", "unknown directive"},
	} {
		if _, err := storage.ParseSchema(c.src); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error containing %q", c.src, err, c.want)
		}
	}
}
