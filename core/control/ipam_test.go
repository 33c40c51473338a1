package control

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/spiderpool-agent/spiderpool-agent/core/ipam/ipamapi"
)

// ipamFake is a Backend with IPAM whose answers the test sets.
type ipamFake struct {
	fakeBackend
	allocErr  error
	got       []ipamapi.AllocateRequest
	workloads []string // asked of IPAMReleaseWorkload
}

type codedErr struct{ code string }

func (e codedErr) Error() string                    { return "coded: " + e.code }
func (e codedErr) IPAMCode() string                 { return e.code }
func (e codedErr) IPAMSkipped() []ipamapi.SkippedIP { return nil }

func (f *ipamFake) IPAMAllocate(_ context.Context, r ipamapi.AllocateRequest) (ipamapi.Attachment, error) {
	f.got = append(f.got, r)
	return ipamapi.Attachment{AttachmentKey: ipamapi.AttachmentKey{ContainerID: r.ContainerID, Interface: r.Interface}}, f.allocErr
}
func (f *ipamFake) IPAMRelease(context.Context, ipamapi.ReleaseRequest) (ipamapi.ReleaseResponse, error) {
	return ipamapi.ReleaseResponse{Released: []ipamapi.Attachment{}}, nil
}
func (f *ipamFake) IPAMReleaseWorkload(_ context.Context, workload string) (ipamapi.ReleaseResponse, error) {
	f.workloads = append(f.workloads, workload)
	return ipamapi.ReleaseResponse{Released: []ipamapi.Attachment{}}, nil
}
func (f *ipamFake) IPAMGet(context.Context, ipamapi.AttachmentKey) (ipamapi.Attachment, bool, error) {
	return ipamapi.Attachment{}, false, nil
}
func (f *ipamFake) IPAMList(context.Context, string, string) (json.RawMessage, error) {
	return json.RawMessage("[]"), nil
}
func (f *ipamFake) IPAMGC(context.Context) (ipamapi.GCResult, error) { return ipamapi.GCResult{}, nil }
func (f *ipamFake) IPAMPools(context.Context) ([]ipamapi.PoolUsage, error) {
	return []ipamapi.PoolUsage{}, nil
}
func (f *ipamFake) IPAMHistory(context.Context, string, netip.Addr) ([]ipamapi.HistoryRecord, error) {
	return []ipamapi.HistoryRecord{}, nil
}
func (f *ipamFake) IPAMAddress(_ context.Context, a netip.Addr) (ipamapi.AddressInfo, error) {
	return ipamapi.AddressInfo{Address: a, Records: []ipamapi.AddressRecord{}, History: []ipamapi.HistoryRecord{}}, nil
}

