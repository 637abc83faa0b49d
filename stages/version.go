package stages

import "runtime/debug"

// PipelineVersion is the release of the pipeline's code and output formats.
const PipelineVersion = "0.1.0"

// VersionString is PipelineVersion plus the VCS revision the binary was built from, when known.
func VersionString() string {
	v := PipelineVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}
