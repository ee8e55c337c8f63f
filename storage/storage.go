// Package storage is the narrow contract between the Kavach core and the databases it runs on.
//
// Every backend implements one method that matters: run a batch of statements atomically and
// return one result per statement. Batches, not interactive transactions: that is what Turso's
// HTTP protocol, a pgx batch and a MySQL transaction all do well, and what an asynchronous edge
// host can do in one round trip. Operations that must be single-use or must not lose updates are
// written as conditional statements (UPDATE … WHERE used_at IS NULL, INSERT … SELECT … WHERE …)
// whose RowsAffected says who won.
//
// The core writes its SQL once, with ? placeholders; a backend rewrites placeholders if its
// server needs another form and normalises every value it returns to one of int64, float64,
// string, []byte or nil.
package storage

import (
	"context"
	"fmt"
)

// Stmt is one SQL statement with positional arguments. The SQL uses ? placeholders; argument
// values must be int64, int, int32, float64, string, []byte, bool or nil.
type Stmt struct {
	SQL  string
	Args []any
}

// NormalizeArg converts an argument of the contract to one of int64, float64, string, []byte
// or nil, for backends that bind through a driver: ints widen to int64, booleans become 0 and 1
// (the schema stores them in integer columns, as SQLite does), and a nil []byte is NULL.
func NormalizeArg(a any) (any, error) {
	switch v := a.(type) {
	case nil, int64, float64, string:
		return v, nil
	case []byte:
		if v == nil {
			return nil, nil
		}
		return v, nil
	case int:
		return int64(v), nil
	case int32:
		return int64(v), nil
	case bool:
		if v {
			return int64(1), nil
		}
		return int64(0), nil
	}
	return nil, fmt.Errorf("argument of unsupported type %T (use int64, float64, string, []byte, bool or nil)", a)
}

// Result is what one statement of a batch produced. Columns and Rows are set for statements that
// return rows (they are set, possibly with zero rows, for every SELECT); RowsAffected is set for
// statements that change rows. Row values are int64, float64, string, []byte or nil.
type Result struct {
	Columns []string
	Rows    [][]any
	// RowsAffected is the number of rows an INSERT, UPDATE or DELETE wrote. The core relies on
	// it only where every backend agrees: 0 when a conditional statement's condition did not
	// hold. Backends differ where a statement matches a row but leaves its values unchanged:
	// SQLite and Postgres count the row, MySQL does not (found-rows is off, so that a no-op
	// upsert reports 0), and a MySQL upsert that updates counts 2.
	RowsAffected int64
}

// DB is a database the core can run batches against.
type DB interface {
	// Dialect tells the core which SQL forms the server understands.
	Dialect() Dialect
	// Exec runs stmts as one atomic batch: either every statement takes effect or none does.
	// It returns one Result per statement. A backend sends the batch in one round trip where its
	// protocol allows. Errors from a statement are wrapped in a *StmtError naming its index.
	Exec(ctx context.Context, stmts ...Stmt) ([]Result, error)
	// Close releases the database. Exec must not be called after Close.
	Close() error
}

// Dialect is the SQL family a backend speaks. The core asks it for the few forms that differ.
type Dialect int

const (
	SQLite Dialect = iota + 1 // embedded SQLite and remote libSQL/Turso
	Postgres
	MySQL // MySQL 8 and MariaDB 10.11
)

// String returns the dialect's name as used in configuration and conformance vectors.
func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	case MySQL:
		return "mysql"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

// ParseDialect is the inverse of Dialect.String.
func ParseDialect(s string) (Dialect, error) {
	switch s {
	case "sqlite":
		return SQLite, nil
	case "postgres":
		return Postgres, nil
	case "mysql":
		return MySQL, nil
	}
	return 0, fmt.Errorf("storage: unknown dialect %q (valid: sqlite, postgres, mysql)", s)
}

// OnConflictDoNothing returns the clause that turns an INSERT into a no-op when a row with the
// same unique key exists. The clause goes after the VALUES or SELECT part; keyCol is any column
// of the conflicting key (MySQL needs one to name in its no-op update).
func (d Dialect) OnConflictDoNothing(keyCol string) string {
	if d == MySQL {
		return " ON DUPLICATE KEY UPDATE " + keyCol + " = " + keyCol
	}
	return " ON CONFLICT DO NOTHING"
}

// OnConflictUpdate returns the upsert clause for a conflict on the unique key cols. Each
// assignment is written as "col = <expr>" where <expr> may use excludedRef(col) for the value
// the INSERT tried to write and currentRef(table, col) for the stored one.
func (d Dialect) OnConflictUpdate(cols []string, assignments string) string {
	if d == MySQL {
		return " ON DUPLICATE KEY UPDATE " + assignments
	}
	key := ""
	for i, c := range cols {
		if i > 0 {
			key += ", "
		}
		key += c
	}
	return " ON CONFLICT (" + key + ") DO UPDATE SET " + assignments
}

// Current returns how an upsert's update part refers to the stored value of table.col.
func (d Dialect) Current(table, col string) string {
	if d == MySQL {
		return col
	}
	return table + "." + col
}

// FromDual returns what a SELECT without tables needs before a WHERE clause: MySQL insists on
// "FROM DUAL", the others need nothing.
func (d Dialect) FromDual() string {
	if d == MySQL {
		return " FROM DUAL"
	}
	return ""
}
