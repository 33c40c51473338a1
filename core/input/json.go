package input

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// FieldError is input that Decode refused, naming the field at fault as a
// JSON path ("addresses[1].gateway"; empty for the document itself).
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Options tune Decode.
type Options struct {
	// Prefix is the path of data in a larger document, for field names.
	Prefix string
	// AllowUnknown lets keys that are no field of dst through: for a
	// document whose other keys belong to someone else (a CNI network
	// configuration carries the main plugin's keys). The keys of dst's
	// own fields are still held to the rules below.
	AllowUnknown bool
}

// Decode decodes data, exactly one JSON value, into dst (a pointer) under
// the one strict rule of the agent's inputs, at every level of nesting:
//
//   - a key given twice is an error (encoding/json keeps the last one
//     silently, so two readers of one document could disagree);
//   - a key whose case differs from its field's ("Interface" for
//     "interface") is an error (encoding/json matches case-insensitively);
//   - a key that is no field is an error (unless opts.AllowUnknown);
//   - a value of the wrong type, bad JSON or trailing data is an error.
//
// Errors are *FieldError naming the field, and echo at most MaxEcho bytes
// of any key.
func Decode(data []byte, dst any, opts Options) error {
	if t := reflect.TypeOf(dst); t != nil {
		if err := checkValue(data, t, opts.Prefix, opts.AllowUnknown); err != nil {
			return err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if !opts.AllowUnknown {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(dst); err != nil {
		return decodeErr(err, opts.Prefix)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fieldErr(opts.Prefix, "unexpected data after the JSON value")
	}
	return nil
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkValue applies the key rules to data as a value of type t. Data that
// does not have t's shape is left to the decoder, which words type and
// syntax errors.
func checkValue(data []byte, t reflect.Type, path string, allowUnknown bool) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// A type that decodes itself (netip.Prefix, time.Time, RawMessage)
	// owns its syntax.
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		return checkObject(data, path, allowUnknown, true, fieldsOf(t))
	case reflect.Map:
		elem := t.Elem()
		return checkObject(data, path, allowUnknown, false, func(string) (reflect.Type, string, bool) { return elem, "", true })
	case reflect.Slice, reflect.Array:
		dec := json.NewDecoder(bytes.NewReader(data))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return nil
		}
		for i := 0; dec.More(); i++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil
			}
			if err := checkValue(raw, t.Elem(), fmt.Sprintf("%s[%d]", path, i), allowUnknown); err != nil {
				return err
			}
		}
	}
	return nil
}

// lookup finds the field a key names: its type, its exact key when it
// differs from key only in case, and whether there is one at all.
type lookup func(key string) (t reflect.Type, exact string, ok bool)

// checkObject applies the key rules to the keys of data, an object; fold:
// keys that differ only in case are the same (a struct's fields, not a
// map's keys).
func checkObject(data []byte, path string, allowUnknown, fold bool, find lookup) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]string{} // key, lower case when fold -> key as given
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil // the decoder words syntax errors
		}
		key, _ := tok.(string)
		field := Join(path, Cut(key))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil
		}
		t, exact, ok := find(key)
		norm := key
		if fold {
			norm = strings.ToLower(key)
		}
		prev, dup := seen[norm]
		switch {
		case dup && prev == key:
			return fieldErr(field, "the key %s is given twice", Quote(key))
		case dup:
			return fieldErr(field, "the keys %s and %s name the same field", Quote(prev), Quote(key))
		case exact != "" && exact != key:
			return fieldErr(field, "unknown field %s: keys are case-sensitive, did you mean %q?", Quote(key), exact)
		case !ok && !allowUnknown:
			return fieldErr(field, "unknown field %s", Quote(key))
		}
		seen[norm] = key
		if ok {
			if err := checkValue(raw, t, Join(path, key), allowUnknown); err != nil {
				return err
			}
		}
	}
	return nil
}

// fieldsOf is the lookup of a struct's JSON keys, embedded structs'
// fields included, as encoding/json names them.
func fieldsOf(t reflect.Type) lookup {
	fields := map[string]reflect.StructField{} // exact key -> field
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
				walk(ft)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, taken := fields[name]; !taken {
				fields[name] = f
			}
		}
	}
	walk(t)
	lower := map[string]string{}
	for name := range fields {
		lower[strings.ToLower(name)] = name
	}
	return func(key string) (reflect.Type, string, bool) {
		if f, ok := fields[key]; ok {
			return f.Type, "", true
		}
		if exact, ok := lower[strings.ToLower(key)]; ok {
			return fields[exact].Type, exact, false
		}
		return nil, "", false
	}
}

// Join is the JSON path of field under prefix.
func Join(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

// decodeErr words encoding/json's error as a *FieldError.
func decodeErr(err error, prefix string) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		want := typeErr.Type.Kind().String()
		switch want {
		case "slice", "array":
			want = "a list"
		case "struct", "map":
			want = "an object"
		default:
			want = "a " + want
		}
		return fieldErr(Join(prefix, typeErr.Field), "want %s, got a JSON %s", want, typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fieldErr(prefix, "invalid JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fieldErr(prefix, "the JSON ends too early")
	}
	// encoding/json words an unknown field as: json: unknown field "NAME".
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return fieldErr(Join(prefix, Cut(name)), "unknown field %s", Quote(name))
	}
	return fieldErr(prefix, "%v", err)
}
