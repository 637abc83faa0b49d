// Package version is the pipeline version recorded in every table, marker and manifest.
package version

import "runtime/debug"

// Pipeline is the release of the pipeline's code and output formats.
const Pipeline = "0.1.0"

// String is Pipeline plus the VCS revision the binary was built from, when known.
func String() string {
	v := Pipeline
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}
