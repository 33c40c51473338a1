package api

import (
	"errors"
	"strings"
	"testing"
)

// A check and an allocation judge an interface name by the same rule: a
// name IPAM refuses cannot be checked, and one a check accepts can be
// allocated for.
func TestInterfaceNameRuleIsOne(t *testing.T) {
	tests := []struct {
		name string
		says string // "" when accepted
	}{
		{"eth0", ""},
		{"eth0.100", ""},
		{"a-b_c@d", ""},
		{"abcdefghijklmno", ""},
		{"", "required"},
		{"abcdefghijklmnop", "16 bytes"},
		{".", "not a valid interface name"},
		{"..", "not a valid interface name"},
		{"eth0/1", "'/'"},
		{"eth0:1", "':'"},
		{"eth 0", "' '"},
		{"eth\t0", `'\t'`},
		{"eth\x000", "printable ASCII"},
		{"eth\x01", "printable ASCII"},
		{"eth\x7f", "printable ASCII"},
		{"wlän0", "printable ASCII"},
	}
	for _, tt := range tests {
		_, checkErr := CheckRequest{Interface: tt.name, Addresses: []AddressRequest{{Address: "10.0.0.7/24"}}}.Validate()
		allocErr := AllocateRequest{ContainerID: "c", Interface: tt.name, Pools: []string{"p"}}.Validate()
		releaseErr := ReleaseRequest{ContainerID: "c", Interface: tt.name}.Validate()
		for what, err := range map[string]error{"check": checkErr, "allocate": allocErr, "release": releaseErr} {
			var fe *FieldError
			switch {
			case tt.says == "" && err != nil:
				t.Errorf("%s %q: %v; want it accepted", what, tt.name, err)
			case tt.says != "" && (!errors.As(err, &fe) || fe.Field != "interface" || !strings.Contains(fe.Msg, tt.says)):
				t.Errorf("%s %q: %v; want a refusal of field interface saying %q", what, tt.name, err, tt.says)
			}
		}
	}
}
