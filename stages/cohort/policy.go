package cohort

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"connectome/internal/tables"
)

// oneLesionPerPatient applies the default policy: per patient pick one annotated series —
// the earliest screening year (unknown last), then the series with the most usable boxes,
// then the smallest series UID — and keep the patient only when that series holds exactly
// one lesion. It returns the kept lesions and how many patients were dropped.
func oneLesionPerPatient(lesions []tables.Lesion) (kept []tables.Lesion, dropped int) {
	type seriesStat struct {
		uid     string
		year    int32
		boxes   int32
		lesions []tables.Lesion
	}
	byPatient := map[string]map[string]*seriesStat{}
	var patients []string
	for _, l := range lesions {
		m, ok := byPatient[l.PatientID]
		if !ok {
			m = map[string]*seriesStat{}
			byPatient[l.PatientID] = m
			patients = append(patients, l.PatientID)
		}
		st, ok := m[l.SeriesInstanceUID]
		if !ok {
			st = &seriesStat{uid: l.SeriesInstanceUID, year: l.StudyYear}
			m[l.SeriesInstanceUID] = st
		}
		st.boxes += l.NBoxes
		st.lesions = append(st.lesions, l)
	}
	slices.Sort(patients)
	for _, p := range patients {
		var all []*seriesStat
		for _, st := range byPatient[p] {
			all = append(all, st)
		}
		yearKey := func(y int32) int32 {
			if y < 0 {
				return math.MaxInt32
			}
			return y
		}
		best := slices.MinFunc(all, func(a, b *seriesStat) int {
			return cmp.Or(cmp.Compare(yearKey(a.year), yearKey(b.year)), cmp.Compare(b.boxes, a.boxes), cmp.Compare(a.uid, b.uid))
		})
		if len(best.lesions) == 1 {
			kept = append(kept, best.lesions[0])
		} else {
			dropped++
		}
	}
	return kept, dropped
}

// ctabRow is one nlst_ctab abnormality: its key slice per screening year.
type ctabRow struct {
	PatientID, StudyYr, SliceNum string
}

// presetCounts are the row counts after each step of the published-2026 preset
// (idc-data-model §6.1), logged and stored as stage counters.
type presetCounts struct {
	SingleBoxSOPs, CtabMatched, SingleMatch, ListedType, Patients int
}

// published2026 reproduces the published cohort (idc-data-model §6.1 and §7.1):
//  1. keep CT slices with exactly one usable box;
//  2. match the slice to nlst_ctab on (patient, InstanceNumber = sct_slice_num,
//     study_yr = screening year) and require a valid stage (de_stag 110..400);
//  3. drop slices that match more than one abnormality;
//  4. keep listed ICD-O-3 codes (configs/nlst-labels.yaml published_cancer_types);
//  5. keep patients with exactly one remaining record.
//
// A record becomes one lesion: its centre is the box centre on the key slice, placed like
// the original notebooks (voxel index floor(centre) → LPS via the slice's own IPP), see
// docs/cohort-policies.md for the deviations.
func published2026(boxes []placedBox, ctab []ctabRow, prsn map[string]prsnRow, labels *Labels) ([]tables.Lesion, presetCounts) {
	var c presetCounts
	matches := ctabMatches(ctab, labels)
	perPatient := map[string][]tables.Lesion{}
	var patients []string
	for _, b := range singleBoxSlices(boxes) {
		c.SingleBoxSOPs++
		year := studyYear(b.obj.StudyDate)
		if !presetKeeps(b, year, matches, prsn, labels, &c) {
			continue
		}
		l := presetLesion(b, year)
		if _, ok := perPatient[l.PatientID]; !ok {
			patients = append(patients, l.PatientID)
		}
		perPatient[l.PatientID] = append(perPatient[l.PatientID], l)
	}
	slices.Sort(patients)
	var out []tables.Lesion
	for _, p := range patients {
		if len(perPatient[p]) == 1 {
			out = append(out, perPatient[p][0])
		}
	}
	c.Patients = len(out)
	return out, c
}

// singleBoxSlices returns the boxes that are alone on their CT slice, in the order their
// slices first appear (step 1).
func singleBoxSlices(boxes []placedBox) []placedBox {
	type sliceKey struct{ series, sop string }
	perSlice := map[sliceKey][]placedBox{}
	var order []sliceKey
	for _, b := range boxes {
		k := sliceKey{b.obj.CTSeriesUID, b.inst.SOPInstanceUID}
		if _, ok := perSlice[k]; !ok {
			order = append(order, k)
		}
		perSlice[k] = append(perSlice[k], b)
	}
	var out []placedBox
	for _, k := range order {
		if bs := perSlice[k]; len(bs) == 1 {
			out = append(out, bs[0])
		}
	}
	return out
}

// ctabKey is an nlst_ctab abnormality's key slice: patient, screening year, slice number.
type ctabKey struct {
	patient string
	year    int32
	slice   int64
}

// ctabMatches counts the abnormalities per key slice; a "missing" slice code (999 in NLST's
// dictionary) is no slice, even in a series of 999 or more images.
func ctabMatches(ctab []ctabRow, labels *Labels) map[ctabKey]int {
	matches := map[ctabKey]int{}
	for _, r := range ctab {
		if slices.Contains(labels.SliceNumMissing, strings.TrimSpace(r.SliceNum)) {
			continue
		}
		y, err1 := strconv.Atoi(strings.TrimSpace(r.StudyYr))
		n, err2 := parseInt(r.SliceNum)
		if err1 != nil || err2 != nil {
			continue // a NULL or non-numeric key slice matches nothing
		}
		matches[ctabKey{r.PatientID, int32(y), n}]++
	}
	return matches
}

// presetKeeps applies steps 2 to 4 to a single-box slice of screening year year, counting
// in c the slices that pass each step.
func presetKeeps(b placedBox, year int32, matches map[ctabKey]int, prsn map[string]prsnRow, labels *Labels, c *presetCounts) bool {
	n := matches[ctabKey{b.obj.PatientID, year, int64(b.inst.InstanceNumber)}]
	if n == 0 {
		return false
	}
	p, ok := prsn[b.obj.PatientID]
	if !ok || !labels.validStage(p.DeStag) {
		return false
	}
	c.CtabMatched++
	if n != 1 {
		return false
	}
	c.SingleMatch++
	if !labels.publishedCancerType(p.DeType) {
		return false
	}
	c.ListedType++
	return true
}

// presetLesion places a preset record like the original notebooks: voxel index
// floor(box centre) on the key slice, mapped through that slice's IPP.
func presetLesion(b placedBox, year int32) tables.Lesion {
	cx, cy := (b.x0+b.x1)/2, (b.y0+b.y1)/2
	o := b.obj
	return tables.Lesion{
		LesionID:            LesionID(o.CTSeriesUID, lesionKey([]placedBox{b})),
		PatientID:           o.PatientID,
		StudyInstanceUID:    o.StudyUID,
		SeriesInstanceUID:   o.CTSeriesUID,
		SRSeriesInstanceUID: o.SRSeriesUID,
		SRSOPInstanceUID:    o.SRSOPUID,
		KeySOPInstanceUID:   b.inst.SOPInstanceUID,
		CenterMM:            voxelToLPS(b.inst, math.Floor(cx), math.Floor(cy)),
		NBoxes:              1,
		BoxMinMM:            b.min,
		BoxMaxMM:            b.max,
		StudyYear:           year,
	}
}

func parseInt(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) {
		return 0, fmt.Errorf("not an integer: %q", s)
	}
	return int64(f), nil
}
