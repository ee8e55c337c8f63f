package storagetest

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/kavachdev/kavach/storage"
)

// tableShape is a table as a database describes it, reduced to what schema.sql decides.
type tableShape struct {
	columns []string        // "name TYPE [NOT NULL]", in order
	pk      string          // comma-separated columns
	uniques map[string]bool // column sets with a unique constraint or unique index, "a,b"
	indexes map[string]string
	fks     map[string]bool // "col -> table(col) ON DELETE action"
}

func newShape() *tableShape {
	return &tableShape{uniques: map[string]bool{}, indexes: map[string]string{}, fks: map[string]bool{}}
}

// expectedShapes derives, from the schema, what each table must look like in dialect d.
func expectedShapes(s *storage.Schema, d storage.Dialect) map[string]*tableShape {
	out := map[string]*tableShape{}
	for _, t := range s.Tables {
		sh := newShape()
		var pk []string
		for _, c := range t.Columns {
			col := c.Name + " " + strings.ToUpper(s.ColumnType(d, t, c))
			if c.NotNull || c.PrimaryKey && d != storage.SQLite {
				col += " NOT NULL"
			}
			sh.columns = append(sh.columns, col)
			if c.PrimaryKey {
				pk = append(pk, c.Name)
			}
			if c.Unique {
				sh.uniques[c.Name] = true
			}
			if c.Ref != nil {
				sh.fks[fk(d, c.Name, c.Ref.Table, c.Ref.Column, c.Ref.OnDelete)] = true
			}
		}
		sh.pk = strings.Join(pk, ",")
		out[t.Name] = sh
	}
	for _, ix := range s.Indexes {
		if !ix.In(d) {
			continue
		}
		sh := out[ix.Table]
		cols := strings.Join(ix.Columns, ",")
		sh.indexes[ix.Name] = indexDesc(cols, ix.Unique)
		if ix.Unique {
			sh.uniques[cols] = true
		}
	}
	return out
}

func indexDesc(cols string, unique bool) string {
	if unique {
		return "UNIQUE (" + cols + ")"
	}
	return "(" + cols + ")"
}

// fk describes a foreign key; "no action" and "restrict" are one thing where the dialect does not
// tell them apart (MySQL reports either for an unspecified action).
func fk(d storage.Dialect, col, table, refCol, onDelete string) string {
	a := strings.ToUpper(onDelete)
	if a == "" {
		a = "NO ACTION"
	}
	if d == storage.MySQL && a == "RESTRICT" {
		a = "NO ACTION"
	}
	return col + " -> " + table + "(" + refCol + ") ON DELETE " + a
}

func testSchemaMatches(t *testing.T, b Backend) {
	CheckSchema(t, migrated(t, b), schema(t))
}

// CheckSchema fails t for every way the tables of db differ from schema s in db's dialect:
// columns and their types, primary keys, unique column sets, foreign keys and indexes, as the
// database's catalog describes them. Tests of migrations use it to check that an upgraded
// database is the one schema.sql creates.
func CheckSchema(t *testing.T, db storage.DB, s *storage.Schema) {
	t.Helper()
	d := db.Dialect()
	want := expectedShapes(s, d)
	got, extraTables := introspect(t, db, s)
	for _, name := range extraTables {
		t.Errorf("database has table %s, which schema.sql does not define", name)
	}
	for _, tb := range s.Tables {
		g, w := got[tb.Name], want[tb.Name]
		if g == nil {
			t.Errorf("table %s is missing", tb.Name)
			continue
		}
		if fmt.Sprint(g.columns) != fmt.Sprint(w.columns) {
			t.Errorf("%s columns:\n got  %v\n want %v", tb.Name, g.columns, w.columns)
		}
		if g.pk != w.pk {
			t.Errorf("%s primary key: got (%s), want (%s)", tb.Name, g.pk, w.pk)
		}
		compareSets(t, tb.Name+" unique column sets", g.uniques, w.uniques)
		compareSets(t, tb.Name+" foreign keys", g.fks, w.fks)
		if fmt.Sprint(g.indexes) != fmt.Sprint(w.indexes) {
			t.Errorf("%s indexes:\n got  %v\n want %v", tb.Name, g.indexes, w.indexes)
		}
	}
}

