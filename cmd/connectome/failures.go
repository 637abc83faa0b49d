package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"connectome/pipeline"
	"connectome/stages"
)

// cmdFailures prints a run's failures.arrow: which items failed, where and why, and how many
// of each kind, without a notebook.
func cmdFailures(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("connectome failures", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runDir := fs.String("run-dir", stages.DefaultConfig().RunDir, "run `DIR` whose failures.arrow to print")
	stage := fs.String("stage", "", "only the failures of `STAGE`")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: connectome failures [--run-dir DIR] [--stage S]\n\nPrints the items a run could not do (failures.arrow): stage, item, error class and cause,\nthen a count per stage and class.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rows, err := pipeline.ReadFailures(filepath.Join(*runDir, pipeline.FailuresName(pipeline.Shard{})))
	if err != nil {
		fmt.Fprintln(stderr, "connectome failures:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tITEM\tCLASS\tMESSAGE")
	counts := map[string]int{}
	for _, r := range rows {
		if *stage != "" && r.Stage != *stage {
			continue
		}
		counts[r.Stage+"\t"+r.ErrorClass]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Stage, r.ItemID, r.ErrorClass, strings.ReplaceAll(r.Message, "\n", " "))
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	total := 0
	for _, k := range keys {
		total += counts[k]
	}
	fmt.Fprintf(stdout, "\n%d failures\n", total)
	for _, k := range keys {
		st, class, _ := strings.Cut(k, "\t")
		fmt.Fprintf(stdout, "  %-12s %-12s %d\n", st, class, counts[k])
	}
	return 0
}
