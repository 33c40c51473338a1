package control

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/api"
)

// ipamFake is a Backend with IPAM whose answers the test sets.
type ipamFake struct {
	fakeBackend
	allocErr  error
	got       []api.AllocateRequest
	workloads []string // asked of IPAMReleaseWorkload
}

type codedErr struct{ code string }

func (e codedErr) Error() string                { return "coded: " + e.code }
func (e codedErr) IPAMCode() string             { return e.code }
func (e codedErr) IPAMSkipped() []api.SkippedIP { return nil }

func (f *ipamFake) IPAMAllocate(_ context.Context, r api.AllocateRequest) (api.Attachment, error) {
	f.got = append(f.got, r)
	return api.Attachment{AttachmentKey: api.AttachmentKey{ContainerID: r.ContainerID, Interface: r.Interface}}, f.allocErr
}
func (f *ipamFake) IPAMRelease(context.Context, api.ReleaseRequest) (api.ReleaseResponse, error) {
	return api.ReleaseResponse{Released: []api.Attachment{}}, nil
}
func (f *ipamFake) IPAMReleaseWorkload(_ context.Context, workload string) (api.ReleaseResponse, error) {
	f.workloads = append(f.workloads, workload)
	return api.ReleaseResponse{Released: []api.Attachment{}}, nil
}
func (f *ipamFake) IPAMGet(context.Context, api.AttachmentKey) (api.Attachment, bool, error) {
	return api.Attachment{}, false, nil
}
func (f *ipamFake) IPAMList(context.Context, string, string) (json.RawMessage, error) {
	return json.RawMessage("[]"), nil
}
func (f *ipamFake) IPAMGC(context.Context) (api.GCResult, error) { return api.GCResult{}, nil }
func (f *ipamFake) IPAMPools(context.Context) ([]api.PoolUsage, error) {
	return []api.PoolUsage{}, nil
}
func (f *ipamFake) IPAMHistory(context.Context, string, netip.Addr) ([]api.HistoryRecord, error) {
	return []api.HistoryRecord{}, nil
}
func (f *ipamFake) IPAMAddress(_ context.Context, a netip.Addr) (api.AddressInfo, error) {
	return api.AddressInfo{Address: a, Records: []api.AddressRecord{}, History: []api.HistoryRecord{}}, nil
}

func TestIPAMBadRequestsNameTheField(t *testing.T) {
	f := &ipamFake{}
	for _, tc := range []struct {
		method, path, body string
		code               int
		field              string
	}{
		{"POST", api.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["p"],"pool":"x"}`, 400, "pool"},
		{"POST", api.AllocatePath, `{"container_id":7,"interface":"eth0","pools":["p"]}`, 400, "container_id"},
		{"POST", api.AllocatePath, `{"container_id":"c","interface":"eth0"}`, 400, "pools"},
		{"POST", api.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["p"]} {}`, 400, ""},
		{"POST", api.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["-p"]}`, 400, "pools[0]"},
		{"POST", api.ReleasePath, `{"container_id":"c"}`, 400, "interface"},
		{"POST", api.ReleaseWorkloadPath, `{}`, 400, "workload"},
		{"GET", api.AllocationPath + "?container_id=c", "", 400, "interface"},
		{"GET", api.AllocationsPath + "?pool=%2F", "", 400, "pool"},
		{"GET", api.HistoryPath, "", 400, "workload"},
		{"GET", api.HistoryPath + "?address=10.0.0.300", "", 400, "address"},
		{"GET", api.AllocationPath + "?container_id=c&interface=eth0", "", 404, ""},
		{"GET", api.AllocatePath, "", 405, ""},
	} {
		rec := serveOnce(t, f, tc.method, tc.path, tc.body)
		var body api.ErrorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != tc.code || body.Field != tc.field || body.Error == "" {
			t.Errorf("%s %s %s: %d %s, want %d field %q", tc.method, tc.path, tc.body, rec.Code, rec.Body, tc.code, tc.field)
		}
	}
	if len(f.got) != 0 {
		t.Errorf("the backend saw malformed requests: %+v", f.got)
	}
}

func TestIPAMErrorCodes(t *testing.T) {
	for code, status := range map[string]int{
		api.CodePoolFull: 409, api.CodeConflict: 409, api.CodeGateway: 422,
		api.CodeTryAgain: 503, api.CodeCheckFailed: 502, api.CodeDisabled: 409,
	} {
		f := &ipamFake{allocErr: codedErr{code}}
		rec := serveOnce(t, f, "POST", api.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["p"]}`)
		var body api.ErrorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != status || body.Code != code || !strings.Contains(body.Error, code) {
			t.Errorf("%s: %d %s, want %d", code, rec.Code, rec.Body, status)
		}
	}
}

