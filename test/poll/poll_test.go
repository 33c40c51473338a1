package poll

import (
	"errors"
	"testing"
	"time"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	Until(t, time.Second, "the third call", Bool(func() bool { n++; return n == 3 }))
	if n != 3 {
		t.Errorf("cond called %d times", n)
	}
}

// fake records a failure instead of ending the goroutine's test.
type fake struct {
	testing.TB
	failed string
}

func (f *fake) Helper() {}
func (f *fake) Fatalf(format string, args ...any) {
	f.failed = format
	panic(f)
}

func failure(fn func(t testing.TB)) (msg string) {
	f := &fake{}
	defer func() {
		if r := recover(); r != nil && r != any(f) {
			panic(r)
		}
		msg = f.failed
	}()
	fn(f)
	return ""
}

func TestUntilFailsOnTimeoutAndOnError(t *testing.T) {
	if msg := failure(func(tb testing.TB) { Until(tb, 20*time.Millisecond, "never", Bool(func() bool { return false })) }); msg == "" {
		t.Error("a condition that never holds did not fail")
	}
	if msg := failure(func(tb testing.TB) {
		Until(tb, time.Second, "x", func() (bool, error) { return false, errors.New("boom") })
	}); msg == "" {
		t.Error("an error did not fail")
	}
}
