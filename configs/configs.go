// Package configs embeds the project's configuration data in the binary: the cohort queries
// (sql/*.sql), the NLST code → label mapping (nlst-labels.yaml) and the registry of the 9
// models (models.yaml), so that the built command needs no file beside it.
package configs

import (
	"embed"
	"fmt"
)

// sqlFiles holds the cohort stage's BigQuery queries. The same files run against BigQuery and
// against the emulator in tests; there is never a second version of a query.
//
//go:embed sql/*.sql
var sqlFiles embed.FS

//go:embed nlst-labels.yaml
var nlstLabels []byte

// SQL returns the text of configs/sql/<name>.sql (a template with {{.Project}} and
// {{.Release}} placeholders), or an error naming the missing file.
func SQL(name string) (string, error) {
	b, err := sqlFiles.ReadFile("sql/" + name + ".sql")
	if err != nil {
		return "", fmt.Errorf("embedded query %q: %w", name, err)
	}
	return string(b), nil
}

//go:embed models.yaml
var modelsFile []byte

// ModelsFile names the built-in model registry in messages.
const ModelsFile = "configs/models.yaml (built in)"

// Models returns configs/models.yaml, the registry of the 9 published encoders.
func Models() []byte { return append([]byte(nil), modelsFile...) }

// NLSTLabels returns configs/nlst-labels.yaml, the NLST code -> label mapping.
func NLSTLabels() []byte { return append([]byte(nil), nlstLabels...) }
