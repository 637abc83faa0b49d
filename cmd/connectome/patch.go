package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"connectome/internal/atomicfile"
	"connectome/internal/dicomio"
	"connectome/internal/patch"
	"connectome/models"
	"connectome/stages/preprocess"
)

const patchUsage = `usage: connectome patch --dicom DIR --center-lps=X,Y,Z --model NAME --out FILE.npy [flags]

Writes exactly the tensor a model receives for one seed point: float32 .npy of shape
(1, 1, R0, R1, R2), axes in the model's axcodes order (preprocessing-spec §2). DIR holds one
uncompressed CT series (one slice per file); only the slices the crop needs are decoded.

flags:
  --dicom DIR          directory of the series' DICOM files (required)
  --center-lps X,Y,Z   seed point in DICOM patient coordinates (LPS, mm); write negative
                       values as --center-lps=-1.5,20,-300 (required)
  --model NAME         model name from the models file (required)
  --out FILE.npy       output tensor (required)
  --models FILE        models file (default: the one built in, configs/models.yaml)
  --qc FILE.png        also write the QC preview (axial, coronal, sagittal at the seed)

exit status: 0 written, 1 failed (unreadable series, seed outside the volume), 2 usage error
`

func cmdPatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("patch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below: --help to stdout, mistakes with the error
	dir := fs.String("dicom", "", "")
	center := fs.String("center-lps", "", "")
	model := fs.String("model", "", "")
	out := fs.String("out", "", "")
	modelsFile := fs.String("models", "", "") // "": the registry built into the binary
	qc := fs.String("qc", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, patchUsage)
			return 0
		}
		fmt.Fprintf(stderr, "\n%s", patchUsage)
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "connectome patch: "+format+"\n\n%s", append(a, patchUsage)...)
		return 2
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	if *dir == "" || *center == "" || *model == "" || *out == "" {
		return usage("--dicom, --center-lps, --model and --out are required")
	}
	seed, err := parseLPS(*center)
	if err != nil {
		return usage("--center-lps %q: %v", *center, err)
	}
	reg, err := models.Load(*modelsFile)
	if err != nil {
		fmt.Fprintf(stderr, "connectome patch: %v\n", err)
		return 1
	}
	spec, err := reg.Get(*model)
	if err != nil {
		return usage("%v", err)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "connectome patch: %v\n", err)
		return 1
	}
	ser, headerBytes, err := dicomio.ReadSeriesDir(*dir)
	if err != nil {
		return fail(err)
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	res, err := preprocess.Extract(ser, seed, []*models.Spec{spec})
	if err != nil {
		return fail(fmt.Errorf("seed %v: %w", seed, err))
	}
	t := res.Tensors[0]
	if err := atomicfile.Write(*out, func(w io.Writer) error { return patch.WriteNPY(w, t.Shape[:], t.Data) }); err != nil {
		return fail(err)
	}
	if *qc != "" {
		png, err := preprocess.QCImage(res.QC, seed, [3]float64{}, [3]float64{})
		if err != nil {
			return fail(err)
		}
		if err := atomicfile.WriteBytes(*qc, png); err != nil {
			return fail(err)
		}
	}
	pl := t.Plan
	fmt.Fprintf(stdout, "%s: %s shape %v grid m=%v seed c=%v crop %v..%v pads %v; read %d of %d slices (%d bytes, headers %d bytes); %.1f%% outside the volume, %.1f%% clipped\n",
		*out, spec.Name, t.Shape, pl.Grid.M, pl.C, pl.Lo, pl.Hi, pl.Pads, res.Load.Files, len(ser.Slices),
		res.Load.Bytes, headerBytes, 100*t.FracOutside(), 100*t.FracClipped())
	return 0
}

func parseLPS(s string) ([3]float64, error) {
	var v [3]float64
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return v, errors.New("want three comma-separated numbers X,Y,Z")
	}
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return v, fmt.Errorf("coordinate %d: %w", i+1, err)
		}
		v[i] = f
	}
	return v, nil
}
