package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Migration upgrades a deployed database from Version-1 to Version. Its statements are written
// for dialect d; they run in one batch together with the row that records the version.
//
// A fresh database never runs migrations: it gets the current schema.sql directly and every
// version is recorded as applied. Migrations exist so that databases created by an older Kavach
// gain later columns and tables; CREATE TABLE IF NOT EXISTS alone cannot add a column.
type Migration struct {
	Version int
	Name    string
	Stmts   func(d Dialect) []string
}

// VersionTable records which migrations a database has had.
const VersionTable = "kavach_schema_version"

// Migrate brings db to the schema s plus migrations, whose last Version is the current one; now
// (Unix seconds) is recorded as each version's applied_at.
// Running it twice is a no-op, and two processes running it at once against one database both
// succeed: statements are idempotent, the version rows are written with ON CONFLICT DO NOTHING,
// and a batch that loses a race is retried after re-reading the version.
func Migrate(ctx context.Context, db DB, s *Schema, migrations []Migration, now int64) error {
	d := db.Dialect()
	latest := 0
	for i, m := range migrations {
		if m.Version != i+1 {
			return fmt.Errorf("storage: migration %d (%s) is out of sequence", m.Version, m.Name)
		}
		latest = m.Version
	}
	vt := s.Table(VersionTable)
	if vt == nil {
		return fmt.Errorf("storage: schema has no %s table", VersionTable)
	}
	for attempt := 0; ; attempt++ {
		res, err := db.Exec(ctx, withMigrationLock(d, []Stmt{{SQL: s.createTable(d, vt)}, {SQL: "SELECT MAX(version) FROM " + VersionTable}})...)
		if err != nil {
			return fmt.Errorf("storage: reading schema version: %w", err)
		}
		current := 0
		if last := res[len(res)-1]; len(last.Rows) == 1 {
			if v, ok := last.Rows[0][0].(int64); ok {
				current = int(v)
			}
		}
		if current > latest {
			return fmt.Errorf("storage: the database schema is at version %d, newer than this Kavach understands (%d); upgrade Kavach", current, latest)
		}
		if current == latest {
			return nil
		}
		var batch []Stmt
		if current == 0 {
			for _, ddl := range s.DDL(d) {
				batch = append(batch, Stmt{SQL: ddl})
			}
			for v := 1; v <= latest; v++ {
				batch = append(batch, recordVersion(d, v, now))
			}
		} else {
			m := migrations[current] // migrations[i] has Version i+1
			for _, sql := range m.Stmts(d) {
				batch = append(batch, Stmt{SQL: sql})
			}
			batch = append(batch, recordVersion(d, m.Version, now))
		}
		batch = withMigrationLock(d, batch)
		if _, err := db.Exec(ctx, batch...); err != nil {
			// Another process may have applied the same step first; re-read and continue if so.
			if attempt < 3 {
				continue
			}
			return fmt.Errorf("storage: migrating schema from version %d: %w", current, err)
		}
	}
}

func recordVersion(d Dialect, v int, now int64) Stmt {
	return Stmt{
		SQL:  "INSERT INTO " + VersionTable + " (version, applied_at) VALUES (?, ?)" + d.OnConflictDoNothing("version"),
		Args: []any{int64(v), now},
	}
}

// withMigrationLock serialises concurrent migrators where the database's own transaction does
// not: Postgres can fail two concurrent CREATE TABLE IF NOT EXISTS with a unique violation in
// its catalog (even for the version table itself), so every batch that may create tables first
// takes a transaction-scoped advisory lock. MySQL needs no statement here: its backend
// serialises every batch containing DDL with a named lock, because MySQL commits DDL
// implicitly and cannot make such a batch atomic. SQLite serialises writers anyway.
func withMigrationLock(d Dialect, batch []Stmt) []Stmt {
	if d == Postgres {
		return append([]Stmt{{SQL: "SELECT pg_advisory_xact_lock(4242424242)"}}, batch...)
	}
	return batch
}

// SchemaError lists what a database lacks compared to the schema. It is returned by Verify.
type SchemaError struct {
	MissingTables  []string
	MissingColumns []string // table.column
	MissingViews   []string
}

func (e *SchemaError) Error() string {
	var parts []string
	if len(e.MissingTables) > 0 {
		parts = append(parts, "tables "+strings.Join(e.MissingTables, ", "))
	}
	if len(e.MissingColumns) > 0 {
		parts = append(parts, "columns "+strings.Join(e.MissingColumns, ", "))
	}
	if len(e.MissingViews) > 0 {
		parts = append(parts, "views "+strings.Join(e.MissingViews, ", "))
	}
	return "kavach: the database schema is incomplete: missing " + strings.Join(parts, "; ") +
		"; run `kavach migrate` or start without skipMigrations"
}

// Verify checks, without running any DDL, that every table and column of s, and every view of
// db's dialect, exists in db. It costs one round trip when the schema is complete. The error is
// a *SchemaError naming everything missing, or a storage error if the database could not be
// asked.
func Verify(ctx context.Context, db DB, s *Schema) error {
	probes := make([]Stmt, len(s.Tables))
	for i, t := range s.Tables {
		probes[i] = Stmt{SQL: "SELECT * FROM " + t.Name + " WHERE 1 = 0"}
	}
	var views []string
	for _, v := range s.Views {
		if v.Dialect == db.Dialect() {
			views = append(views, v.Name)
			probes = append(probes, Stmt{SQL: "SELECT * FROM " + v.Name + " WHERE 1 = 0"})
		}
	}
	res, err := db.Exec(ctx, probes...)
	if err == nil {
		return compareColumns(s, res)
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) || ctx.Err() != nil {
		return err
	}
	// Some probe failed: ask table by table to find the missing ones.
	se := &SchemaError{}
	res = make([]Result, len(s.Tables))
	for i, t := range s.Tables {
		r, err := db.Exec(ctx, probes[i])
		if err != nil {
			if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return err
			}
			se.MissingTables = append(se.MissingTables, t.Name)
			continue
		}
		res[i] = r[0]
	}
	if err := compareColumns(s, res); err != nil {
		se.MissingColumns = err.(*SchemaError).MissingColumns
	}
	for i, v := range views {
		if _, err := db.Exec(ctx, probes[len(s.Tables)+i]); err != nil {
			if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return err
			}
			se.MissingViews = append(se.MissingViews, v)
		}
	}
	return se
}

func compareColumns(s *Schema, res []Result) error {
	se := &SchemaError{}
	for i, t := range s.Tables {
		if res[i].Columns == nil {
			continue // table missing; reported by the caller
		}
		have := map[string]bool{}
		for _, c := range res[i].Columns {
			have[strings.ToLower(c)] = true
		}
		for _, c := range t.Columns {
			if !have[c.Name] {
				se.MissingColumns = append(se.MissingColumns, t.Name+"."+c.Name)
			}
		}
	}
	if len(se.MissingColumns) > 0 {
		return se
	}
	return nil
}
