// Package yamlconf decodes the project's YAML files strictly: an unknown key, a duplicate key
// or a value of the wrong type is an error that names the file, line and column.
//
// A file is bounded before it is decoded (Limits): the YAML parser's cost grows faster than
// the nesting depth (100 000 levels cost ~15 GB) and an alias bomb expands a few lines into
// billions of nodes, so size, nesting and the alias-expanded node count are checked first,
// on the tokens (linear) and then on the syntax tree.
package yamlconf

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Limits of a file this package decodes. A pipeline config is a few KiB, nests 4 levels and
// has about a hundred nodes; the limits leave room for generous hand-written files.
const (
	MaxBytes = 1 << 20
	// MaxDepth bounds flow nesting ([ and {) and, in block context, the column of a
	// structural token ("- ", "key:"): block nesting cannot exceed its indentation.
	MaxDepth  = 64
	MaxColumn = 1000
	// MaxNodes bounds the nodes of the document with every alias expanded.
	MaxNodes = 100_000
)

// ErrTooLarge marks a file over one of the limits.
var ErrTooLarge = errors.New("over the config limits")

// ErrEmpty marks a file with no YAML content (empty, comments only, or null).
var ErrEmpty = errors.New("the file is empty: it sets no key")

// Decode parses data (read from path, used in messages) into v, rejecting unknown keys.
func Decode(path string, data []byte, v any) error {
	if err := checkLimits(data); err != nil {
		return fmt.Errorf("%s%w", path, err)
	}
	err := yaml.UnmarshalWithOptions(data, v, yaml.Strict())
	if err == nil {
		return nil
	}
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		pos := ye.GetToken().Position
		return fmt.Errorf("%s:%d:%d: %s", path, pos.Line, pos.Column, ye.GetMessage())
	}
	return fmt.Errorf("%s: %w", path, err)
}

// DecodeFile reads path (at most MaxBytes) and decodes it into v.
func DecodeFile(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	return Decode(path, data, v)
}

// checkLimits returns an error, starting with ":line:col: " or ": ", when data is over a limit.
func checkLimits(data []byte) error {
	if len(data) > MaxBytes {
		return fmt.Errorf(": more than %d bytes: %w", MaxBytes, ErrTooLarge)
	}
	flow := 0
	for _, tk := range lexer.Tokenize(string(data)) {
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			flow++
			if flow > MaxDepth {
				return limitf(tk, "nested more than %d levels deep", MaxDepth)
			}
		case token.SequenceEndType, token.MappingEndType:
			flow = max(flow-1, 0)
		case token.SequenceEntryType, token.MappingKeyType, token.MappingValueType:
			if flow == 0 && tk.Position.Column > MaxColumn {
				return limitf(tk, "block structure past column %d (nested too deep)", MaxColumn)
			}
		}
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil // the decoder reports syntax errors with their position
	}
	c := &nodeCounter{anchors: map[string]int{}}
	for _, doc := range f.Docs {
		if doc.Body != nil {
			ast.Walk(c, doc.Body)
		}
	}
	if empty(f) {
		// The decoder would zero every default and the first complaint would be a missing
		// key, far from the cause.
		return fmt.Errorf(": %w", ErrEmpty)
	}
	if c.n > MaxNodes {
		return fmt.Errorf(": more than %d nodes with its aliases expanded (an alias bomb?): %w", MaxNodes, ErrTooLarge)
	}
	return nil
}

// empty says whether f has no document with a non-null body.
func empty(f *ast.File) bool {
	for _, doc := range f.Docs {
		if doc.Body != nil && doc.Body.Type() != ast.NullType && doc.Body.Type() != ast.CommentType {
			return false
		}
	}
	return true
}

func limitf(tk *token.Token, format string, a ...any) error {
	return fmt.Errorf(":%d:%d: %s: %w", tk.Position.Line, tk.Position.Column, fmt.Sprintf(format, a...), ErrTooLarge)
}

// nodeCounter counts the nodes a decoder visits: an alias counts as the nodes of its anchor's
// value. Counts saturate just above MaxNodes.
type nodeCounter struct {
	n       int
	anchors map[string]int // anchor name → nodes of its value
}

func (c *nodeCounter) add(k int) { c.n = min(c.n+k, MaxNodes+1) }

func (c *nodeCounter) Visit(n ast.Node) ast.Visitor {
	switch n := n.(type) {
	case *ast.AliasNode:
		c.add(max(c.anchors[n.Value.String()], 1))
		return nil
	case *ast.AnchorNode:
		sub := &nodeCounter{anchors: c.anchors}
		if n.Value != nil {
			ast.Walk(sub, n.Value)
		}
		c.anchors[n.Name.String()] = sub.n
		c.add(sub.n)
		return nil
	}
	c.add(1)
	if c.n > MaxNodes {
		return nil
	}
	return c
}
