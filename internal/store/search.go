package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

// Match modes of an inventory search. Every mode ignores ASCII case (SQLite's
// LIKE), like the agents list's q filter.
const (
	MatchExact    = "exact"
	MatchPrefix   = "prefix"
	MatchContains = "contains"
)

// searchSections maps the section names an operator may type to the section
// tokens agents publish (inventory.<pc>.<section>). Searching an unknown
// section is refused rather than answered with nothing: a typo must not read
// as "no PC has it".
var searchSections = map[string]string{
	"hw": wire.SectionHardware, "hardware": wire.SectionHardware,
	"os":  wire.SectionOS,
	"net": wire.SectionNetwork, "network": wire.SectionNetwork,
	"sw": wire.SectionSoftware, "software": wire.SectionSoftware,
}

// SearchSection returns the stored section token for a section name or alias
// (hw|hardware, os, net|network, sw|software).
func SearchSection(name string) (string, error) {
	if s, ok := searchSections[strings.ToLower(name)]; ok {
		return s, nil
	}
	if name == "" {
		return "", invalid("section is required (hw|hardware, os, net|network, sw|software)")
	}
	return "", invalid("unknown section %q (hw|hardware, os, net|network, sw|software)", name)
}

// Limits of a search; the API passes its query parameters through.
const (
	searchMaxField = 64
	searchMaxValue = 256
	// SearchMaxItems is the most matching items returned per PC (a
	// "contains e" over installed software could otherwise return a
	// PC's whole program list); MoreItems flags the cut.
	SearchMaxItems = 100
)

// checkField allows [A-Za-z0-9_] only: the field name is compared with JSON
// keys and with the tail of JSON paths, where anything else would need
// quoting, and it keeps the name out of reach of SQL and path syntax.
func checkField(f string) error {
	if f == "" {
		return invalid("field is required (a JSON key of the section's items, like name or version)")
	}
	if len(f) > searchMaxField {
		return invalid("field is longer than %d characters", searchMaxField)
	}
	for _, c := range f {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return invalid("field %q may contain only letters, digits and '_'", f)
		}
	}
	return nil
}

// InventoryQuery is a fleet-wide search of the latest inventory: which PCs
// have, in Section, an item whose Field matches Value.
//
// A section is a JSON object (os, hw) or holds lists of objects (sw's
// programs and hotfixes, net's interfaces, hw's disks); a section that is a
// bare list is handled the same way. Every object anywhere in the section
// is an item: an item matches when its member Field is a string, a whole
// number or a boolean matching Value, or a list of such values one of which
// matches (net's ipv4). So field=name in sw finds programs, field=model in
// hw finds the system model (the item is the whole section) and the CPU
// model (the item is the cpu object).
type InventoryQuery struct {
	Section string // a name or alias accepted by SearchSection
	Field   string // a JSON key: [A-Za-z0-9_]+
	Value   string
	// Match is exact, prefix or contains (the default).
	Match string
	// PCID, when set, searches that PC only.
	PCID string
	// After is the cursor: the pc_id of the last PC of the previous page.
	After string
	// Limit is the number of PCs per page: 100 by default, at most 1,000.
	Limit int
}

// InventoryItem is one matching item and where it sits in its section
// ("$.programs[12]"; "$" is the section itself).
type InventoryItem struct {
	Path string          `json:"path"`
	Data json.RawMessage `json:"data"`
}

// InventoryHit is one PC with at least one matching item.
type InventoryHit struct {
	PCID        string          `json:"pc_id"`
	Section     string          `json:"section"`
	CollectedAt time.Time       `json:"collected_at"`
	ConfirmedAt time.Time       `json:"confirmed_at"`
	Items       []InventoryItem `json:"items"`
	// MoreItems: the PC has more than SearchMaxItems matching items and
	// only the first ones are listed.
	MoreItems bool `json:"more_items,omitempty"`
}

// InventoryPage is one page of hits ordered by pc_id. Next is the cursor
// of the following page (InventoryQuery.After), empty on the last page.
type InventoryPage struct {
	Hits []InventoryHit
	Next string
}

// matchPattern builds the LIKE pattern of a match mode.
func matchPattern(mode, value string) (string, error) {
	esc := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(value)
	switch mode {
	case MatchExact:
		return esc, nil
	case MatchPrefix:
		return esc + "%", nil
	case "", MatchContains:
		return "%" + esc + "%", nil
	}
	return "", invalid("match %q: expected exact, prefix or contains", mode)
}

// rawPatterns are LIKE patterns over a section's raw JSON text, one of
// which every section holding a match must contain: the value as plain
// UTF-8 text and, when it differs, the value as encoding/json (the agent)
// escapes it (quotes, backslashes and control characters; <, > and & as
// \u003c, \u003e, \u0026). A section containing neither is discarded
// before any JSON is parsed. The second is "" when not needed. This
// assumes what Go's and Rust's encoders do: non-ASCII text is written as
// UTF-8, never as \u escapes.
func rawPatterns(value string) (string, string) {
	verbatim, _ := matchPattern(MatchContains, value)
	b, err := json.Marshal(value)
	if err != nil || len(b) < 2 {
		return verbatim, ""
	}
	escaped := string(b[1 : len(b)-1])
	if escaped == value {
		return verbatim, ""
	}
	e, _ := matchPattern(MatchContains, escaped)
	return verbatim, e
}

