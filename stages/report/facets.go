package report

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"connectome/internal/tables"
)

// Colour-blind-safe palettes. Categorical: Okabe & Ito (2008) without black, then Paul Tol's
// "muted" scheme; ordinal (age band, stage): Paul Tol's YlOrBr sequential scheme, light to
// dark, readable on the page's dark background.
var (
	categoricalPalette = []string{
		"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
		"#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499",
	}
	ordinalPalette = []string{"#FFF7BC", "#FEE391", "#FEC44F", "#FB9A29", "#EC7014", "#CC4C02", "#993404", "#662506"}
)

const (
	unknownColor = "#7a7f8a"
	unknownLabel = "Unknown"
	otherLabel   = "Other"
)

// facet is one way of colouring the nodes.
type facet struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	// Available is false when the run has no data for this facet (no clinical table); the
	// page then greys the option out.
	Available  bool       `json:"available"`
	Categories []category `json:"categories"`
	// Values holds, per node, the index of its category; empty when not available.
	Values []int `json:"values,omitempty"`
}

type category struct {
	Name  string `json:"name"`
	Color string `json:"color"`
	Count int    `json:"count"`
}

// facetKeys are the six clinical facets in menu order; the URL parameter `facet` takes a key.
var facetLabels = [][2]string{
	{"cancer", "Cancer type"}, {"stage", "Stage"}, {"sex", "Sex"},
	{"age", "Age band"}, {"race", "Race"}, {"smoking", "Smoking status"},
}

// buildFacets colours nodes by their clinical rows: clin holds each node's row (nil when it
// has none). Without clinical data (clin nil) every facet is unavailable.
func buildFacets(clin []*tables.Clinical) []facet {
	out := make([]facet, 0, len(facetLabels))
	for _, kl := range facetLabels {
		f := facet{Key: kl[0], Label: kl[1]}
		if clin == nil {
			out = append(out, f)
			continue
		}
		raw := make([]string, len(clin)) // category name per node; "" = unknown
		var order func(a, b string) int
		ordinal := false
		for i, c := range clin {
			if c == nil {
				continue
			}
			switch f.Key {
			case "cancer":
				raw[i] = cancerFamily(c.CancerType)
			case "stage":
				raw[i] = stageLabel(c)
			case "sex":
				raw[i] = sexLabel(c.Sex)
			case "age":
				raw[i] = ageBand(c.Age)
			case "race":
				raw[i] = known(c.Race)
			case "smoking":
				raw[i] = known(c.Smoking)
			}
		}
		switch f.Key {
		case "stage":
			ordinal = true
			codes := map[string]string{}
			for _, c := range clin {
				if c != nil {
					codes[stageLabel(c)] = c.StageCode
				}
			}
			order = func(a, b string) int { return cmpCode(codes[a], codes[b], a, b) }
		case "age":
			ordinal = true
			order = func(a, b string) int { return cmp.Compare(ageBandStart(a), ageBandStart(b)) }
		}
		f.Categories, f.Values = categorize(raw, ordinal, order)
		f.Available = anyKnown(raw)
		out = append(out, f)
	}
	return out
}

