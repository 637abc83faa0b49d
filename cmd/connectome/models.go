package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"connectome/models"
	"connectome/models/onnx"
	"connectome/models/onnxrt"
	"connectome/stages/embed"
)

const modelsUsage = `usage: connectome models list   [--models FILE] [--models-dir DIR]
       connectome models verify [--models FILE] [--models-dir DIR] [--model NAME]... [--threads N]

list        shows each model of the models file: embedding dimension, input shape (batch, 1,
            R0, R1, R2 in the model's axis order), batch size, whether its ONNX file is present,
            and whether the file's sha256 matches the one recorded in the models file.
verify      checks every model fully and exits 1 on any problem: the file is present, its
            sha256 is recorded and matches, its declared input and output names and shapes
            match the models file, the embedding dimension is fixed in the graph (not
            symbolic) and equals embedding_dim, and ONNX Runtime opens it on CPU and returns
            (batch, embedding_dim) for a batch of zeros.

flags:
  --models FILE      models file (default: the 9 published encoders, configs/models.yaml, built in);
                     --models-file is the same flag
  --models-dir DIR   directory of the ONNX files (default weights)
  --model NAME       verify only this model (repeat for several)
  --threads N        ONNX Runtime CPU threads for verify (default 0 = all cores)

ONNX Runtime: $ONNXRUNTIME_LIB, or lib/libonnxruntime.so.1.29.0 beside this binary (make build
installs it there).

exit status: 0 ok, 1 a problem was found (verify) or an error, 2 usage error
`

type nameList []string

func (l *nameList) String() string { return strings.Join(*l, ",") }
func (l *nameList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func cmdModels(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, modelsUsage)
		return 2
	}
	sub := args[0]
	if sub == "-h" || sub == "--help" || sub == "help" {
		fmt.Fprint(stdout, modelsUsage)
		return 0
	}
	switch sub {
	case "list", "verify":
	default:
		fmt.Fprintf(stderr, "connectome models: unknown subcommand %q\n\n%s", sub, modelsUsage)
		return 2
	}
	fs := flag.NewFlagSet("models "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, modelsUsage) }
	file := fs.String("models", "", "")
	fs.StringVar(file, "models-file", "", "")
	dir := fs.String("models-dir", "weights", "")
	threads := fs.Int("threads", 0, "")
	var only nameList
	fs.Var(&only, "model", "")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, modelsUsage)
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "connectome models %s: unexpected argument %q\n\n%s", sub, fs.Arg(0), modelsUsage)
		return 2
	}
	reg, err := models.Load(*file)
	if err != nil {
		fmt.Fprintf(stderr, "connectome models: %v\n", err)
		return 1
	}
	switch sub {
	case "list":
		return modelsList(reg, *dir, stdout, stderr)
	case "verify":
		return modelsVerify(ctx, reg, *dir, only, *threads, stdout, stderr)
	}
	fmt.Fprintf(stderr, "connectome models: unknown subcommand %q\n\n%s", sub, modelsUsage)
	return 2
}

// fileState is what list and verify report about a model's ONNX file.
func fileState(spec *models.Spec, dir string) (present bool, sum, verdict string, err error) {
	path := filepath.Join(dir, spec.ONNX)
	sum, err = embed.FileSHA256(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, "", "-", nil
	case err != nil:
		return false, "", "unreadable", err
	case spec.SHA256 == "":
		return true, sum, "not recorded", nil
	case strings.EqualFold(spec.SHA256, sum):
		return true, sum, "ok", nil
	}
	return true, sum, "MISMATCH", nil
}

func shapeString(s *models.Spec) string {
	sh := s.InputShape(s.BatchSize)
	return fmt.Sprintf("(N, %d, %d, %d, %d)", sh[1], sh[2], sh[3], sh[4])
}

func modelsList(reg *models.Registry, dir string, stdout, stderr io.Writer) int {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIM\tINPUT\tBATCH\tAXES\tONNX FILE\tPRESENT\tSHA256")
	code := 0
	for i := range reg.Models {
		s := &reg.Models[i]
		present, _, verdict, err := fileState(s, dir)
		if err != nil {
			fmt.Fprintf(stderr, "connectome models list: %s: %v\n", s.Name, err)
			code = 1
		}
		yes := "no"
		if present {
			yes = "yes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.EmbeddingDim, shapeString(s), s.BatchSize,
			s.Preprocess.Axcodes, filepath.Join(dir, s.ONNX), yes, verdict)
	}
	tw.Flush()
	return code
}

