package fleetconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/kanade-project/kanade/internal/wire"
)

// Scope kinds: the three kinds of agent_config layer.
const (
	ScopeGlobal = "global"
	ScopeGroup  = "group"
	ScopePC     = "pc"
)

// Scope names one layer of agent_config: the global layer, a group's or a
// PC's. The CLI builds it from flags, the API from a URL; both get the same
// key and the same validation from here.
type Scope struct {
	// Kind is ScopeGlobal, ScopeGroup or ScopePC.
	Kind string
	// Name is the group or PC; empty for the global layer.
	Name string
}

// NewScope validates a group or PC name (unused for global) and returns
// the scope.
func NewScope(kind, name string) (Scope, error) {
	switch kind {
	case ScopeGlobal:
		return Scope{Kind: ScopeGlobal}, nil
	case ScopeGroup, ScopePC:
		if err := CheckKeyToken(kind, name); err != nil {
			return Scope{}, err
		}
		return Scope{Kind: kind, Name: name}, nil
	}
	return Scope{}, fmt.Errorf("unknown scope kind %q (global, group or pc)", kind)
}

// ClassifyKey tells which kind of layer an agent_config key is, by its
// shape alone (the name is not validated); ok is false for a key that is
// none of global, groups.<g>, pcs.<pc>. Listings use it so that a
// hand-written key with an odd name is still shown rather than hidden.
func ClassifyKey(key string) (Scope, bool) {
	switch {
	case key == wire.ConfigKeyGlobal:
		return Scope{Kind: ScopeGlobal}, true
	case strings.HasPrefix(key, "groups."):
		return Scope{Kind: ScopeGroup, Name: strings.TrimPrefix(key, "groups.")}, true
	case strings.HasPrefix(key, "pcs."):
		return Scope{Kind: ScopePC, Name: strings.TrimPrefix(key, "pcs.")}, true
	}
	return Scope{}, false
}

// ParseScopeKey parses an agent_config key strictly: global, groups.<g> or
// pcs.<pc> with a name agents can use (CheckKeyToken). Writers use it, so
// nothing can create a layer no agent would ever read.
func ParseScopeKey(key string) (Scope, error) {
	sc, ok := ClassifyKey(key)
	if !ok {
		return Scope{}, fmt.Errorf("scope %q: expected global, groups.<group> or pcs.<pc>", key)
	}
	if sc.Kind == ScopeGlobal {
		return sc, nil
	}
	return NewScope(sc.Kind, sc.Name)
}

// Key is the agent_config key of the layer.
func (s Scope) Key() string {
	switch s.Kind {
	case ScopeGroup:
		return wire.ConfigKeyGroup(s.Name)
	case ScopePC:
		return wire.ConfigKeyPC(s.Name)
	}
	return wire.ConfigKeyGlobal
}

// String names the layer for people: "global", "group canary", "pc pc-042".
func (s Scope) String() string {
	if s.Kind == ScopeGlobal {
		return ScopeGlobal
	}
	return s.Kind + " " + s.Name
}

// Rank orders layers by precedence: global 0 < group 1 < pc 2. Of two
// groups, the later name in alphabetical order wins.
func (s Scope) Rank() int {
	switch s.Kind {
	case ScopeGroup:
		return 1
	case ScopePC:
		return 2
	}
	return 0
}

// LayerName is the name Resolve and ParseLayer use for the layer
// ("global", "group:<g>", "pc"), as it appears in sources and problems.
func (s Scope) LayerName() string {
	switch s.Kind {
	case ScopeGroup:
		return "group:" + s.Name
	case ScopePC:
		return "pc"
	}
	return "global"
}

// ErrNotObject: a stored layer is not a JSON object, so agents ignore it
// and it cannot be edited field by field (only replaced or deleted).
var ErrNotObject = errors.New("layer is not a JSON object")

// DecodeEditable decodes a stored layer for editing, keeping every field
// (unknown ones and nulls too, so an edit never loses what another tool
// wrote). JSON null is an empty layer; an absent key is the caller's to
// treat as empty (an empty stored value is not an object).
func DecodeEditable(data []byte) (map[string]json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotObject, err)
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	return m, nil
}

// SameValue reports whether two stored values are the same JSON (ignoring
// insignificant whitespace), so an unchanged value is not written again.
func SameValue(x, y json.RawMessage) bool {
	var bx, by bytes.Buffer
	if json.Compact(&bx, x) != nil || json.Compact(&by, y) != nil {
		return bytes.Equal(x, y)
	}
	return bytes.Equal(bx.Bytes(), by.Bytes())
}

// ValidateValue is Validate for a value that arrives as JSON (the HTTP
// API) rather than as command-line text: the field must be known and the
// value of the right JSON type and in range. It returns the canonical JSON
// to store — exactly what Validate stores for the same value — so the CLI
// and the API write identical layers.
func ValidateValue(name string, raw json.RawMessage) (json.RawMessage, error) {
	f, ok := FieldByName(name)
	if !ok {
		return nil, fmt.Errorf("unknown field %q; known fields: %s", name, strings.Join(FieldNames(), ", "))
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil, fmt.Errorf("%s is null: leave the field out to leave it unset", name)
	}
	v, err := f.decode(raw)
	if err != nil {
		return nil, err
	}
	var out []byte
	switch f.Kind {
	case KindBool:
		out, err = json.Marshal(v.b)
	case KindInt:
		out, err = json.Marshal(v.n)
	default:
		out, err = json.Marshal(v.str)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// Inspect decodes a stored layer for display: its fields exactly as
// stored (nulls included: they mean unset) and the values agents cannot
// use. ok is false when the value is not a JSON object at all; agents
// then ignore the whole layer, and problems says so. name labels the
// problems (the CLI and the API use the key).
func Inspect(name string, data []byte) (fields map[string]json.RawMessage, problems []wire.ConfigProblem, ok bool) {
	fields = map[string]json.RawMessage{}
	l, err := ParseLayer(name, data)
	if err != nil {
		return fields, []wire.ConfigProblem{{Layer: name, Message: err.Error() + "; agents ignore this layer"}}, false
	}
	_ = json.Unmarshal(data, &fields) // ParseLayer proved it is an object
	return fields, Resolve(Defaults(1), &l, nil, nil).Problems, true
}
