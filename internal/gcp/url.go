package gcp

import (
	"fmt"
	"regexp"
	"strings"
)

// uuidSegment is one IDC path segment: a CRDC uuid (lower-case hex and dashes, 36 characters).
var uuidSegment = regexp.MustCompile(`^[0-9a-f-]{36}$`)

// bucketName is a GCS bucket name (the DNS-style subset IDC uses).
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)

// IDCKey is a validated IDC object: gs://<Bucket>/<Series>/<Instance>.dcm.
type IDCKey struct {
	Bucket   string
	Series   string // crdc_series_uuid
	Instance string // crdc_instance_uuid
}

// Key is the object key inside the bucket.
func (k IDCKey) Key() string { return k.Series + "/" + k.Instance + ".dcm" }

// ValidUUID reports whether s can be an IDC path segment. Only such segments become local
// paths, so a crafted gcs_url or uuid cannot escape the cache ("..", "/", absolute paths).
func ValidUUID(s string) bool { return uuidSegment.MatchString(s) }

// ParseIDCURL splits and validates a gcs_url of the form gs://bucket/<uuid>/<uuid>.dcm. The
// bucket is whatever the URL names: IDC has moved collections between buckets, so it is never
// assumed.
func ParseIDCURL(u string) (IDCKey, error) {
	rest, ok := strings.CutPrefix(u, "gs://")
	if !ok {
		return IDCKey{}, fmt.Errorf("gcs_url %q: want gs://bucket/<series uuid>/<instance uuid>.dcm", u)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return IDCKey{}, fmt.Errorf("gcs_url %q: want gs://bucket/<series uuid>/<instance uuid>.dcm", u)
	}
	inst, ok := strings.CutSuffix(parts[2], ".dcm")
	k := IDCKey{Bucket: parts[0], Series: parts[1], Instance: inst}
	switch {
	case !bucketName.MatchString(k.Bucket) || strings.Contains(k.Bucket, ".."):
		return IDCKey{}, fmt.Errorf("gcs_url %q: bad bucket name %q", u, k.Bucket)
	case !ValidUUID(k.Series):
		return IDCKey{}, fmt.Errorf("gcs_url %q: series segment %q is not a uuid", u, k.Series)
	case !ok || !ValidUUID(k.Instance):
		return IDCKey{}, fmt.Errorf("gcs_url %q: object %q is not <uuid>.dcm", u, parts[2])
	}
	return k, nil
}
