package configs

import (
	"strings"
	"testing"
)

func TestSQLFiles(t *testing.T) {
	for _, name := range []string{"sr_objects", "ct_instances", "nlst_prsn", "nlst_ctab", "column_metadata"} {
		s, err := SQL(name)
		if err != nil {
			t.Fatal(err)
		}
		// Only the two validated identifiers may be templated, and sr_objects may switch its
		// content columns on (fixed text, no value substituted); all data goes in @parameters.
		rest := strings.NewReplacer("{{.Project}}", "", "{{.Release}}", "", "{{if .SRContent}}", "", "{{end}}", "").Replace(s)
		if strings.Contains(rest, "{{") || !strings.Contains(s, "{{.Project}}.{{.Release}}") {
			t.Errorf("%s: unexpected placeholders", name)
		}
		if !strings.Contains(s, "@") {
			t.Errorf("%s: no query parameter", name)
		}
	}
	if _, err := SQL("nope"); err == nil {
		t.Error("missing query found")
	}
	if len(NLSTLabels()) == 0 {
		t.Error("labels not embedded")
	}
}
