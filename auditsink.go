package kavach

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kavachdev/kavach/storage"
)

// AuditSink records audit rows. Append takes the statements that record one row, which must be
// executed together and in order; it returns once they have been durably executed, with the
// RowsAffected of the first (a conditional insert may write nothing), or once they have been
// recorded as effects that the host promises to execute (the WebAssembly build returns its
// effects with the operation's result and reports 1).
type AuditSink interface {
	Append(ctx context.Context, stmts ...storage.Stmt) (rowsAffected int64, err error)
}

// groupCommit is the native AuditSink: concurrent appends share one batch, one transaction and
// one commit, and each caller returns only after the batch holding its row has committed.
//
// There is no background goroutine. The first caller to find no batch in flight becomes the
// leader and commits everything queued, its own row included; callers arriving meanwhile queue
// and wait. When the leader's batch is done it hands leadership to the first waiter, whose row
// heads the next batch. A lone caller therefore commits its own row directly, with no hand-off
// between goroutines, and under load batches grow with the number of waiting callers.
type groupCommit struct {
	db       storage.DB
	maxBatch int
	timeout  time.Duration
	// inflight counts decisions between their start and their audit row (maintained by
	// Kavach.authorize). A leader that sees fewer rows queued than decisions in flight lets the
	// others run for a moment first, so they join its batch: a commit costs about as much for
	// ten rows as for one, since each row mostly dirties its own index page either way.
	inflight atomic.Int32

	mu      sync.Mutex
	queue   []*pending
	leading bool
	closed  bool

	// The leader's scratch space.
	stmts []storage.Stmt
	batch []*pending
	self  *pending // the leader's own row, which it does not wake
}

// leadBudget bounds how long one caller keeps committing other callers' rows.
const leadBudget = 2 * time.Millisecond

type pending struct {
	stmts []storage.Stmt
	n     int64
	err   error
	wake  chan bool // receives false when done, true when made leader
}

var pendingPool = sync.Pool{New: func() any { return &pending{wake: make(chan bool, 1)} }}

func newGroupCommit(db storage.DB) *groupCommit {
	return &groupCommit{db: db, maxBatch: 256, timeout: 30 * time.Second}
}

func (g *groupCommit) Append(ctx context.Context, stmts ...storage.Stmt) (int64, error) {
	p := pendingPool.Get().(*pending)
	p.stmts, p.n, p.err = stmts, 0, nil
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		pendingPool.Put(p)
		return 0, storage.ErrClosed
	}
	g.queue = append(g.queue, p)
	if g.leading {
		g.mu.Unlock()
		if lead := <-p.wake; lead {
			g.self = p
			g.lead(ctx)
		}
	} else {
		g.leading = true
		g.self = p
		g.mu.Unlock()
		g.lead(ctx)
	}
	n, err := p.n, p.err
	p.stmts = nil
	pendingPool.Put(p)
	return n, err
}

// lead commits batches from the head of the queue, the first holding the caller's own row.
// While more rows are waiting it keeps committing, for up to leadBudget, instead of handing over
// at once: a hand-off costs a goroutine wake-up, during which the database would sit idle.
// Then it passes leadership to the first waiter, so no caller leads for long.
func (g *groupCommit) lead(ctx context.Context) {
	deadline := time.Now().Add(leadBudget)
	for {
		g.gather()
		g.mu.Lock()
		n := min(len(g.queue), g.maxBatch)
		batch := append(g.batch[:0], g.queue[:n]...)
		rest := copy(g.queue, g.queue[n:])
		clear(g.queue[rest:])
		g.queue = g.queue[:rest]
		g.mu.Unlock()

		g.commit(ctx, batch)
		for _, p := range batch {
			if p != g.self {
				p.wake <- false
			}
		}
		clear(batch)
		g.batch = batch

		g.mu.Lock()
		if len(g.queue) == 0 {
			g.leading = false
			g.mu.Unlock()
			return
		}
		if time.Now().After(deadline) {
			g.queue[0].wake <- true
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
}

// gather yields to other goroutines, a few times at most, while decisions in flight have not yet
// queued their rows. A lone caller never waits.
func (g *groupCommit) gather() {
	for range maxGatherYields {
		g.mu.Lock()
		queued := len(g.queue)
		g.mu.Unlock()
		if queued >= g.maxBatch || queued >= int(g.inflight.Load()) {
			return
		}
		runtime.Gosched()
	}
}

const maxGatherYields = 8

func (g *groupCommit) commit(ctx context.Context, batch []*pending) {
	// A caller giving up must not cancel the other callers' rows.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
	defer cancel()
	g.stmts = g.stmts[:0]
	for _, p := range batch {
		g.stmts = append(g.stmts, p.stmts...)
	}
	res, err := g.db.Exec(ctx, g.stmts...)
	clear(g.stmts)
	if err == nil {
		i := 0
		for _, p := range batch {
			p.n = res[i].RowsAffected
			i += len(p.stmts)
		}
		return
	}
	if len(batch) == 1 {
		batch[0].err = err
		return
	}
	// One bad row must not deny everyone in its batch: retry each row alone.
	for _, p := range batch {
		res, err := g.db.Exec(ctx, p.stmts...)
		if err != nil {
			p.err = err
		} else {
			p.n = res[0].RowsAffected
		}
	}
}

// Close makes later appends fail; appends in flight complete.
func (g *groupCommit) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	return nil
}