func TestIPAMBadRequestsNameTheField(t *testing.T) {
	f := &ipamFake{}
	for _, tc := range []struct {
		method, path, body string
		code               int
		field              string
	}{
		{"POST", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["p"],"pool":"x"}`, 400, "pool"},
		{"POST", ipamapi.AllocatePath, `{"container_id":7,"interface":"eth0","pools":["p"]}`, 400, "container_id"},
		{"POST", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0"}`, 400, "pools"},
		{"POST", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["p"]} {}`, 400, ""},
		{"POST", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["-p"]}`, 400, "pools[0]"},
		{"POST", ipamapi.ReleasePath, `{"container_id":"c"}`, 400, "interface"},
		{"POST", ipamapi.ReleaseWorkloadPath, `{}`, 400, "workload"},
		{"GET", ipamapi.AllocationPath + "?container_id=c", "", 400, "interface"},
		{"GET", ipamapi.AllocationsPath + "?pool=%2F", "", 400, "pool"},
		{"GET", ipamapi.HistoryPath, "", 400, "workload"},
		{"GET", ipamapi.HistoryPath + "?address=10.0.0.300", "", 400, "address"},
		{"GET", ipamapi.AllocationPath + "?container_id=c&interface=eth0", "", 404, ""},
		{"GET", ipamapi.AllocatePath, "", 405, ""},
	} {
		rec := serveOnce(t, f, tc.method, tc.path, tc.body)
		var body ipamapi.ErrorBody
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
		ipamapi.CodePoolFull: 409, ipamapi.CodeConflict: 409, ipamapi.CodeGateway: 422,
		ipamapi.CodeTryAgain: 503, ipamapi.CodeCheckFailed: 502, ipamapi.CodeDisabled: 409,
	} {
		f := &ipamFake{allocErr: codedErr{code}}
		rec := serveOnce(t, f, "POST", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["p"]}`)
		var body ipamapi.ErrorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != status || body.Code != code || !strings.Contains(body.Error, code) {
			t.Errorf("%s: %d %s, want %d", code, rec.Code, rec.Body, status)
		}
	}
}

// A backend without IPAM has no IPAM routes.
func TestNoIPAMRoutesWithoutIPAMBackend(t *testing.T) {
	rec := serveOnce(t, &fakeBackend{}, "GET", ipamapi.PoolsPath, "")
	if rec.Code != 404 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// Valid POST bodies reach the backend as sent, and its answer is the 200
// body.
func TestIPAMPostsReachTheBackend(t *testing.T) {
	f := &ipamFake{}
	rec := serveOnce(t, f, "POST", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["p"]}`)
	var att ipamapi.Attachment
	if err := json.Unmarshal(rec.Body.Bytes(), &att); rec.Code != 200 || err != nil || att.ContainerID != "c" || att.Interface != "eth0" {
		t.Errorf("allocate: %d %s", rec.Code, rec.Body)
	}
	if len(f.got) != 1 || f.got[0].ContainerID != "c" || len(f.got[0].Pools) != 1 || f.got[0].Pools[0] != "p" {
		t.Errorf("the backend was asked to allocate %+v", f.got)
	}
	rec = serveOnce(t, f, "POST", ipamapi.ReleaseWorkloadPath, `{"workload":"ns/pod-1"}`)
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
		{"key twice", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["a"],"pools":["b"]}`, "pools", `the key "pools" is given twice`},
		{"container id twice", ipamapi.ReleasePath, `{"container_id":"c1","interface":"eth0","container_id":"c2"}`, "container_id", "given twice"},
		{"wrong case", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","Pools":["a"]}`, "Pools", `keys are case-sensitive, did you mean "pools"?`},
		{"wrong case workload", ipamapi.ReleaseWorkloadPath, `{"WORKLOAD":"w"}`, "WORKLOAD", `did you mean "workload"?`},
		{"keys differing in case", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["a"],"Interface":"eth1"}`, "Interface", `the keys "interface" and "Interface" name the same field`},
	} {
		f := &ipamFake{}
		rec := serveOnce(t, f, "POST", tc.path, tc.body)
		var body ipamapi.ErrorBody
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
	chk := serveOnce(t, &fakeBackend{}, "POST", CheckPath, `{"interface":"eth0","interface":"eth1","addresses":[{"address":"10.0.0.7/24"}]}`)
	alloc := serveOnce(t, &ipamFake{}, "POST", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","interface":"eth1","pools":["a"]}`)
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
		{"POST", ipamapi.AllocatePath, `{"container_id":"` + long[:200] + `!","interface":"eth0","pools":["a"]}`},
		{"POST", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","pools":["a"],"` + long + `":1}`},
		{"POST", ipamapi.ReleaseWorkloadPath, `{"workload":"` + long[:200] + `\u0001"}`},
		{"POST", ipamapi.AllocatePath, `{"container_id":"c","interface":"eth0","netns":"/a/../` + long[:4000] + `","pools":["a"]}`},
		{"GET", ipamapi.HistoryPath + "?address=" + long, ""},
		{"POST", CheckPath, `{"interface":"eth0","netns":"rel/` + long + `","addresses":[{"address":"10.0.0.7/24"}]}`},
		{"POST", CheckPath, `{"interface":"eth0","addresses":[{"address":"` + long + `"}]}`},
	} {
		rec := serveOnce(t, &ipamFake{}, tc.method, tc.path, tc.body)
		if rec.Code != 400 || rec.Body.Len() > 1024 || !strings.Contains(rec.Body.String(), " bytes, cut)") {
			t.Errorf("%s %s: %d, %d bytes: %.300s", tc.method, tc.path, rec.Code, rec.Body.Len(), rec.Body)
		}
	}
}
