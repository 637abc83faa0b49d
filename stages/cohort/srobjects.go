package cohort

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"connectome/internal/gcp"
	"connectome/internal/sr"
	"connectome/pipeline"
)

// srDownloads is how many SR objects are in flight at once (each a few hundred kB at most).
const srDownloads = 16

// readSRObjects fills each row's content from its SR object in the bucket (sr_content
// bucket): download from gcs_url (verified against its CRC32C and instance_size), parse, and
// turn the three sequences into the JSON that sr_objects would have returned. An SR that
// cannot be had fails as an item, naming its object, and the others go on; a full or
// unwritable temporary folder halts. The objects are deleted when the stage has read them.
func (st *Stage) readSRObjects(ctx context.Context, sc *pipeline.Context, rows []srObjectRow) ([]srObjectRow, error) {
	tmp, err := os.MkdirTemp("", "connectome-sr-")
	if err != nil {
		return nil, pipeline.Haltf("temporary folder for the SR objects: %w", err)
	}
	defer os.RemoveAll(tmp)
	// each download writes only its own row's entries: no lock
	ok, size := make([]bool, len(rows)), make([]int64, len(rows))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(srDownloads)
	for i := range rows {
		g.Go(func() error {
			n, err := st.readSRObject(gctx, &rows[i], tmp)
			switch {
			case err == nil:
				ok[i], size[i] = true, n
			case pipeline.IsHalt(err) || gctx.Err() != nil:
				return err
			default:
				sc.Fail(rows[i].SRSOPUID, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := rows[:0:0]
	var bytes int64
	for i, r := range rows {
		if ok[i] {
			out = append(out, r)
			bytes += size[i]
		}
	}
	sc.Count("sr_objects_downloaded", int64(len(out)))
	sc.Count("sr_bytes_downloaded", bytes)
	sc.Log.Info("SR objects read from the bucket", "objects", len(out), "failed", len(rows)-len(out), "bytes", bytes)
	return out, nil
}

// readSRObject downloads one SR object into dir and fills r's content from it; it returns
// the object's size.
func (st *Stage) readSRObject(ctx context.Context, r *srObjectRow, dir string) (int64, error) {
	item := r.SRSOPUID
	key, err := gcp.ParseIDCURL(r.GCSURL)
	if err != nil {
		return 0, pipeline.Itemf(pipeline.ClassInput, item, "patient %s: SR %s: %w", r.PatientID, item, err)
	}
	path := filepath.Join(dir, key.Instance+".dcm")
	res, err := st.objects.Download(ctx, key.Bucket, key.Key(), path, r.InstanceSize)
	if err != nil {
		var de *gcp.Error
		switch {
		case errors.As(err, &de) && de.Kind == gcp.KindDisk:
			return 0, pipeline.Haltf("SR objects' temporary folder: %w", err)
		case errors.As(err, &de):
			return 0, pipeline.Itemf(de.Kind.Class(), item, "patient %s: SR %s: %w", r.PatientID, item, err)
		}
		return 0, err // the context's cause
	}
	defer os.Remove(path)
	doc, err := readSRFile(path)
	if err != nil {
		return 0, pipeline.Itemf(pipeline.ClassDICOM, item, "patient %s: SR %s (%s): %w", r.PatientID, item, r.GCSURL, err)
	}
	if doc.SOPInstanceUID != r.SRSOPUID {
		return 0, pipeline.Itemf(pipeline.ClassInput, item, "patient %s: SR object %s holds SOP instance %q, dicom_all says %q",
			r.PatientID, r.GCSURL, doc.SOPInstanceUID, r.SRSOPUID)
	}
	r.EvidenceJSON, r.ContentJSON = string(doc.Evidence), string(doc.Content)
	r.TemplateID = templateID(string(doc.ContentTemplate))
	return res.Bytes, nil
}

func readSRFile(path string) (sr.Document, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return sr.Document{}, err
	}
	doc, err := sr.ReadDICOM(b)
	if err != nil {
		return sr.Document{}, fmt.Errorf("read SR object: %w", err)
	}
	return doc, nil
}
