package e2etest

import (
	"testing"

	"connectome/stages/report/reporttest"
)

// checkInBrowser opens the demo's report in headless Debian chromium with every non-file
// request failed (the report stage's harness, reporttest), waits for the first render, and
// checks the drawn map against the tables and that the page logged no errors and tried no
// network. A missing chromium fails under CI; otherwise only this check is left out, not
// the rest of the end-to-end test.
func checkInBrowser(t *testing.T, report string, lesions, edges int) {
	t.Helper()
	path, ok := reporttest.FindChromium(t)
	if !ok {
		t.Log("chromium not found: the report is not checked in a browser")
		return
	}
	b := reporttest.Launch(t, path)
	b.Open(t, report, "")
	nodes := reporttest.Eval[int](t, b, `__connectome.nodeCount()`)
	drawn := reporttest.Eval[int](t, b, `__connectome.edges().length`)
	if nodes != lesions {
		t.Errorf("the report draws %d nodes, lesions.arrow has %d", nodes, lesions)
	}
	if drawn == 0 || drawn > edges {
		t.Errorf("the report draws %d edges, edges.arrow has %d", drawn, edges)
	}
	b.CheckClean(t)
	t.Logf("browser: %d nodes, %d edges drawn", nodes, drawn)
}
