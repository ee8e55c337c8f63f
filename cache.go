package kavach

import (
	"encoding/binary"
	"strings"
	"sync"

	"github.com/kavachdev/kavach/policy"
)

// snapshot is what a decision needs about an agent: its row and compiled permissions.
type snapshot struct {
	row    agentRow
	set    *policy.Set
	setErr error // the stored permissions do not decode: every decision fails closed
}

// agentCache keeps snapshots of agents in memory, by id and by token hash, so a decision costs
// no database read. It never needs a TTL and is safe with several processes or nodes on one
// database: a decision made from a snapshot is recorded with an audit INSERT that only succeeds
// while the agent's version is still the snapshot's, and a decision is returned only after its
// audit row is written. When the insert finds the version moved on, the snapshot is dropped and
// the decision is made again from the database.
//
// A nil *agentCache is a valid, empty cache (hosts that build a Kavach per request).
type agentCache struct {
	mu     sync.RWMutex
	byID   map[string]*snapshot
	byHash map[string]*snapshot
	max    int
}

func newAgentCache(max int) *agentCache {
	return &agentCache{byID: map[string]*snapshot{}, byHash: map[string]*snapshot{}, max: max}
}

func (c *agentCache) get(id string) *snapshot {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	s := c.byID[id]
	c.mu.RUnlock()
	return s
}

func (c *agentCache) getByHash(h string) *snapshot {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	s := c.byHash[h]
	c.mu.RUnlock()
	return s
}

func (c *agentCache) put(s *snapshot) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if len(c.byID) >= c.max {
		// Drop an arbitrary tenth; entries come back on their next use.
		n := c.max / 10
		for id, old := range c.byID {
			delete(c.byID, id)
			delete(c.byHash, old.row.tokenHash)
			if n--; n <= 0 {
				break
			}
		}
	}
	if old := c.byID[s.row.id]; old != nil {
		delete(c.byHash, old.row.tokenHash)
	}
	c.byID[s.row.id] = s
	c.byHash[s.row.tokenHash] = s
	c.mu.Unlock()
}

// invalidate drops the agent's snapshot. Operations that change an agent call it so this process
// sees the change at once; other processes find out through the audit insert.
func (c *agentCache) invalidate(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if old := c.byID[id]; old != nil {
		delete(c.byHash, old.row.tokenHash)
		delete(c.byID, id)
	}
	c.mu.Unlock()
}

// compiledSets remembers compiled permission sets, process-wide, by the stored text of their
// rows, so that loading an agent whose permissions this process has compiled before costs a map
// lookup instead of parsing every pattern, action list and constraint again. Agents commonly
// share permission lists, and a WebAssembly host builds its core anew for every step, where
// compiling five permissions cost a third of an authorize (10 µs of 31).
//
// The key is the rows' content, each field length-prefixed, so a stale entry cannot exist: a set
// is immutable, and rows that compile differently have different keys. The memo starts over when
// its keys reach maxCompiledBytes (a compiled set takes about as much memory as its text).
var compiledSets = setMemo{m: map[string]compiledSet{}}

const maxCompiledBytes = 8 << 20

type setMemo struct {
	mu    sync.Mutex
	m     map[string]compiledSet
	bytes int // the keys' total length
}

type compiledSet struct {
	set *policy.Set
	err error // the rows do not decode or compile: decisions fail closed
}

// compile returns the set of permission rows (agent_id, resource, actions, constraints).
func (c *setMemo) compile(rows [][]any) (*policy.Set, error) {
	var buf [512]byte
	key := buf[:0]
	for _, r := range rows {
		for _, v := range r[1:4] { // resource, actions, constraints as permissionOf reads them
			s := asString(v)
			key = append(binary.AppendUvarint(key, uint64(len(s))), s...)
		}
	}
	c.mu.Lock()
	e, ok := c.m[string(key)]
	c.mu.Unlock()
	if ok {
		return e.set, e.err
	}
	perms := make([]Permission, 0, len(rows))
	for _, r := range rows {
		// The set outlives this load: its strings must not share memory with the rows, which
		// a step decodes in place in its envelope (the whole envelope would stay alive).
		p, err := permissionOf(strings.Clone(asString(r[1])), strings.Clone(asString(r[2])), asString(r[3]))
		if err != nil {
			e.err = err
			break
		}
		perms = append(perms, p)
	}
	if e.err == nil {
		e.set, e.err = policy.Compile(perms)
	}
	c.mu.Lock()
	if c.bytes+len(key) > maxCompiledBytes {
		clear(c.m)
		c.bytes = 0
	}
	if _, ok := c.m[string(key)]; !ok {
		c.m[string(key)] = e
		c.bytes += len(key)
	}
	c.mu.Unlock()
	return e.set, e.err
}
