package kavach

import (
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
