// Command connectome runs the tumour connectome pipeline: NLST-Sybil tumours from IDC, cropped
// as 9 foundation models expect, embedded with ONNX Runtime, linked by cosine similarity and
// drawn as one offline HTML map. `connectome help` lists the commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"connectome/models/onnxrt"
	"connectome/stages"
	"connectome/stages/report"
)

const usage = `connectome: the NLST-Sybil tumour connectome pipeline

Usage:
  connectome run     --config FILE [--run-dir DIR] [--from S] [--to S] [--only S] [--resume] ...
  connectome patch   --dicom DIR --center-lps=X,Y,Z --model NAME --out FILE.npy
  connectome models  list | verify
  connectome failures [--run-dir DIR] [--stage S]
  connectome version

Stages, in order: cohort, fetch, preprocess, embed, similarity, report.
Run 'connectome COMMAND --help' for the flags of a command.

Exit status: 0 all items done; 3 finished with per-item failures (see failures.arrow);
1 halted (bad config, unreachable service, GPU init failure, schema mismatch) or interrupted;
2 usage error.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "patch":
		return cmdPatch(ctx, args[1:], stdout, stderr)
	case "models":
		return cmdModels(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "connectome", stages.VersionString())
		fmt.Fprintln(stdout, "onnx runtime", onnxrt.ORTVersion, "(library: $"+onnxrt.EnvLibrary+", else lib/ beside this binary)")
		lib := "built in"
		if !report.GraphLibraryEmbedded() {
			lib = "MISSING: rebuild with make build"
		}
		fmt.Fprintln(stdout, "report graph library:", lib)
		return 0
	case "failures":
		return cmdFailures(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "connectome: unknown command %q\n\n%s", args[0], usage)
	return 2
}
