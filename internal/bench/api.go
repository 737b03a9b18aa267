package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// apiClient reads the backend's HTTP API, as the dashboard does: what it
// answers is what an operator would see.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

func newAPIClient(base, token string) *apiClient {
	return &apiClient{base: base, token: token, hc: &http.Client{Timeout: 10 * time.Second}}
}

func (c *apiClient) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// execResults is the number of results of execID in SQLite (the counters
// of GET /api/executions, one cheap indexed query however many PCs).
func (c *apiClient) execResults(ctx context.Context, execID string) (int, error) {
	var page struct {
		Executions []struct {
			ExecID  string `json:"exec_id"`
			Results int    `json:"results"`
		} `json:"executions"`
	}
	if err := c.get(ctx, "/api/executions?limit=50", &page); err != nil {
		return 0, err
	}
	for _, e := range page.Executions {
		if e.ExecID == execID {
			return e.Results, nil
		}
	}
	return 0, nil
}

// agentsSeen returns how many agents the backend knows and the oldest
// last_seen among them (when the backend received their last heartbeat).
func (c *apiClient) agentsSeen(ctx context.Context) (total int, oldest time.Time, err error) {
	var page struct {
		Agents []struct {
			LastSeen time.Time `json:"last_seen"`
		} `json:"agents"`
		Total int `json:"total"`
	}
	if err := c.get(ctx, "/api/agents?sort=last_seen&limit=1", &page); err != nil {
		return 0, time.Time{}, err
	}
	if len(page.Agents) > 0 {
		oldest = page.Agents[0].LastSeen
	}
	return page.Total, oldest, nil
}
