// Package strictyaml checks a YAML (or JSON) document against a small
// schema before it is decoded, so that writes can reject unknown keys and
// wrongly typed values with the key's path and line:
//
//	line 4: execute.scirpt: unknown key (expected one of shell, script, script_file, timeout, run_as, cwd)
//
// JSON is accepted wherever YAML is: a document that is valid JSON is read
// by encoding/json (YAML parsers disagree with JSON on some escapes) and
// turned into the same node tree, with line numbers.
package strictyaml

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kanade-project/kanade/internal/wire"
)

// Problem is one thing wrong with a document.
type Problem struct {
	// Path is the key path, like "execute.timeout" or "rollout.waves[1].group";
	// empty for the document as a whole.
	Path string `json:"path,omitempty"`
	// Line is 1-based; 0 when unknown.
	Line int    `json:"line,omitempty"`
	Msg  string `json:"message"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error lists every problem found in a document. A write that fails with
// an *Error changed nothing; it is the caller's fault (HTTP 400).
type Error struct {
	// What names the document ("job manifest", "plan", "schedule").
	What     string
	Problems []Problem
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	prefix := "invalid document: "
	if e.What != "" {
		prefix = "invalid " + e.What + ": "
	}
	return prefix + strings.Join(parts, "; ")
}

// Kind is the expected shape of a value.
type Kind int

const (
	// Any accepts anything.
	Any Kind = iota
	// String accepts any scalar (numbers and booleans are read as their text).
	String
	Bool
	Int
	// Number accepts integers and decimals.
	Number
	// Duration is a string like "30s", "10m", "24h" or "7d" (wire.ParseDuration).
	Duration
	// Time is an RFC 3339 timestamp.
	Time
	// StringList is a sequence of scalars.
	StringList
	// Map is a mapping whose keys are Field.Fields.
	Map
	// List is a sequence whose items are Field.Elem.
	List
	// Custom is checked by Field.Check.
	Custom
)

// Field is one key of a schema.
type Field struct {
	Name     string
	Kind     Kind
	Required bool
	// Fields are the allowed keys of a Map, in the order they are listed
	// in error messages.
	Fields []Field
	// Elem describes the items of a List.
	Elem *Field
	// Check validates a Custom value.
	Check func(r *Report, path string, n *yaml.Node)
}

// MaxProblems bounds the problems a Report keeps. Without it a 1 MiB
// document of unknown keys made an 11 MB error (and 100 MiB of garbage),
// which no one reads past the first screen; the rest are counted.
const MaxProblems = 50

// Report collects the problems found in a document and the line of every
// path visited, so that later semantic checks can point at lines too.
type Report struct {
	What     string
	Problems []Problem
	lines    map[string]int
	// dropped counts the problems found beyond MaxProblems.
	dropped int
}

// NewReport returns an empty report about a document called what.
func NewReport(what string) *Report { return &Report{What: what, lines: map[string]int{}} }

// Line returns the line of path (or of its nearest ancestor that was seen).
func (r *Report) Line(path string) int {
	for {
		if l, ok := r.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return r.lines[""]
		}
		path = path[:i]
	}
}

// Add records a problem at path.
func (r *Report) Add(path, format string, args ...any) {
	if r.room() {
		r.Problems = append(r.Problems, Problem{Path: path, Line: r.Line(path), Msg: fmt.Sprintf(format, args...)})
	}
}

func (r *Report) add(p Problem) {
	if r.room() {
		r.Problems = append(r.Problems, p)
	}
}

// room reports whether one more problem is kept; one that is not is
// counted.
func (r *Report) room() bool {
	if len(r.Problems) < MaxProblems {
		return true
	}
	r.dropped++
	return false
}

// Err returns the problems as an *Error, or nil.
func (r *Report) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	ps := r.Problems
	if r.dropped > 0 {
		ps = append(slices.Clip(ps), Problem{Msg: fmt.Sprintf("%d more problems not shown; fix the ones above first", r.dropped)})
	}
	return &Error{What: r.What, Problems: ps}
}

// Join builds a child path.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Parse reads one document (YAML, or JSON when data is valid JSON) and
// returns its root node, or an *Error.
func Parse(what string, data []byte) (*yaml.Node, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &Error{What: what, Problems: []Problem{{Msg: "the document is empty"}}}
	}
	if json.Valid(data) {
		n, err := fromJSON(data)
		if err != nil {
			return nil, &Error{What: what, Problems: []Problem{{Msg: "invalid JSON: " + err.Error()}}}
		}
		return n, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{What: what, Problems: []Problem{{Msg: "the document is empty"}}}
		}
		return nil, &Error{What: what, Problems: []Problem{{Line: yamlErrLine(err), Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			line = yamlErrLine(err)
		}
		return nil, &Error{What: what, Problems: []Problem{{Line: line, Msg: "only one YAML document is allowed (remove the second '---')"}}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		return nil, &Error{What: what, Problems: []Problem{{Msg: "the document is empty"}}}
	}
	return root, nil
}

// yamlErrLine extracts "line N" from a yaml error message.
func yamlErrLine(err error) int {
	s := err.Error()
	i := strings.Index(s, "line ")
	if i < 0 {
		return 0
	}
	s = s[i+5:]
	j := 0
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	n, _ := strconv.Atoi(s[:j])
	return n
}

// Check walks n against the root mapping schema fields and reports every
// problem into r.
func Check(r *Report, n *yaml.Node, fields []Field) {
	r.Walk("", n, Field{Kind: Map, Fields: fields})
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return n.Value
		case "!!null":
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// Walk checks value n of field f at path.
func (r *Report) Walk(path string, n *yaml.Node, f Field) {
	n = resolve(n)
	if n == nil {
		return
	}
	if _, seen := r.lines[path]; !seen {
		r.lines[path] = n.Line
	}
	if isNull(n) {
		if f.Required {
			r.Add(path, "is required")
		}
		return
	}
	scalar := func() bool {
		if n.Kind != yaml.ScalarNode {
			r.Add(path, "expected a single value, got %s", describe(n))
			return false
		}
		return true
	}
	switch f.Kind {
	case Any:
	case String:
		scalar()
	case Bool:
		if scalar() && n.Tag != "!!bool" {
			r.Add(path, "expected true or false, got %s", describe(n))
		}
	case Int:
		if scalar() {
			if _, err := strconv.Atoi(n.Value); n.Tag != "!!int" || err != nil {
				r.Add(path, "expected a whole number, got %s", describe(n))
			}
		}
	case Number:
		if scalar() {
			v, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
			if (n.Tag != "!!int" && n.Tag != "!!float") || err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				r.Add(path, "expected a number, got %s", describe(n))
			}
		}
	case Duration:
		if scalar() {
			if _, err := wire.ParseDuration(n.Value); err != nil {
				r.Add(path, "%s", err.Error())
			}
		}
	case Time:
		if scalar() {
			if _, err := time.Parse(time.RFC3339, n.Value); err != nil {
				r.Add(path, "expected an RFC 3339 time like \"2026-01-02T15:04:05Z\", got %s", describe(n))
			}
		}
	case StringList:
		if n.Kind != yaml.SequenceNode {
			r.Add(path, "expected a list, got %s", describe(n))
			return
		}
		for i, item := range n.Content {
			r.Walk(fmt.Sprintf("%s[%d]", path, i), item, Field{Kind: String, Required: true})
		}
	case List:
		if n.Kind != yaml.SequenceNode {
			r.Add(path, "expected a list, got %s", describe(n))
			return
		}
		for i, item := range n.Content {
			el := Field{Kind: Any}
			if f.Elem != nil {
				el = *f.Elem
			}
			el.Required = true
			r.Walk(fmt.Sprintf("%s[%d]", path, i), item, el)
		}
	case Map:
		r.walkMap(path, n, f.Fields)
	case Custom:
		if f.Check != nil {
			f.Check(r, path, n)
		}
	}
}

// WalkMap checks a mapping node against fields (exported for Custom checks).
func (r *Report) WalkMap(path string, n *yaml.Node, fields []Field) {
	r.walkMap(path, resolve(n), fields)
}

func (r *Report) walkMap(path string, n *yaml.Node, fields []Field) {
	if n.Kind != yaml.MappingNode {
		if path == "" {
			r.Add(path, "expected a mapping of keys to values, got %s", describe(n))
		} else {
			r.Add(path, "expected a mapping (key: value), got %s", describe(n))
		}
		return
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Name
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			r.add(Problem{Path: path, Line: k.Line, Msg: "keys must be plain names"})
			continue
		}
		p := Join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			r.add(Problem{Path: p, Line: k.Line, Msg: fmt.Sprintf("duplicate key (first set at line %d)", first)})
			continue
		}
		seen[k.Value] = k.Line
		idx := slices.Index(names, k.Value)
		if idx < 0 {
			if r.room() {
				r.Problems = append(r.Problems, Problem{Path: p, Line: k.Line, Msg: fmt.Sprintf("unknown key (expected one of %s)", strings.Join(names, ", "))})
			}
			continue
		}
		r.lines[p] = k.Line
		r.Walk(p, v, fields[idx])
	}
	for _, f := range fields {
		if _, ok := seen[f.Name]; !ok && f.Required {
			r.add(Problem{Path: Join(path, f.Name), Line: n.Line, Msg: "is required"})
		}
	}
}

// fromJSON converts a JSON document into a yaml node tree with line numbers.
func fromJSON(data []byte) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	lineAt := func(off int64) int {
		// Skip the separators between the previous token and the next.
		for off < int64(len(data)) && strings.IndexByte(" \t\r\n,:", data[off]) >= 0 {
			off++
		}
		return 1 + bytes.Count(data[:off], []byte("\n"))
	}
	var value func() (*yaml.Node, error)
	value = func() (*yaml.Node, error) {
		// The offset after the previous token approximates the start of
		// this one well enough for a line number.
		line := lineAt(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line}
				for dec.More() {
					kl := lineAt(dec.InputOffset())
					kt, err := dec.Token()
					if err != nil {
						return nil, err
					}
					ks, _ := kt.(string)
					k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ks, Line: kl}
					v, err := value()
					if err != nil {
						return nil, err
					}
					m.Content = append(m.Content, k, v)
				}
				if _, err := dec.Token(); err != nil {
					return nil, err
				}
				return m, nil
			case '[':
				s := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line}
				for dec.More() {
					v, err := value()
					if err != nil {
						return nil, err
					}
					s.Content = append(s.Content, v)
				}
				if _, err := dec.Token(); err != nil {
					return nil, err
				}
				return s, nil
			}
			return nil, fmt.Errorf("unexpected %v", t)
		case string:
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t, Style: yaml.DoubleQuotedStyle, Line: line}, nil
		case json.Number:
			tag := "!!int"
			if strings.ContainsAny(t.String(), ".eE") {
				tag = "!!float"
			}
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: t.String(), Line: line}, nil
		case bool:
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(t), Line: line}, nil
		case nil:
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null", Line: line}, nil
		}
		return nil, fmt.Errorf("unexpected token %v", tok)
	}
	return value()
}

// Marshal is yaml.Marshal for documents that are stored and read back
// (job manifests, schedules): a string go-yaml would write in a form it
// cannot read back is written double-quoted instead. go-yaml writes a
// multi-line string as a literal block (readable, for scripts) but fails
// on the block it wrote when the first line starts with a tab ("found a
// tab character where an indentation space is expected"); without this, a
// script indented with tabs was stored in a form no reader could load.
func Marshal(v any) ([]byte, error) {
	// Placeholders are random, so no string of v can be mistaken for one.
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	orig := map[string]string{}
	sub := substitute(reflect.ValueOf(v), func(s string) (string, bool) {
		if readsBack(s) {
			return s, false
		}
		p := fmt.Sprintf("kanade-%x-%d", nonce, len(orig))
		orig[p] = s
		return p, true
	})
	if len(orig) == 0 {
		return yaml.Marshal(v)
	}
	// Node.Encode parses what it encodes, so the unreadable strings are
	// put back only into the node tree, with a style that reads back.
	var n yaml.Node
	if err := n.Encode(sub.Interface()); err != nil {
		return nil, err
	}
	restore(&n, orig)
	return yaml.Marshal(&n)
}

// readsBack reports whether go-yaml reads s, written in the style it
// chooses, back as s.
func readsBack(s string) bool {
	out, err := yaml.Marshal(map[string]string{"v": s})
	if err != nil {
		return false
	}
	var back map[string]string
	return yaml.Unmarshal(out, &back) == nil && back["v"] == s
}

func restore(n *yaml.Node, orig map[string]string) {
	if s, ok := orig[n.Value]; ok && n.Kind == yaml.ScalarNode {
		n.Value, n.Style, n.Tag = s, yaml.DoubleQuotedStyle, "!!str"
	}
	for _, c := range n.Content {
		restore(c, orig)
	}
}

// substitute returns a copy of v with every string replaced by repl when
// repl says so (v itself is left alone). Structs with unexported fields
// (time.Time) are copied whole.
func substitute(v reflect.Value, repl func(string) (string, bool)) reflect.Value {
	switch v.Kind() {
	case reflect.String:
		if s, ok := repl(v.String()); ok {
			out := reflect.New(v.Type()).Elem()
			out.SetString(s)
			return out
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			e := substitute(v.Elem(), repl)
			if v.Kind() == reflect.Interface {
				return e
			}
			p := reflect.New(e.Type())
			p.Elem().Set(e)
			return p
		}
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := range v.NumField() {
			if !v.Type().Field(i).IsExported() {
				return v
			}
			out.Field(i).Set(substitute(v.Field(i), repl))
		}
		return out
	case reflect.Slice:
		if !v.IsNil() {
			out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			for i := range v.Len() {
				out.Index(i).Set(substitute(v.Index(i), repl))
			}
			return out
		}
	case reflect.Map:
		if !v.IsNil() {
			out := reflect.MakeMapWithSize(v.Type(), v.Len())
			for it := v.MapRange(); it.Next(); {
				out.SetMapIndex(it.Key(), substitute(it.Value(), repl))
			}
			return out
		}
	}
	return v
}
