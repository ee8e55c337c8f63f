package storagetest

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"github.com/kavachdev/kavach/storage"
)

// LostAnswer wraps a database and loses the answer to one batch: the first with a statement
// that starts with Prefix. If Applied, the batch is applied first (the connection failed on the
// way back), otherwise it is not (it failed on the way out); either way Exec reports
// storage.ErrUnavailable, as a backend does when a connection fails after a batch was sent.
// Every other batch goes through. For tests of what the core does with a lost answer without a
// server to cut (Proxy.Mute does that on a real connection).
type LostAnswer struct {
	storage.DB
	Prefix  string
	Applied bool
	lost    atomic.Bool
}

// Lost reports whether a batch has lost its answer yet.
func (l *LostAnswer) Lost() bool { return l.lost.Load() }

func (l *LostAnswer) Exec(ctx context.Context, stmts ...storage.Stmt) ([]storage.Result, error) {
	for _, s := range stmts {
		if strings.HasPrefix(s.SQL, l.Prefix) && l.lost.CompareAndSwap(false, true) {
			if l.Applied {
				if _, err := l.DB.Exec(ctx, stmts...); err != nil {
					return nil, err
				}
			}
			return nil, storage.Classified(storage.ErrUnavailable, errors.New("connection reset by peer"))
		}
	}
	return l.DB.Exec(ctx, stmts...)
}
