-- Fleet-wide inventory search (GET /api/inventory, store.SearchInventory)
-- reads one section of every PC in pc_id order. The primary key
-- (pc_id, section) serves that order too, but walks every section's entry;
-- this index visits only the searched section's, which halves a search of
-- the small sections (os, hw, net) at 10,000 PCs
-- (BenchmarkSearchInventory10k). Item contents are JSON and cannot be
-- indexed here; the search pre-filters them on the raw text instead.

-- +goose Up
CREATE INDEX inventory_latest_section ON inventory_latest (section, pc_id);

-- +goose Down
DROP INDEX inventory_latest_section;
