package storage

import (
	"context"
	"errors"
	"sync/atomic"
)

// CheckOnFirstUse returns db for a backend opened with Config.Lazy: until one of its batches
// succeeds, a failure of the connection rather than of a statement (ErrUnavailable, or an error
// that names no statement) goes through openErr, so that it reads as the same failure at open
// would have. Once a batch has succeeded, errors pass through unchanged.
func CheckOnFirstUse(db DB, openErr func(error) error) DB {
	return &firstUse{DB: db, openErr: openErr}
}

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
