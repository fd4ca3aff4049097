package proc

import "testing"

func TestUIDPool(t *testing.T) {
	p := NewUIDPool(61000, 2)
	a, err1 := p.Get()
	b, err2 := p.Get()
	if err1 != nil || err2 != nil || a == b || !p.Contains(a) || !p.Contains(b) || p.Contains(61002) || p.Contains(60999) {
		t.Fatalf("got %d %d (%v %v)", a, b, err1, err2)
	}
	if _, err := p.Get(); err == nil {
		t.Fatal("a third uid from a pool of two")
	}
	p.Put(a)
	if c, err := p.Get(); err != nil || c != a {
		t.Fatalf("after put: %d %v", c, err)
	}
	if err := CheckUIDRangeUnused(61000, 2, 3); err == nil {
		t.Fatal("a range smaller than needed accepted")
	}
	if err := CheckUIDRangeUnused(0, 1, 1); err == nil {
		t.Fatal("a range holding root accepted")
	}
}
