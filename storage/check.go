package storage

import (
	"context"
	"errors"
	"sync/atomic"
)

// OpenChecker is implemented by the backends of database servers. Their opener contacts
// nothing: Open checks that the server answers a query, at once or, with Config.Lazy, with the
// first batch, and OpenError turns that check's failure into one line saying what is wrong
// (unreachable, login refused, no such database) and what to do.
type OpenChecker interface {
	DB
	OpenError(err error) error
}

// check makes the server check of Open for a backend that wants it.
func check(ctx context.Context, db DB, lazy bool) (DB, error) {
	oc, ok := db.(OpenChecker)
	if !ok {
		return db, nil
	}
	if lazy {
		return &firstUse{DB: db, openErr: oc.OpenError}, nil
	}
	if _, err := db.Exec(ctx, Stmt{SQL: "SELECT 1"}); err != nil {
		db.Close()
		return nil, oc.OpenError(err)
	}
	return db, nil
}

// firstUse is a database opened with Config.Lazy: until one of its batches succeeds, a failure
// of the connection rather than of a statement (ErrUnavailable, or an error that names no
// statement) goes through openErr, so that it reads as the same failure at open would have.
// Once a batch has succeeded, errors pass through unchanged.
type firstUse struct {
	DB
	openErr func(error) error
	ok      atomic.Bool
}

func (f *firstUse) Exec(ctx context.Context, stmts ...Stmt) ([]Result, error) {
	res, err := f.DB.Exec(ctx, stmts...)
	if f.ok.Load() {
		return res, err
	}
	if err == nil {
		f.ok.Store(true)
		return res, nil
	}
	var se *StmtError
	if errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnavailable) && errors.As(err, &se) {
		return nil, err
	}
	return nil, f.openErr(err)
}

// PlansEveryStatement reports whether db's server parses and plans every statement it is sent
// and keeps nothing prepared between requests, as a libSQL server does over HTTP and WebSocket.
// A writer then sends few, large statements (one INSERT for many rows) rather than many small
// ones: measured on sqld, a statement costs it about 40 µs however little it does.
func PlansEveryStatement(db DB) bool {
	if f, ok := db.(*firstUse); ok {
		db = f.DB
	}
	p, ok := db.(interface{ PlansEveryStatement() bool })
	return ok && p.PlansEveryStatement()
}
