package input

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuoteCutsLongInput(t *testing.T) {
	long := strings.Repeat("x", 10240)
	if got := Quote(long); len(got) > MaxEcho+40 || !strings.HasSuffix(got, `"... (10240 bytes, cut)`) {
		t.Errorf("Quote(10 KiB) = %q", got)
	}
	if got := Quote("eth0"); got != `"eth0"` {
		t.Errorf("Quote(eth0) = %s", got)
	}
	if got := Cut(long); !strings.HasPrefix(got, strings.Repeat("x", MaxEcho)+"... ") {
		t.Errorf("Cut(10 KiB) = %q", got)
	}
	// A character across the bound is not cut in two.
	s := strings.Repeat("x", MaxEcho-1) + "é" + strings.Repeat("y", 10)
	if got := Cut(s); !utf8.ValidString(got) || strings.Contains(got, "é") {
		t.Errorf("Cut = %q, want valid UTF-8 without the straddling character", got)
	}
	err := errors.New(`netip.ParsePrefix("` + long + `"): no '/'`)
	if got := CutError(err, long); len(got) > 2*MaxEcho || !strings.Contains(got, "(10240 bytes, cut)") || !strings.HasSuffix(got, "no '/'") {
		t.Errorf("CutError = %q", got)
	}
}

type inner struct {
	Address string `json:"address"`
}

type Embedded struct {
	ID string `json:"id"`
}

type outer struct {
	Embedded
	Name   string            `json:"name"`
	Items  []inner           `json:"items"`
	ByName map[string]inner  `json:"by_name"`
	Ptr    *inner            `json:"ptr"`
	Labels map[string]string `json:"labels"`
}

func TestDecodeRefusesWhatJSONAcceptsSilently(t *testing.T) {
	for _, tc := range []struct {
		name, data, field, says string
		allowUnknown            bool
	}{
		{"key twice", `{"name":"a","name":"b"}`, "name", `the key "name" is given twice`, false},
		{"wrong case", `{"Name":"a"}`, "Name", `keys are case-sensitive, did you mean "name"?`, false},
		{"wrong case when unknown keys pass", `{"NAME":"a"}`, "NAME", `did you mean "name"?`, true},
		{"twice when unknown keys pass", `{"name":"a","name":"b"}`, "name", "given twice", true},
		{"same field in two cases", `{"name":"a","nAme":"b"}`, "nAme", `the keys "name" and "nAme" name the same field`, false},
		{"embedded field twice", `{"id":"a","id":"b"}`, "id", "given twice", false},
		{"embedded field wrong case", `{"ID":"a"}`, "ID", `did you mean "id"?`, false},
		{"nested list", `{"items":[{"address":"a"},{"address":"a","Address":"b"}]}`, "items[1].Address", "name the same field", false},
		{"nested map value", `{"by_name":{"x":{"ADDRESS":"a"}}}`, "by_name.x.ADDRESS", `did you mean "address"?`, false},
		{"map key twice", `{"labels":{"a":"1","a":"2"}}`, "labels.a", "given twice", false},
		{"pointer", `{"ptr":{"address":"a","address":"b"}}`, "ptr.address", "given twice", false},
		{"unknown", `{"nme":"a"}`, "nme", `unknown field "nme"`, false},
		{"type", `{"name":7}`, "name", "want a string, got a JSON number", false},
		{"trailing", `{"name":"a"} {}`, "", "after the JSON value", false},
		{"cut off", `{"name":"a"`, "", "ends too early", false},
	} {
		var dst outer
		err := Decode([]byte(tc.data), &dst, Options{AllowUnknown: tc.allowUnknown})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.says) {
			t.Errorf("%s: %v, want field %q saying %q", tc.name, err, tc.field, tc.says)
		}
	}
	var dst outer
	if err := Decode([]byte(`{"id":"i","name":"n","items":[{"address":"a"}],"labels":{"a":"1","A":"2"},"other":1}`), &dst, Options{AllowUnknown: true}); err != nil || dst.ID != "i" || dst.Labels["A"] != "2" {
		t.Errorf("a good document: %v %+v", err, dst)
	}
	if err := Decode([]byte(`{"name":"n","`+strings.Repeat("k", 10000)+`":1}`), &dst, Options{Prefix: "top"}); err == nil || len(err.Error()) > 4*MaxEcho {
		t.Errorf("a 10 KB unknown key: %.400v", err)
	}
}
