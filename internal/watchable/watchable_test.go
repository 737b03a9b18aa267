package watchable

import "testing"

func TestGetAndSetWakeWaiters(t *testing.T) {
	var w Value[int]
	v, ch := w.Get()
	if v != 0 {
		t.Fatalf("zero value = %d", v)
	}
	select {
	case <-ch:
		t.Fatal("changed before any Set")
	default:
	}
	w.Set(7)
	select {
	case <-ch:
	default:
		t.Fatal("Set did not close the channel handed out before it")
	}
	v, ch2 := w.Get()
	if v != 7 || ch2 == ch {
		t.Fatalf("after Set: value %d, same channel %v", v, ch2 == ch)
	}
	select {
	case <-ch2:
		t.Fatal("new channel already closed")
	default:
	}
}