// searchSQL finds the matching scalars with json_tree, which walks a
// section once and reports every value with its key and the path of its
// container. A scalar whose key is the field belongs to the item at its
// path; an element of a list whose key is the field belongs to the item
// holding the list (path minus ".<field>"). Reals and nulls never match
// (inventory has none worth searching, and a real's text in the JSON may
// differ from SQLite's rendering, which would break the raw pre-filter).
//
// The pre-filter (?6, ?7: rawPatterns) is a LIKE over the raw JSON text:
// a value absent from the text cannot match, and most sections are
// discarded without being parsed. It is what keeps a search over 10,000
// PCs' software lists fast (see BenchmarkSearchInventory10k): reading the
// text costs about a tenth of walking it with json_tree.
//
// Rows come out in pc_id order straight from the index (section, pc_id)
// of migration 00002 (only the items of one PC are sorted), so the caller
// reads only as far as one page needs and the cursor is a range seek.
const searchSQL = `
SELECT pc_id, collected_at, confirmed_at, item, json_extract(data, item) FROM (
	SELECT l.pc_id, l.collected_at, l.confirmed_at, l.data, t.id AS node,
		CASE WHEN t.key = ?3 THEN t.path ELSE substr(t.path, 1, length(t.path) - length(?4)) END AS item
	FROM inventory_latest AS l, json_tree(l.data) AS t
	WHERE l.section = ?1 AND l.pc_id > ?2 %[1]s
		AND (l.data LIKE ?6 ESCAPE '\' OR (?7 <> '' AND l.data LIKE ?7 ESCAPE '\'))
		AND t.type IN ('text', 'integer', 'true', 'false')
		AND (t.key = ?3 OR (typeof(t.key) = 'integer' AND substr(t.path, -length(?4)) = ?4))
		AND (CASE t.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE t.atom END) LIKE ?5 ESCAPE '\'
)
ORDER BY pc_id, node`

// SearchInventory runs q (see InventoryQuery). Bad input is ErrInvalid
// with a message naming the parameter.
func (s *Store) SearchInventory(ctx context.Context, q InventoryQuery) (InventoryPage, error) {
	section, err := SearchSection(q.Section)
	if err != nil {
		return InventoryPage{}, err
	}
	if err := checkField(q.Field); err != nil {
		return InventoryPage{}, err
	}
	switch {
	case q.Value == "":
		return InventoryPage{}, invalid("value is required")
	case len(q.Value) > searchMaxValue:
		return InventoryPage{}, invalid("value is longer than %d bytes", searchMaxValue)
	}
	pattern, err := matchPattern(q.Match, q.Value)
	if err != nil {
		return InventoryPage{}, err
	}
	pre, preEscaped := rawPatterns(q.Value)
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	args := []any{section, q.After, q.Field, "." + q.Field, pattern, pre, preEscaped}
	pcCond := ""
	if q.PCID != "" {
		pcCond = "AND l.pc_id = ?8"
		args = append(args, q.PCID)
	}
	rows, err := s.r.QueryContext(ctx, fmt.Sprintf(searchSQL, pcCond), args...)
	if err != nil {
		return InventoryPage{}, fmt.Errorf("store: inventory search: %w", err)
	}
	defer rows.Close()
	var page InventoryPage
	var cur *InventoryHit
	for rows.Next() {
		var pc, path string
		var collected, confirmed int64
		var data sql.NullString
		if err := rows.Scan(&pc, &collected, &confirmed, &path, &data); err != nil {
			return InventoryPage{}, fmt.Errorf("store: inventory search: %w", err)
		}
		if cur == nil || cur.PCID != pc {
			if len(page.Hits) == limit {
				// A PC beyond the page: there is a next page, and
				// closing the rows here stops the scan.
				page.Next = page.Hits[len(page.Hits)-1].PCID
				break
			}
			page.Hits = append(page.Hits, InventoryHit{PCID: pc, Section: section,
				CollectedAt: msTime(collected), ConfirmedAt: msTime(confirmed), Items: []InventoryItem{}})
			cur = &page.Hits[len(page.Hits)-1]
		}
		// Two matching elements of one list (two addresses in one
		// interface's ipv4) name the same item once.
		if n := len(cur.Items); n > 0 && cur.Items[n-1].Path == path {
			continue
		}
		if len(cur.Items) == SearchMaxItems {
			cur.MoreItems = true
			continue
		}
		cur.Items = append(cur.Items, InventoryItem{Path: path, Data: json.RawMessage(data.String)})
	}
	if err := rows.Err(); err != nil {
		return InventoryPage{}, fmt.Errorf("store: inventory search: %w", err)
	}
	return page, nil
}
