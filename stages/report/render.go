package report

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"strings"
)

// assets are the page template, stylesheet and script (our own code) and, under vendor/, the
// pinned graph library that `make deps` fetches: all embedded in the binary.
//
//go:embed assets
var assets embed.FS

type pageView struct {
	CSP  string
	CSS  template.CSS
	Lib  template.JS
	App  template.JS
	Data *pageData
}

// renderPage writes the page. Data goes in as JSON through html/template, which escapes
// '<', '>' and '&' so no data string can close the script element. The page's Content
// Security Policy allows exactly our two scripts (by hash), images only from data: URIs and
// no connections at all, so even injected markup could neither run nor fetch anything.
func renderPage(w io.Writer, d *pageData, lib []byte) error {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return err
	}
	return renderPageWith(w, sub, d, lib)
}

// renderPageWith is renderPage with the template, style and script (page.html.tmpl,
// page.css, app.js) read from fsys.
func renderPageWith(w io.Writer, fsys fs.FS, d *pageData, lib []byte) error {
	if err := checkInlineScript(lib); err != nil {
		return fmt.Errorf("graph library cannot be inlined: %w", err)
	}
	tmplText, err := fs.ReadFile(fsys, "page.html.tmpl")
	if err != nil {
		return err
	}
	css, err := fs.ReadFile(fsys, "page.css")
	if err != nil {
		return err
	}
	app, err := fs.ReadFile(fsys, "app.js")
	if err != nil {
		return err
	}
	if err := checkInlineScript(app); err != nil {
		return fmt.Errorf("page script cannot be inlined: %w", err)
	}
	t, err := template.New("page").Parse(string(tmplText))
	if err != nil {
		return fmt.Errorf("parse page template: %w", err)
	}
	csp := strings.Join([]string{
		"default-src 'none'",
		"script-src " + scriptHash(lib) + " " + scriptHash(app),
		"style-src 'unsafe-inline'",
		"img-src data:",
		"base-uri 'none'",
		"form-action 'none'",
	}, "; ")
	return t.Execute(w, pageView{CSP: csp, CSS: template.CSS(css), Lib: template.JS(lib), App: template.JS(app), Data: d})
}

func scriptHash(b []byte) string {
	h := sha256.Sum256(b)
	return "'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'"
}

// checkInlineScript rejects script text that would end or confuse an inline <script>
// element (the HTML parser looks for "</script" and "<!--" whatever the JavaScript means).
func checkInlineScript(b []byte) error {
	lower := bytes.ToLower(b)
	for _, bad := range []string{"</script", "<!--", "<script"} {
		if i := bytes.Index(lower, []byte(bad)); i >= 0 {
			return fmt.Errorf("contains %q at byte %d", bad, i)
		}
	}
	return nil
}
