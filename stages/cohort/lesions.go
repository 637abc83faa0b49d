package cohort

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"connectome/internal/sr"
	"connectome/internal/tables"
	"connectome/pipeline"
)

// srObject is one NLST-Sybil SR: the CT series it annotates and its measurement groups.
type srObject struct {
	PatientID, StudyUID, StudyDate string
	SRSeriesUID, SRSOPUID          string
	CTSeriesUID                    string
	Boxes                          []sr.Box
}

// boxItem names a measurement group in failures.arrow: the SR SOP UID and the group's
// 1-based position in the document.
func boxItem(o *srObject, b sr.Box) string { return fmt.Sprintf("%s#%d", o.SRSOPUID, b.Group+1) }

// series is a CT series' instances ordered along the slice normal.
type series struct {
	UID       string
	Instances []*tables.Instance // sorted by position, valid geometry only
	pos       []float64          // position of each instance along the normal (mm)
	rank      map[string]int     // SOP UID → slice index (equal positions share an index)
	bySOP     map[string]*tables.Instance
	missing   map[string][]string // SOP UID → geometry columns that were NULL
	normal    vec3
}

// newSeries orders the instances of one series. Instances whose geometry is unusable are
// left out of the order (they are reported by the caller when a box needs them).
func newSeries(uid string, all []*tables.Instance) *series {
	s := &series{UID: uid, rank: map[string]int{}, bySOP: map[string]*tables.Instance{}}
	for _, in := range all {
		s.bySOP[in.SOPInstanceUID] = in
		if checkGeometry(in) == nil {
			s.Instances = append(s.Instances, in)
		}
	}
	return s.reindex()
}

// reindex sorts the instances along the slice normal and assigns slice indices.
func (s *series) reindex() *series {
	s.pos, s.rank = nil, map[string]int{}
	if len(s.Instances) == 0 {
		return s
	}
	s.normal = normal(s.Instances[0])
	slices.SortStableFunc(s.Instances, func(a, b *tables.Instance) int {
		return cmp.Or(cmp.Compare(dot(vec3(a.ImagePositionPatient), s.normal), dot(vec3(b.ImagePositionPatient), s.normal)),
			cmp.Compare(a.SOPInstanceUID, b.SOPInstanceUID))
	})
	r := -1
	for i, in := range s.Instances {
		p := dot(vec3(in.ImagePositionPatient), s.normal)
		if i == 0 || p-s.pos[i-1] > 1e-3 {
			r++
		}
		s.pos = append(s.pos, p)
		s.rank[in.SOPInstanceUID] = r
	}
	return s
}

// nearest returns the instance whose plane is nearest to p; on a tie, the one lower along
// the normal (deterministic).
func (s *series) nearest(p vec3) *tables.Instance {
	d := dot(p, s.normal)
	best, bestD := -1, math.Inf(1)
	for i, q := range s.pos {
		if dd := math.Abs(q - d); dd < bestD-1e-6 {
			best, bestD = i, dd
		}
	}
	if best < 0 {
		return nil
	}
	return s.Instances[best]
}

// placedBox is a usable box on a known slice.
type placedBox struct {
	obj            *srObject
	box            sr.Box
	inst           *tables.Instance
	rank           int
	x0, y0, x1, y1 float64 // pixel extent
	min, max       vec3    // LPS extent (mm)
}

// placeBoxes checks every measurement group of o against the series and returns the usable
// ones; the others are reported through fail with the reason.
func placeBoxes(o *srObject, s *series, fail func(string, error)) []placedBox {
	var out []placedBox
	for _, b := range o.Boxes {
		item := boxItem(o, b)
		desc := fmt.Sprintf("patient %s, SR %s, group %d (%q)", o.PatientID, o.SRSOPUID, b.Group+1, b.TrackingID)
		if b.Err != nil {
			fail(item, pipeline.Itemf(pipeline.ClassInput, item, "%s: %v", desc, b.Err))
			continue
		}
		in, ok := s.bySOP[b.SOPInstanceUID]
		if m := s.missing[b.SOPInstanceUID]; ok && len(m) > 0 {
			fail(item, pipeline.Itemf(pipeline.ClassGeometry, item,
				"%s: CT slice %s has NULL %s in dicom_all", desc, b.SOPInstanceUID, strings.Join(m, ", ")))
			continue
		}
		if !ok {
			fail(item, pipeline.Itemf(pipeline.ClassNotFound, item,
				"%s: box is drawn on CT slice %s, which is not an instance of series %s", desc, b.SOPInstanceUID, s.UID))
			continue
		}
		if err := checkGeometry(in); err != nil {
			fail(item, pipeline.Itemf(pipeline.ClassGeometry, item,
				"%s: CT slice %s has no usable geometry: %v", desc, b.SOPInstanceUID, err))
			continue
		}
		p := placedBox{obj: o, box: b, inst: in, rank: s.rank[in.SOPInstanceUID]}
		p.x0, p.y0, p.x1, p.y1 = b.Rect()
		p.min, p.max = vec3{math.Inf(1), math.Inf(1), math.Inf(1)}, vec3{math.Inf(-1), math.Inf(-1), math.Inf(-1)}
		for _, c := range [][2]float64{{p.x0, p.y0}, {p.x1, p.y0}, {p.x0, p.y1}, {p.x1, p.y1}} {
			q := pixelToLPS(in, c[0], c[1])
			for a := range 3 {
				p.min[a], p.max[a] = math.Min(p.min[a], q[a]), math.Max(p.max[a], q[a])
			}
		}
		out = append(out, p)
	}
	return out
}

