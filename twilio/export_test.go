package twilio

import (
	"bytes"
	"net/url"
)

// ParseFormBytes and ParseFormString expose the form parser of Verify and
// Derive (both instantiations) to the differential tests, shaped like
// url.ParseQuery's result.
func ParseFormBytes(q []byte) (url.Values, error) {
	if !urlParamsWithinLimit(bytes.Count(q, []byte{'&'}) + 1) {
		return url.Values{}, errTooManyParams.err()
	}
	buf, pairs, bad := parseForm(nil, nil, q)
	return valuesOf(buf, pairs), bad.err()
}

func ParseFormString(q string) (url.Values, error) {
	buf, pairs, bad := parseForm(nil, nil, q)
	return valuesOf(buf, pairs), bad.err()
}

// SignedParams is what Verify signs after the URL for a form body.
func SignedParams(q []byte) string {
	buf, pairs, _ := parseForm(nil, nil, q)
	return string(appendSigned(nil, buf, pairs, sortByKey(buf, pairs, nil)))
}

// QueryValues is Verify's reading of a query parameter: its first value as
// url.URL.Query()[name][0], and whether another value differs.
func QueryValues(query, name string) (first string, found, differs bool) {
	val, found, differs, buf := queryValues(nil, query, name, urlParamsWithinLimit)
	return string(buf[val.off:val.end]), found, differs
}

// QueryFirst is Verify's url.URL.Query().Get.
func QueryFirst(query, name string) (string, bool) {
	v, _, ok := queryFirst(nil, query, name, urlParamsWithinLimit)
	return string(v), ok
}

func valuesOf(buf []byte, pairs []pair) url.Values {
	v := url.Values{}
	for _, p := range pairs {
		k := string(buf[p.key.off:p.key.end])
		v[k] = append(v[k], string(buf[p.val.off:p.val.end]))
	}
	return v
}
