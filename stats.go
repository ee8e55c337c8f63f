package kavach

import (
	"context"

	"github.com/kavachdev/kavach/storage"
)

// Stats is the dashboard summary, in the reference's shape.
type Stats struct {
	Agents struct {
		Total   int64 `json:"total"`
		Active  int64 `json:"active"`
		Revoked int64 `json:"revoked"`
		Expired int64 `json:"expired"`
	} `json:"agents"`
	Users struct {
		Total int64 `json:"total"` // distinct agent owners
	} `json:"users"`
	Audit struct {
		Last24h     int64 `json:"last24h"`
		Allowed     int64 `json:"allowed"`
		Denied      int64 `json:"denied"`
		RateLimited int64 `json:"rateLimited"`
	} `json:"audit"`
}

// Stats counts agents by effective status and the last 24 hours of decisions, in one round trip.
func (k *Kavach) Stats(ctx context.Context) (*Stats, error) {
	now := k.now().Unix()
	res, err := k.db.Exec(ctx,
		storage.Stmt{
			SQL: "SELECT COUNT(*), " +
				"COALESCE(SUM(CASE WHEN status = 'active' AND (expires_at IS NULL OR expires_at > ?) THEN 1 ELSE 0 END), 0), " +
				"COALESCE(SUM(CASE WHEN status = 'revoked' THEN 1 ELSE 0 END), 0), " +
				"COALESCE(SUM(CASE WHEN status = 'expired' OR (status = 'active' AND expires_at <= ?) THEN 1 ELSE 0 END), 0), " +
				"COUNT(DISTINCT owner_id) FROM kavach_agents",
			Args: []any{now, now},
		},
		storage.Stmt{
			SQL: "SELECT COUNT(*), " +
				"COALESCE(SUM(CASE WHEN result = 'allowed' THEN 1 ELSE 0 END), 0), " +
				"COALESCE(SUM(CASE WHEN result = 'denied' THEN 1 ELSE 0 END), 0), " +
				"COALESCE(SUM(CASE WHEN result = 'rate_limited' THEN 1 ELSE 0 END), 0) " +
				"FROM kavach_audit_logs WHERE timestamp >= ?",
			Args: []any{now - 24*3600},
		},
	)
	if err != nil {
		return nil, storageError("reading dashboard stats", err)
	}
	a, l := res[0].Rows[0], res[1].Rows[0]
	s := &Stats{}
	s.Agents.Total, s.Agents.Active, s.Agents.Revoked, s.Agents.Expired = asInt(a[0]), asInt(a[1]), asInt(a[2]), asInt(a[3])
	s.Users.Total = asInt(a[4])
	s.Audit.Last24h, s.Audit.Allowed, s.Audit.Denied, s.Audit.RateLimited = asInt(l[0]), asInt(l[1]), asInt(l[2]), asInt(l[3])
	return s, nil
}