// categorize turns per-node names into categories with colours. Unordered facets list the
// most frequent first; beyond the palette the rarest merge into "Other". Unknown is last.
func categorize(raw []string, ordinal bool, order func(a, b string) int) ([]category, []int) {
	counts := map[string]int{}
	for _, r := range raw {
		if r != "" {
			counts[r]++
		}
	}
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	palette := categoricalPalette
	if ordinal {
		palette = ordinalPalette
		slices.SortFunc(names, order)
	} else {
		slices.SortFunc(names, func(a, b string) int {
			return cmp.Or(cmp.Compare(counts[b], counts[a]), strings.Compare(a, b))
		})
	}
	rename := map[string]string{}
	if len(names) > len(palette) {
		keep := len(palette) - 1
		for _, n := range names[keep:] {
			rename[n] = otherLabel
		}
		names = append(names[:keep:keep], otherLabel)
	}
	var cats []category
	index := map[string]int{}
	for i, n := range names {
		color := palette[i]
		if ordinal && len(names) < len(palette) {
			// Spread few ordinal levels over the whole scale.
			color = palette[i*(len(palette)-1)/max(1, len(names)-1)]
		}
		index[n] = len(cats)
		cats = append(cats, category{Name: n, Color: color})
	}
	unknown := -1
	vals := make([]int, len(raw))
	for i, r := range raw {
		if r == "" {
			if unknown < 0 {
				unknown = len(cats)
				cats = append(cats, category{Name: unknownLabel, Color: unknownColor})
			}
			vals[i] = unknown
			cats[unknown].Count++
			continue
		}
		if to, ok := rename[r]; ok {
			r = to
		}
		vals[i] = index[r]
		cats[vals[i]].Count++
	}
	return cats, vals
}

// known trims s and maps the spellings of "not known" to "", so they join the Unknown
// category instead of making a second one.
func known(s string) string {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "unknown", "not known", "missing", "na", "n/a", "none", "null":
		return ""
	}
	return s
}

func anyKnown(raw []string) bool {
	for _, r := range raw {
		if r != "" {
			return true
		}
	}
	return false
}

// cancerFamily groups an ICD-O-3 morphology label into the families a reader compares: the
// published page's groups (and its tests, in this order), plus carcinoid.
func cancerFamily(t string) string {
	s := strings.ToLower(strings.TrimSpace(t))
	switch {
	case s == "":
		return ""
	case strings.Contains(s, "small cell") && !strings.Contains(s, "non-small"):
		return "Small cell"
	case strings.Contains(s, "squamous"), strings.Contains(s, "sq. cell"):
		return "Squamous cell"
	case strings.Contains(s, "large cell"):
		return "Large cell"
	case strings.Contains(s, "adenocarcinoma"), strings.Contains(s, "bronchiolo"),
		strings.Contains(s, "mucinous"), strings.Contains(s, "lepidic"), strings.Contains(s, "acinar"):
		return "Adenocarcinoma"
	case strings.Contains(s, "carcinoid"):
		return "Carcinoid"
	default:
		return "Other"
	}
}

func stageLabel(c *tables.Clinical) string {
	if s := strings.TrimSpace(c.Stage); s != "" {
		return s
	}
	if c.StageCode != "" {
		return "Stage code " + c.StageCode
	}
	return ""
}

func sexLabel(s string) string {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "":
		return ""
	case "M", "MALE", "1":
		return "Male"
	case "F", "FEMALE", "2":
		return "Female"
	}
	return known(s)
}

func ageBand(age int32) string {
	if age < 0 {
		return ""
	}
	if age < 55 {
		return "< 55"
	}
	if age >= 75 {
		return "75+"
	}
	lo := age / 5 * 5
	return strconv.Itoa(int(lo)) + "–" + strconv.Itoa(int(lo)+4)
}

// ageBandStart is the lower bound of a band made by ageBand ("< 55" sorts first).
func ageBandStart(band string) int {
	n, err := strconv.Atoi(strings.TrimRight(strings.SplitN(band, "–", 2)[0], "+"))
	if err != nil {
		return -1
	}
	return n
}

// cmpCode orders by numeric code when both parse, then by code text, then by label.
func cmpCode(ca, cb, a, b string) int {
	na, ea := strconv.ParseFloat(ca, 64)
	nb, eb := strconv.ParseFloat(cb, 64)
	switch {
	case ea == nil && eb == nil && na != nb:
		return cmp.Compare(na, nb)
	case ea == nil && eb != nil:
		return -1
	case ea != nil && eb == nil:
		return 1
	}
	return cmp.Or(strings.Compare(ca, cb), strings.Compare(a, b))
}
