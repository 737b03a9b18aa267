package store

import (
	"context"
	"fmt"
)

// VersionCount is how many agents report one agent_version.
type VersionCount struct {
	// Version is the agent_version of the newest heartbeat; empty for
	// agents that did not report one.
	Version string `json:"agent_version"`
	Agents  int    `json:"agents"`
	Online  int    `json:"online"`
}

// VersionCounts returns the agents per agent_version (and how many of them
// are online now), most common first, then by version: the live progress
// of a rollout. One indexed GROUP BY over agents.
func (s *Store) VersionCounts(ctx context.Context) ([]VersionCount, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT agent_version, count(*), coalesce(sum(`+offlineAtExpr+` > ?), 0)
		FROM agents GROUP BY agent_version ORDER BY count(*) DESC, agent_version`, s.now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("store: version counts: %w", err)
	}
	defer rows.Close()
	out := []VersionCount{}
	for rows.Next() {
		var v VersionCount
		if err := rows.Scan(&v.Version, &v.Agents, &v.Online); err != nil {
			return nil, fmt.Errorf("store: version counts: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: version counts: %w", err)
	}
	return out, nil
}
