package ipam_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	. "github.com/spiderpool-agent/spiderpool-agent/core/ipam"
)

// TestListJSONIsList: the control API's listing (the stored records passed
// through) decodes to what List returns, with and without filters.
func TestListJSONIsList(t *testing.T) {
	f := newFixture(t, plain4, plain6)
	ctx := context.Background()
	for _, r := range []AllocateRequest{
		{ContainerID: "a", Interface: "eth0", Workload: "default/a", Pools: []string{"plain4"}},
		{ContainerID: "b", Interface: "eth0", Workload: "default/b", Pools: []string{"plain4", "plain6"}},
		{ContainerID: "c", Interface: "eth1", Workload: "default/a", Pools: []string{"plain6"}},
	} {
		f.allocate(t, r)
	}
	for _, q := range []struct{ pool, workload string }{
		{"", ""}, {"plain4", ""}, {"plain6", ""}, {"", "default/a"}, {"plain6", "default/a"}, {"nope", ""}, {"", "nobody"},
	} {
		want, err := f.m.List(ctx, q.pool, q.workload)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := f.m.ListJSON(ctx, q.pool, q.workload)
		if err != nil {
			t.Fatal(err)
		}
		var got []Attachment
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("pool %q workload %q: %v in %s", q.pool, q.workload, err, raw)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("pool %q workload %q: ListJSON gives\n%+v\nList gives\n%+v", q.pool, q.workload, got, want)
		}
	}
}

// TestListJSONRefusesABadRecord: a record that is not JSON fails the
// listing with its key, as List's decode does, instead of an answer the
// client cannot read.
func TestListJSONRefusesABadRecord(t *testing.T) {
	f := newFixture(t, plain4)
	ctx := context.Background()
	if _, err := f.store.Commit(ctx, nil, []Op{{Key: "attachments/x/eth0", Value: []byte(`{"container_id":"x"`)}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct{ pool, workload string }{{"", ""}, {"plain4", ""}} {
		if _, err := f.m.ListJSON(ctx, q.pool, q.workload); err == nil || !strings.Contains(err.Error(), "attachments/x/eth0") {
			t.Errorf("pool %q: %v; want an error naming attachments/x/eth0", q.pool, err)
		}
	}
}