// groupBoxes joins the boxes of one series into 3-D lesions: two boxes belong to the same
// lesion when their slices are at most maxGap slices apart and their pixel rectangles
// overlap (positive area), and the relation is closed transitively (union-find). Pixel
// rectangles are comparable because the slices of one series share one image grid.
func groupBoxes(boxes []placedBox, maxGap int) [][]placedBox {
	parent := make([]int, len(boxes))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	for i := range boxes {
		for j := i + 1; j < len(boxes); j++ {
			a, b := &boxes[i], &boxes[j]
			gap := a.rank - b.rank
			if gap < 0 {
				gap = -gap
			}
			if gap <= maxGap && math.Min(a.x1, b.x1) > math.Max(a.x0, b.x0) && math.Min(a.y1, b.y1) > math.Max(a.y0, b.y0) {
				parent[find(i)] = find(j)
			}
		}
	}
	groups := map[int][]placedBox{}
	var roots []int
	for i := range boxes {
		r := find(i)
		if _, ok := groups[r]; !ok {
			roots = append(roots, r)
		}
		groups[r] = append(groups[r], boxes[i])
	}
	out := make([][]placedBox, 0, len(roots))
	for _, r := range roots {
		out = append(out, groups[r])
	}
	// Order: lowest slice first, then leftmost, so output order is stable too.
	slices.SortFunc(out, func(a, b []placedBox) int {
		return cmp.Or(cmp.Compare(minRank(a), minRank(b)), cmp.Compare(minX(a), minX(b)), cmp.Compare(lesionKey(a), lesionKey(b)))
	})
	return out
}

func minRank(g []placedBox) int {
	m := math.MaxInt
	for _, b := range g {
		m = min(m, b.rank)
	}
	return m
}

func minX(g []placedBox) float64 {
	m := math.Inf(1)
	for _, b := range g {
		m = math.Min(m, b.x0)
	}
	return m
}

// lesionKey identifies a group of boxes independently of query order: the sorted tracking
// UIDs, or for a box without one its slice SOP UID and pixel rectangle.
func lesionKey(g []placedBox) string {
	keys := make([]string, len(g))
	for i, b := range g {
		if b.box.TrackingUID != "" {
			keys[i] = b.box.TrackingUID
		} else {
			keys[i] = fmt.Sprintf("%s@%.3f,%.3f,%.3f,%.3f", b.box.SOPInstanceUID, b.x0, b.y0, b.x1, b.y1)
		}
	}
	slices.Sort(keys)
	return strings.Join(keys, "\x00")
}

// LesionID is the stable id of a lesion: "L" + the first 16 hex digits of
// SHA-256(CT series UID, NUL, key), where key is the sorted tracking UIDs of the lesion's
// boxes joined by NUL (docs/cohort-policies.md). The same SR content gives the same id in
// every run, whatever order the query returns rows in.
func LesionID(seriesUID, key string) string {
	h := sha256.Sum256([]byte(seriesUID + "\x00" + key))
	return "L" + hex.EncodeToString(h[:8])
}

// lesionFromGroup builds one lesion row: centre = centre of the grouped LPS extent, key
// slice = the series slice nearest to the centre.
func lesionFromGroup(s *series, g []placedBox) tables.Lesion {
	o := g[0].obj
	l := tables.Lesion{
		LesionID:            LesionID(s.UID, lesionKey(g)),
		PatientID:           o.PatientID,
		StudyInstanceUID:    o.StudyUID,
		SeriesInstanceUID:   s.UID,
		SRSeriesInstanceUID: o.SRSeriesUID,
		SRSOPInstanceUID:    o.SRSOPUID,
		NBoxes:              int32(len(g)),
		StudyYear:           studyYear(o.StudyDate),
	}
	l.BoxMinMM = vec3{math.Inf(1), math.Inf(1), math.Inf(1)}
	l.BoxMaxMM = vec3{math.Inf(-1), math.Inf(-1), math.Inf(-1)}
	for _, b := range g {
		for a := range 3 {
			l.BoxMinMM[a] = math.Min(l.BoxMinMM[a], b.min[a])
			l.BoxMaxMM[a] = math.Max(l.BoxMaxMM[a], b.max[a])
		}
	}
	for a := range 3 {
		l.CenterMM[a] = (l.BoxMinMM[a] + l.BoxMaxMM[a]) / 2
	}
	if k := s.nearest(l.CenterMM); k != nil {
		l.KeySOPInstanceUID = k.SOPInstanceUID
	}
	return l
}

// studyYear maps NLST's coded study dates (1999-01-02 = T0, 2000-01-02 = T1,
// 2001-01-02 = T2; idc-data-model §6) to the screening year 0/1/2, or -1.
func studyYear(date string) int32 {
	d := strings.ReplaceAll(strings.TrimSpace(date), "-", "")
	if len(d) < 4 {
		return -1
	}
	y, err := strconv.Atoi(d[:4])
	if err != nil || y < 1999 || y > 2001 {
		return -1
	}
	return int32(y - 1999)
}