func compareSets(t *testing.T, what string, got, want map[string]bool) {
	t.Helper()
	var missing, extra []string
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	if len(missing)+len(extra) > 0 {
		t.Errorf("%s: missing %v, unexpected %v", what, sortedCopy(missing), sortedCopy(extra))
	}
}

// introspect reads the shape of every kavach table from the database's catalog.
func introspect(t *testing.T, db storage.DB, s *storage.Schema) (map[string]*tableShape, []string) {
	t.Helper()
	var tablesSQL string
	switch db.Dialect() {
	case storage.SQLite:
		tablesSQL = "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
	case storage.Postgres:
		tablesSQL = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"
	case storage.MySQL:
		tablesSQL = "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME"
	}
	out := map[string]*tableShape{}
	var extra []string
	for _, r := range exec(t, db, stmt(tablesSQL))[0].Rows {
		name := fmt.Sprint(r[0])
		if s.Table(name) == nil {
			extra = append(extra, name)
			continue
		}
		switch db.Dialect() {
		case storage.SQLite:
			out[name] = sqliteShape(t, db, name)
		case storage.Postgres:
			out[name] = postgresShape(t, db, name)
		case storage.MySQL:
			out[name] = mysqlShape(t, db, s, name)
		}
	}
	return out, extra
}

func str(v any) string {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return fmt.Sprint(v)
}

func sqliteShape(t *testing.T, db storage.DB, table string) *tableShape {
	sh := newShape()
	res := exec(t, db,
		stmt(`SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid`, table),
		stmt(`SELECT name, "unique", origin FROM pragma_index_list(?) ORDER BY name`, table),
		stmt(`SELECT "from", "table", "to", on_delete FROM pragma_foreign_key_list(?)`, table),
	)
	pk := map[int64]string{}
	for _, r := range res[0].Rows {
		col := str(r[0]) + " " + strings.ToUpper(str(r[1]))
		if r[2] == int64(1) {
			col += " NOT NULL"
		}
		sh.columns = append(sh.columns, col)
		if n, _ := r[3].(int64); n > 0 {
			pk[n] = str(r[0])
		}
	}
	var pkCols []string
	for i := int64(1); i <= int64(len(pk)); i++ {
		pkCols = append(pkCols, pk[i])
	}
	sh.pk = strings.Join(pkCols, ",")
	for _, r := range res[1].Rows {
		name, unique, origin := str(r[0]), r[1] == int64(1), str(r[2])
		var cols []string
		for _, c := range exec(t, db, stmt(`SELECT name FROM pragma_index_info(?) ORDER BY seqno`, name))[0].Rows {
			cols = append(cols, str(c[0]))
		}
		joined := strings.Join(cols, ",")
		switch origin {
		case "pk":
		case "u":
			sh.uniques[joined] = true
		default:
			sh.indexes[name] = indexDesc(joined, unique)
			if unique {
				sh.uniques[joined] = true
			}
		}
	}
	for _, r := range res[2].Rows {
		sh.fks[fk(storage.SQLite, str(r[0]), str(r[1]), str(r[2]), str(r[3]))] = true
	}
	return sh
}