func modelsVerify(ctx context.Context, reg *models.Registry, dir string, only []string, threads int, stdout, stderr io.Writer) int {
	specs, err := reg.Select(only)
	if err != nil {
		fmt.Fprintf(stderr, "connectome models verify: %v\n", err)
		return 2
	}
	var rt *onnxrt.Runtime
	var rtErr error
	if lib, err := onnxrt.LibraryPath(); err != nil {
		rtErr = err
	} else {
		rt = onnxrt.New(lib, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		rtErr = rt.Init()
		defer rt.Close()
	}
	problems := 0
	for _, s := range specs {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "connectome models verify: interrupted")
			return 1
		}
		var issues []string
		present, sum, verdict, err := fileState(s, dir)
		path := filepath.Join(dir, s.ONNX)
		switch {
		case err != nil:
			issues = append(issues, err.Error())
		case !present:
			issues = append(issues, fmt.Sprintf("%s is missing; %s", path, reg.Obtain))
		case verdict == "not recorded":
			issues = append(issues, fmt.Sprintf("no sha256 in %s (the file has %s)", reg.Path, sum))
		case verdict != "ok":
			issues = append(issues, fmt.Sprintf("sha256 %s, but %s records %s", sum, reg.Path, s.SHA256))
		}
		if s.ExternalData != "" {
			dpath := filepath.Join(dir, s.ExternalData)
			dsum, err := embed.FileSHA256(dpath)
			switch {
			case err != nil:
				issues = append(issues, fmt.Sprintf("external data: %v", err))
			case s.ExternalDataSHA256 == "":
				issues = append(issues, fmt.Sprintf("no external_data_sha256 in %s (the file has %s)", reg.Path, dsum))
			case !strings.EqualFold(s.ExternalDataSHA256, dsum):
				issues = append(issues, fmt.Sprintf("external data %s has sha256 %s, but %s records %s", dpath, dsum, reg.Path, s.ExternalDataSHA256))
			}
		}
		if present {
			issues = append(issues, verifyRun(rt, rtErr, s, path, threads)...)
		}
		if len(issues) == 0 {
			fmt.Fprintf(stdout, "ok       %s  %s  sha256 %s\n", s.Name, path, sum)
			continue
		}
		problems++
		for _, is := range issues {
			fmt.Fprintf(stdout, "PROBLEM  %s: %s\n", s.Name, is)
		}
	}
	if problems > 0 {
		fmt.Fprintf(stdout, "%d of %d models have problems\n", problems, len(specs))
		return 1
	}
	fmt.Fprintf(stdout, "all %d models verified\n", len(specs))
	return 0
}

// verifyRun checks the declared signature and runs a batch of zeros on CPU.
func verifyRun(rt *onnxrt.Runtime, rtErr error, s *models.Spec, path string, threads int) []string {
	sig, err := onnx.ReadSignatureFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	batch := 1
	if in, ok := sig.Input(s.Input); ok && len(in.Dims) > 0 && in.Dims[0].Param == "" && in.Dims[0].Value > 0 {
		batch = int(in.Dims[0].Value) // a fixed batch in the file
	}
	if err := embed.CheckSignature(path, s, batch); err != nil {
		return []string{err.Error()}
	}
	if out, ok := sig.Output(s.Output); ok && len(out.Dims) == 2 && out.Dims[1].Param != "" {
		// CheckSignature accepts a symbolic dimension (it could be anything at run time); a
		// published graph must say what it returns.
		return []string{fmt.Sprintf("%s: output %v has a symbolic embedding dimension %q; export it static (embedding_dim %d)",
			path, out, out.Dims[1].Param, s.EmbeddingDim)}
	}
	if rtErr != nil {
		return []string{fmt.Sprintf("cannot open with ONNX Runtime: %v", rtErr)}
	}
	sess, err := rt.Open(path, s.Input, s.Output, onnxrt.Options{Device: onnxrt.DeviceCPU, Threads: threads})
	if err != nil {
		return []string{err.Error()}
	}
	shape := s.InputShape(batch)
	n := int(shape[0] * shape[1] * shape[2] * shape[3] * shape[4])
	out, vals, err := sess.Run(shape, make([]float32, n))
	if err != nil {
		return []string{err.Error()}
	}
	if len(out) != 2 || out[0] != int64(batch) || out[1] != int64(s.EmbeddingDim) {
		return []string{fmt.Sprintf("output shape %v for a batch of %d, want [%d %d]", out, batch, batch, s.EmbeddingDim)}
	}
	for _, v := range vals {
		if v != v {
			return []string{"output has NaN for a batch of zeros"}
		}
	}
	return nil
}
