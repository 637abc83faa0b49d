package reporttest

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"connectome/internal/testenv"
)

// AxeFile is where `make deps` (scripts/fetch-axe-core.sh) puts axe-core, relative to the
// repository root; VERSION beside it names the version.
const AxeFile = "third_party/web/axe-core/axe.min.js"

// Violation is one rule that axe-core found broken, with the elements that break it.
type Violation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"`
	Help    string   `json:"help"`
	Targets []string `json:"targets"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s (%s): %s — %s", v.ID, v.Impact, v.Help, strings.Join(v.Targets, ", "))
}

// Axe checks the page as it is now with axe-core (WCAG 2.x A and AA rules and axe's best
// practices) and returns the violations. The checker is evaluated through the DevTools
// protocol, which the page's Content Security Policy does not govern, so the page keeps its
// strict policy. A missing axe-core fails the test under CI and skips it otherwise.
func (b *Browser) Axe(t testing.TB) []Violation {
	t.Helper()
	p := testenv.File(t, AxeFile)
	src, err := os.ReadFile(p)
	if err != nil {
		testenv.Missing(t, "axe-core missing (%v): run `make deps`", err)
	}
	if !Eval[bool](t, b, `typeof window.axe === 'object'`) {
		Eval[bool](t, b, string(src)+"\n;true")
	}
	return Eval[[]Violation](t, b, `axe.run(document, { resultTypes: ['violations'] }).then((r) =>
	  r.violations.map((v) => ({ id: v.id, impact: v.impact || '', help: v.help,
	    targets: v.nodes.map((n) => n.target.join(' ')) })))`)
}