func postgresShape(t *testing.T, db storage.DB, table string) *tableShape {
	sh := newShape()
	const cols = "(SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(%s) WITH ORDINALITY k(attnum, ord) " +
		"JOIN pg_attribute a ON a.attrelid = %s AND a.attnum = k.attnum)"
	res := exec(t, db,
		stmt("SELECT column_name, data_type, is_nullable FROM information_schema.columns "+
			"WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position", table),
		stmt("SELECT c.contype::text, "+fmt.Sprintf(cols, "c.conkey", "c.conrelid")+", COALESCE(f.relname::text, ''), "+
			"COALESCE("+fmt.Sprintf(cols, "c.confkey", "c.confrelid")+", ''), c.confdeltype::text "+
			"FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid LEFT JOIN pg_class f ON f.oid = c.confrelid "+
			"WHERE r.relname = ? AND r.relnamespace = current_schema()::regnamespace AND c.contype IN ('p', 'u', 'f')", table),
		stmt("SELECT i.relname::text, x.indisunique, "+fmt.Sprintf(cols, "x.indkey::int2[]", "x.indrelid")+", "+
			"EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) "+
			"FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class r ON r.oid = x.indrelid "+
			"WHERE r.relname = ? AND r.relnamespace = current_schema()::regnamespace", table),
	)
	for _, r := range res[0].Rows {
		col := str(r[0]) + " " + strings.ToUpper(str(r[1]))
		if r[2] == "NO" {
			col += " NOT NULL"
		}
		sh.columns = append(sh.columns, col)
	}
	actions := map[string]string{"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
	for _, r := range res[1].Rows {
		switch str(r[0]) {
		case "p":
			sh.pk = str(r[1])
		case "u":
			sh.uniques[str(r[1])] = true
		case "f":
			sh.fks[fk(storage.Postgres, str(r[1]), str(r[2]), str(r[3]), actions[str(r[4])])] = true
		}
	}
	for _, r := range res[2].Rows {
		if r[3] == int64(1) {
			continue // the index behind a primary key or unique constraint
		}
		unique := r[1] == int64(1)
		sh.indexes[str(r[0])] = indexDesc(str(r[2]), unique)
		if unique {
			sh.uniques[str(r[2])] = true
		}
	}
	return sh
}

var displayWidth = regexp.MustCompile(`^(tinyint|smallint|mediumint|int|bigint)\(\d+\)`)

func mysqlShape(t *testing.T, db storage.DB, s *storage.Schema, table string) *tableShape {
	sh := newShape()
	res := exec(t, db,
		stmt("SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "+
			"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", table),
		stmt("SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS "+
			"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX", table),
		stmt("SELECT k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.DELETE_RULE "+
			"FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r "+
			"ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME "+
			"WHERE k.TABLE_SCHEMA = DATABASE() AND k.TABLE_NAME = ? AND k.REFERENCED_TABLE_NAME IS NOT NULL", table),
		stmt("SELECT ENGINE, TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table),
	)
	for _, r := range res[0].Rows {
		typ := displayWidth.ReplaceAllString(strings.ToLower(str(r[1])), "$1")
		col := str(r[0]) + " " + strings.ToUpper(typ)
		if str(r[2]) == "NO" {
			col += " NOT NULL"
		}
		sh.columns = append(sh.columns, col)
	}
	type index struct {
		cols   []string
		unique bool
	}
	indexes := map[string]*index{}
	var names []string
	for _, r := range res[1].Rows {
		name := str(r[0])
		ix := indexes[name]
		if ix == nil {
			ix = &index{unique: r[1] == int64(0)}
			indexes[name] = ix
			names = append(names, name)
		}
		ix.cols = append(ix.cols, str(r[2]))
	}
	fkCols := map[string]bool{}
	for _, r := range res[2].Rows {
		sh.fks[fk(storage.MySQL, str(r[0]), str(r[1]), str(r[2]), str(r[3]))] = true
		fkCols[str(r[0])] = true
	}
	schemaIndexes := map[string]bool{}
	for _, ix := range s.Indexes {
		schemaIndexes[ix.Name] = true
	}
	for _, name := range names {
		ix := indexes[name]
		joined := strings.Join(ix.cols, ",")
		switch {
		case name == "PRIMARY":
			sh.pk = joined
		case schemaIndexes[name]:
			sh.indexes[name] = indexDesc(joined, ix.unique)
			if ix.unique {
				sh.uniques[joined] = true
			}
		case ix.unique:
			sh.uniques[joined] = true // a column's UNIQUE constraint
		case len(ix.cols) == 1 && fkCols[ix.cols[0]]:
			// InnoDB adds an index for a foreign key no other index starts with.
		default:
			sh.indexes[name] = indexDesc(joined, false)
		}
	}
	if len(res[3].Rows) == 1 {
		if engine, coll := str(res[3].Rows[0][0]), str(res[3].Rows[0][1]); engine != "InnoDB" || coll != "utf8mb4_bin" {
			t.Errorf("%s: engine %s, collation %s; want InnoDB, utf8mb4_bin", table, engine, coll)
		}
	}
	return sh
}
