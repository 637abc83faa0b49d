// Package yamlconf decodes the project's YAML files strictly: an unknown key, a duplicate key
// or a value of the wrong type is an error that names the file, line and column.
package yamlconf

import (
	"errors"
	"fmt"
	"os"

	"github.com/goccy/go-yaml"
)

// Decode parses data (read from path, used in messages) into v, rejecting unknown keys.
func Decode(path string, data []byte, v any) error {
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

// DecodeFile reads path and decodes it into v.
func DecodeFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return Decode(path, data, v)
}
