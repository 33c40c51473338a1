package command

import "testing"

// The SINCE column prints the stored time to the second, whatever its
// fraction and zone, as the parse-and-format it replaced did.
func TestWholeSeconds(t *testing.T) {
	for in, want := range map[string]string{
		"2026-12-06T10:00:00.123456789Z":      "2026-12-06T10:00:00Z",
		"2026-12-06T10:00:00Z":                "2026-12-06T10:00:00Z",
		"2026-12-06T11:00:00.5+01:00":         "2026-12-06T11:00:00+01:00",
		"0001-01-01T00:00:00Z":                "0001-01-01T00:00:00Z",
		"":                                    "",
		"2026-12-06T10:00:00.123456789-07:30": "2026-12-06T10:00:00-07:30",
	} {
		if got := wholeSeconds(in); got != want {
			t.Errorf("wholeSeconds(%q) = %q, want %q", in, got, want)
		}
	}
}