// A backend without IPAM has no IPAM routes.
func TestNoIPAMRoutesWithoutIPAMBackend(t *testing.T) {
	rec := serveOnce(t, &fakeBackend{}, "GET", api.PoolsPath, "")
	if rec.Code != 404 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// Valid POST bodies reach the backend as sent, and its answer is the 200
// body.
func TestIPAMPostsReachTheBackend(t *testing.T) {
	f := &ipamFake{}
	rec := serveOnce(t, f, "POST", api.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["p"]}`)
	var att api.Attachment
	if err := json.Unmarshal(rec.Body.Bytes(), &att); rec.Code != 200 || err != nil || att.ContainerID != "c" || att.Interface != "eth0" {
		t.Errorf("allocate: %d %s", rec.Code, rec.Body)
	}
	if len(f.got) != 1 || f.got[0].ContainerID != "c" || len(f.got[0].Pools) != 1 || f.got[0].Pools[0] != "p" {
		t.Errorf("the backend was asked to allocate %+v", f.got)
	}
	rec = serveOnce(t, f, "POST", api.ReleaseWorkloadPath, `{"workload":"ns/pod-1"}`)
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"released":[]}` {
		t.Errorf("release-workload: %d %s", rec.Code, rec.Body)
	}
	if len(f.workloads) != 1 || f.workloads[0] != "ns/pod-1" {
		t.Errorf("the backend was asked to release workloads %q, want [ns/pod-1]", f.workloads)
	}
}

// The IPAM routes hold their bodies to the rule of the check route
// (input.Decode): encoding/json alone takes a key given twice (keeping the
// last) and a key in another case ("Pools" for "pools").
func TestIPAMBodiesRefuseRepeatedAndWrongCaseKeys(t *testing.T) {
	for _, tc := range []struct {
		name, path, body, field, says string
	}{
		{"key twice", api.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["a"],"pools":["b"]}`, "pools", `the key "pools" is given twice`},
		{"container id twice", api.ReleasePath, `{"container_id":"c1","interface":"eth0","container_id":"c2"}`, "container_id", "given twice"},
		{"wrong case", api.AllocatePath, `{"container_id":"c","interface":"eth0","Pools":["a"]}`, "Pools", `keys are case-sensitive, did you mean "pools"?`},
		{"wrong case workload", api.ReleaseWorkloadPath, `{"WORKLOAD":"w"}`, "WORKLOAD", `did you mean "workload"?`},
		{"keys differing in case", api.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["a"],"Interface":"eth1"}`, "Interface", `the keys "interface" and "Interface" name the same field`},
	} {
		f := &ipamFake{}
		rec := serveOnce(t, f, "POST", tc.path, tc.body)
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: %v: %s", tc.name, err, rec.Body)
		}
		if rec.Code != 400 || body.Field != tc.field || !strings.Contains(body.Error, tc.says) {
			t.Errorf("%s: %d %s, want 400 field %q saying %q", tc.name, rec.Code, rec.Body, tc.field, tc.says)
		}
		if len(f.got) != 0 || len(f.workloads) != 0 {
			t.Errorf("%s: the backend was called with %+v %v", tc.name, f.got, f.workloads)
		}
	}
}

// One rule, one wording: the same defect in a check body and an IPAM body
// gives the same message.
func TestCheckAndIPAMBodiesShareTheRule(t *testing.T) {
	chk := serveOnce(t, &fakeBackend{}, "POST", api.CheckPath, `{"interface":"eth0","interface":"eth1","addresses":[{"address":"10.0.0.7/24"}]}`)
	alloc := serveOnce(t, &ipamFake{}, "POST", api.AllocatePath, `{"container_id":"c","interface":"eth0","interface":"eth1","pools":["a"]}`)
	var a, b struct{ Error, Field string }
	_ = json.Unmarshal(chk.Body.Bytes(), &a)
	_ = json.Unmarshal(alloc.Body.Bytes(), &b)
	if a.Field != "interface" || a != b {
		t.Errorf("check answered %+v, allocate %+v: want the same field and message", a, b)
	}
}

// A 10 KiB value is echoed cut, with its length, not whole.
func TestIPAMErrorsEchoLongInputCut(t *testing.T) {
	long := strings.Repeat("x", 10240)
	for _, tc := range []struct{ method, path, body string }{
		{"POST", api.AllocatePath, `{"container_id":"` + long[:200] + `!","interface":"eth0","pools":["a"]}`},
		{"POST", api.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["a"],"` + long + `":1}`},
		{"POST", api.ReleaseWorkloadPath, `{"workload":"` + long[:200] + `\u0001"}`},
		{"POST", api.AllocatePath, `{"container_id":"c","interface":"eth0","netns":"/a/../` + long[:4000] + `","pools":["a"]}`},
		{"GET", api.HistoryPath + "?address=" + long, ""},
		{"POST", api.CheckPath, `{"interface":"eth0","netns":"rel/` + long + `","addresses":[{"address":"10.0.0.7/24"}]}`},
		{"POST", api.CheckPath, `{"interface":"eth0","addresses":[{"address":"` + long + `"}]}`},
	} {
		rec := serveOnce(t, &ipamFake{}, tc.method, tc.path, tc.body)
		if rec.Code != 400 || rec.Body.Len() > 1024 || !strings.Contains(rec.Body.String(), " bytes, cut)") {
			t.Errorf("%s %s: %d, %d bytes: %.300s", tc.method, tc.path, rec.Code, rec.Body.Len(), rec.Body)
		}
	}
}
