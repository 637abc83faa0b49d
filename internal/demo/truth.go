package demo

// Tumour is the ground truth of one generated tumour (truth.json).
type Tumour struct {
	PatientID         string     `json:"patient_id"`
	StudyInstanceUID  string     `json:"study_instance_uid"`
	SeriesInstanceUID string     `json:"series_instance_uid"`
	Index             int        `json:"index"` // within the patient
	Kind              string     `json:"kind"`
	Texture           string     `json:"texture"`
	DiameterMM        float64    `json:"diameter_mm"`
	CentreLPS         [3]float64 `json:"centre_lps"`
	Lobe              string     `json:"lobe"` // NLST sct_epi_loc code
	Boxes             []TruthBox `json:"boxes"`
}

// TruthBox is one SR bounding box of a tumour.
type TruthBox struct {
	TrackingID     string     `json:"tracking_id"`
	TrackingUID    string     `json:"tracking_uid"`
	SOPInstanceUID string     `json:"sop_instance_uid"`
	InstanceNumber int        `json:"instance_number"`
	Pixels         [4]float64 `json:"pixels"` // x0, y0, x1, y1 (pixel-edge coordinates)
}

func (p *patient) truth(boxes []srBox) []Tumour {
	out := make([]Tumour, len(p.Tumours))
	for i, t := range p.Tumours {
		out[i] = Tumour{
			PatientID: p.PatientID, StudyInstanceUID: p.StudyUID, SeriesInstanceUID: p.CT.UID,
			Index: t.Index, Kind: t.Kind, Texture: t.Texture, DiameterMM: round(t.Diameter, 2),
			CentreLPS: [3]float64{round(t.Centre[0], 3), round(t.Centre[1], 3), round(t.Centre[2], 3)},
			Lobe:      t.Lobe,
		}
	}
	for _, b := range boxes {
		in := p.CT.Instances[b.Slice]
		out[b.Box.Tumour].Boxes = append(out[b.Box.Tumour].Boxes, TruthBox{
			TrackingID: b.TrackingID, TrackingUID: b.TrackingUID, SOPInstanceUID: in.SOPUID, InstanceNumber: in.Number,
			Pixels: [4]float64{float64(b.Box.C0), float64(b.Box.R0), float64(b.Box.C1 + 1), float64(b.Box.R1 + 1)},
		})
	}
	return out
}
