package api

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// inventorySearchParams are the query parameters GET /api/inventory knows.
// Anything else is refused: a misspelt "mtach=exact" would otherwise
// quietly search with the default and answer a different question.
var inventorySearchParams = []string{"section", "field", "value", "match", "pc", "limit", "cursor"}

// searchInventory is GET /api/inventory?section=&field=&value=[&match=
// exact|prefix|contains][&pc=][&limit=][&cursor=]: the PCs whose latest
// inventory section has an item whose field matches value (see
// store.InventoryQuery), ordered by pc_id, limit PCs per page (100, at
// most 1,000). next_cursor is passed back as cursor for the next page; it
// is empty on the last one.
func (s *Server) searchInventory(w http.ResponseWriter, r *http.Request, _ apiauth.Identity) error {
	q := r.URL.Query()
	var unknown []string
	for k := range q {
		if !slices.Contains(inventorySearchParams, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return errf(http.StatusBadRequest, "bad_request", "unknown query parameter(s) %s (known: %s)",
			strings.Join(unknown, ", "), strings.Join(inventorySearchParams, ", "))
	}
	limit, err := queryInt(r, "limit", 100, 1000)
	if err != nil {
		return err
	}
	pc, cursor := q.Get("pc"), q.Get("cursor")
	if pc != "" && !wire.ValidToken(pc) {
		return errf(http.StatusBadRequest, "bad_request", "pc %q is not a valid pc_id", pc)
	}
	// The cursor is the last pc_id of the previous page.
	if cursor != "" && !wire.ValidToken(cursor) {
		return errf(http.StatusBadRequest, "bad_request", "cursor %q is not one this endpoint returned", cursor)
	}
	match := trimLower(q.Get("match"))
	if match == "" {
		match = store.MatchContains
	}
	page, err := s.d.Store.SearchInventory(r.Context(), store.InventoryQuery{
		Section: q.Get("section"), Field: q.Get("field"), Value: q.Get("value"), Match: match,
		PCID: pc, After: cursor, Limit: limit,
	})
	if errors.Is(err, store.ErrInvalid) {
		msg, _ := strings.CutPrefix(err.Error(), store.ErrInvalid.Error()+": ")
		return errf(http.StatusBadRequest, "bad_request", "%s", msg)
	}
	if err != nil {
		return err
	}
	section, _ := store.SearchSection(q.Get("section"))
	hits := page.Hits
	hits = orEmpty(hits)
	writeJSON(w, http.StatusOK, map[string]any{
		"section": section, "field": q.Get("field"), "value": q.Get("value"), "match": match,
		"matches": hits, "next_cursor": page.Next,
	})
	return nil
}
