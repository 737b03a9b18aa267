package fleetconfig

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseScopeKey(t *testing.T) {
	tests := []struct {
		key     string
		want    Scope
		display string
		err     string
	}{
		{key: "global", want: Scope{Kind: ScopeGlobal}, display: "global"},
		{key: "groups.canary", want: Scope{Kind: ScopeGroup, Name: "canary"}, display: "group canary"},
		{key: "pcs.PC-042", want: Scope{Kind: ScopePC, Name: "PC-042"}, display: "pc PC-042"},
		{key: "groups.a.b", err: "may contain only"},
		{key: "pcs.", err: "1-128 characters"},
		{key: "groups", err: "expected global, groups.<group> or pcs.<pc>"},
		{key: "Global", err: "expected global"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := ParseScopeKey(tt.key)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseScopeKey(%q) = %+v, %v; want an error with %q", tt.key, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want || got.Key() != tt.key || got.String() != tt.display {
				t.Fatalf("ParseScopeKey(%q) = %+v (key %s, %s), %v", tt.key, got, got.Key(), got.String(), err)
			}
		})
	}
	// Listings still classify an odd hand-written key (agents never read it).
	if sc, ok := ClassifyKey("groups.a.b"); !ok || sc.Kind != ScopeGroup || sc.Rank() != 1 {
		t.Fatalf("ClassifyKey(groups.a.b) = %+v %v", sc, ok)
	}
}

// TestValidateValueStoresWhatValidateStores: the API (JSON values) and the
// CLI (text values) must write identical bytes for the same setting.
func TestValidateValueStoresWhatValidateStores(t *testing.T) {
	tests := []struct {
		field string
		json  string // as the API receives it
		text  string // as `kanade config set` receives it
	}{
		{"heartbeat_interval", `"1m"`, "1m"},
		{"inventory_jitter", `"0s"`, "0s"},
		{"target_version", `"1.4.0+build_7"`, "1.4.0+build_7"},
		{"inventory_enabled", `false`, "false"},
		{"max_local_concurrent", ` 4 `, "4"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			fromJSON, err := ValidateValue(tt.field, json.RawMessage(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			fromText, err := Validate(tt.field, tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if string(fromJSON) != string(fromText) {
				t.Fatalf("API stores %s, CLI stores %s", fromJSON, fromText)
			}
		})
	}
}

func TestValidateValueRefuses(t *testing.T) {
	tests := []struct {
		field, json, err string
	}{
		{"colour", `"blue"`, `unknown field "colour"; known fields: target_version, target_version_jitter, heartbeat_interval`},
		{"heartbeat_interval", `30`, "must be a duration string"},
		{"heartbeat_interval", `"2h"`, "at most 1h0m0s"},
		{"inventory_enabled", `"true"`, "true or false"},
		{"inventory_enabled", `1`, "true or false"},
		{"max_local_concurrent", `"2"`, "not a string"},
		{"max_local_concurrent", `2.5`, "whole number"},
		{"max_local_concurrent", `0`, "at least 1"},
		{"target_version", `"a b"`, "may contain only"},
		{"target_version", `null`, "leave the field out"},
	}
	for _, tt := range tests {
		t.Run(tt.field+"="+tt.json, func(t *testing.T) {
			if got, err := ValidateValue(tt.field, json.RawMessage(tt.json)); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("ValidateValue = %s, %v; want an error with %q", got, err, tt.err)
			}
		})
	}
}

func TestInspectAndDecodeEditable(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		ok       bool // Inspect: agents use the layer
		fields   int
		problems int
		editable bool // DecodeEditable accepts it
	}{
		{"clean", `{"heartbeat_interval":"1m"}`, true, 1, 0, true},
		{"null kept, unknown kept, bad value reported", `{"heartbeat_interval":5,"colour":"x","inventory_enabled":null}`, true, 3, 1, true},
		{"not an object", `[1]`, false, 0, 1, false},
		{"empty value", ``, false, 0, 1, false},
		// Agents ignore a null layer, but editing it starts from empty.
		{"null layer", `null`, false, 0, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields, problems, ok := Inspect("groups.g", []byte(tt.data))
			if ok != tt.ok || len(fields) != tt.fields || len(problems) != tt.problems {
				t.Fatalf("Inspect = %v %v %v", fields, problems, ok)
			}
			m, err := DecodeEditable([]byte(tt.data))
			if (err == nil) != tt.editable || (err == nil && len(m) != tt.fields) {
				t.Fatalf("DecodeEditable = %v, %v", m, err)
			}
		})
	}
}
